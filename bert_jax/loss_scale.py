"""Dynamic loss scaling for float16: skip non-finite steps, halve; double after a run of good ones."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

MAX_SCALE = 2.0 ** 24


@flax.struct.dataclass
class LossScale:
  """scale: float32; good_steps: finite steps since the last change; skipped: total skips."""
  scale: jax.Array
  good_steps: jax.Array
  skipped: jax.Array
  growth_interval: int = flax.struct.field(pytree_node=False, default=2000)

  @classmethod
  def create(cls, initial: float, growth_interval: int) -> 'LossScale':
    return cls(jnp.asarray(min(initial, MAX_SCALE), jnp.float32), jnp.zeros((), jnp.int32),
               jnp.zeros((), jnp.int32), growth_interval)

  @classmethod
  def disabled(cls) -> 'LossScale':
    return cls.create(1.0, 2 ** 30)

  @classmethod
  def for_policy(cls, policy, initial: float = 2.0 ** 15,
                 growth_interval: int = 2000) -> 'LossScale':
    """Dynamic scaling where the precision policy needs it (fp16), else disabled."""
    return cls.create(initial, growth_interval) if policy.needs_loss_scaling else cls.disabled()

  def update(self, grads_finite: jax.Array) -> 'LossScale':
    grow = grads_finite & (self.good_steps + 1 >= self.growth_interval)
    scale = jnp.where(grads_finite,
                      jnp.where(grow, jnp.minimum(self.scale * 2, MAX_SCALE), self.scale),
                      jnp.maximum(self.scale / 2, 1.0))
    good = jnp.where(grads_finite & ~grow, self.good_steps + 1, 0)
    return self.replace(scale=scale, good_steps=good,
                        skipped=self.skipped + (~grads_finite).astype(jnp.int32))


def all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
