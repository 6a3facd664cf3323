"""Dropout whose mask is a hash of each element's index: computed where it is used.

Measured as profile_step.py's variant `hashdrop` (docs/performance_notes.md, entry 34): no
faster than the model's threefry byte masks on an H200 (recomputing the hash in the dropout
backward's reduction fusion costs what the threefry kernels saved), so the model does not
use it.

JAX's PRNG (threefry) makes XLA write every mask to memory in its own kernel and read it
back twice (forward and backward). Here the mask of element j is a keyed hash of j, two
rounds of MurmurHash3's 32-bit finaliser, compared against the rate: XLA fuses it into the
kernels that read x (forward) and the gradient (backward), nothing is stored for the
backward pass but the two seed words, and the mask is the same on any number of devices
(the index is the element's place in the global array).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

_MIX1, _MIX2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)  # MurmurHash3 fmix32


def _fmix32(h):
  h = h ^ (h >> 16)
  h = h * _MIX1
  h = h ^ (h >> 13)
  h = h * _MIX2
  return h ^ (h >> 16)


def _element_index(shape):
  """uint32 [shape]: each element's row-major index in an array of `shape`."""
  index, stride = jnp.zeros(shape, jnp.uint32), 1
  for dim in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, dim) * np.uint32(stride)
    stride *= shape[dim]
  return index


def _threshold(rate: float) -> np.uint32:
  return np.uint32(min(round(rate * 2.0 ** 32), 2 ** 32 - 1))


def keep_mask(seed, shape, rate: float):
  """bool [shape]: True where an element is kept. seed: uint32 [2]. An element is dropped
  with probability round(rate 2^32) / 2^32, within 2^-33 of `rate`."""
  if int(np.prod(shape)) >= 2 ** 32:
    raise ValueError(f'dropout: {shape} has 2^32 or more elements, more than its uint32 '
                     'element index can number; use a smaller batch per step')
  h = _fmix32(_fmix32(_element_index(shape) ^ seed[0]) ^ seed[1])
  return h >= _threshold(rate)


def seed_of(rng) -> jax.Array:
  """uint32 [2] seed words from a PRNG key, kept apart from the kernels that use them (XLA
  would otherwise fold the key's threefry into every element's hash)."""
  return jax.lax.optimization_barrier(jax.random.bits(rng, (2,), jnp.uint32))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _apply(x, seed, rate):
  keep = keep_mask(seed, x.shape, rate)
  return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - rate), x.dtype), jnp.zeros_like(x))


def _apply_fwd(x, seed, rate):
  return _apply(x, seed, rate), seed


def _apply_bwd(rate, seed, g):
  # The same mask again from the seed: nothing of size x was kept for this.
  return _apply(g, seed, rate), None


_apply.defvjp(_apply_fwd, _apply_bwd)


def dropout(x, rate: float, rng):
  """Inverted dropout: each element zeroed with probability `rate`, the rest scaled by
  1 / (1 - rate). rng: a PRNG key; None (or rate 0) returns x unchanged."""
  if rng is None or rate == 0.0:
    return x
  if not 0.0 < rate < 1.0:
    raise ValueError(f'dropout rate {rate} is outside [0, 1); set model.hidden_dropout '
                     'to a probability such as 0.1')
  return _apply(x, seed_of(rng), float(rate))
