"""Pure, jittable train and eval steps. Static arguments are bound with functools.partial."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec

from bert_jax import model, packing
from bert_jax.loss_scale import LossScale, all_finite
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy

Batch = dict[str, jax.Array]
INPUT_KEYS = ('input_ids', 'token_type_ids', 'attention_mask')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  loss_scale: LossScale
  rng: jax.Array


def create_state(params, optimizer: optax.GradientTransformation, rng: jax.Array,
                 loss_scale: LossScale) -> TrainState:
  """The state at step 0, its layers stacked (model.stack_layers): one [L, ...] array per
  weight, in the params and the optimizer's moments."""
  params = model.stack_layers(params)
  return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), loss_scale, rng)


def map_params_like(fn, tree):
  """fn applied to every params-like dict inside tree (one with 'layers': the params and the
  optimizer's moments of a TrainState), e.g. model.unstack_layers."""
  is_params = lambda x: isinstance(x, dict) and 'layers' in x
  return jax.tree.map(lambda x: fn(x) if is_params(x) else x, tree, is_leaf=is_params)


_OFF = float(jnp.finfo(jnp.float32).min)  # a left-out position's logit: exp(_OFF - max) = 0


def span_loss(params, batch: Batch, rng, *, config: ModelConfig, policy: PrecisionPolicy):
  """Mean of the start and end cross-entropies (float32), averaged over the batch's windows.

  Each window's softmax runs over its own tokens only, not over its padding (transformers'
  runs over the padding too): no padded position reaches the loss, so the fused attention
  may skip the padded queries (bert_jax.attention.fused_attention). A packed batch
  (bert_jax.packing) has labels [rows, max_windows] (-1: no window).
  """
  segments = packing.segments_of(batch)
  start, end = model.qa_logits(params, *(batch[k] for k in INPUT_KEYS), config=config,
                               policy=policy, dropout_rng=rng, segments=segments)
  if segments is not None:
    return _packed_span_loss(start, end, batch, segments.ids)
  live = batch['attention_mask'] > 0
  ce = lambda logits, labels: optax.softmax_cross_entropy_with_integer_labels(
      jnp.where(live, logits, _OFF), labels)
  return jnp.mean(ce(start, batch['start_positions']) + ce(end, batch['end_positions'])) / 2


def _packed_span_loss(start_BT, end_BT, batch: Batch, segment_ids_BT):
  windows = batch['start_positions'].shape[1]
  valid_BM = batch['start_positions'] >= 0
  # An absent window's softmax runs over the whole row (and is then dropped), so that no
  # empty logsumexp puts a NaN into the gradient.
  member_BMT = ((segment_ids_BT[:, None, :] == jnp.arange(1, windows + 1)[None, :, None])
                | ~valid_BM[:, :, None])

  def ce(logits_BT, labels_BM):
    lse_BM = jax.nn.logsumexp(jnp.broadcast_to(logits_BT[:, None, :], member_BMT.shape),
                              axis=-1, where=member_BMT)
    picked_BM = jnp.take_along_axis(logits_BT, jnp.maximum(labels_BM, 0), axis=1)
    return jnp.where(valid_BM, lse_BM - picked_BM, 0.0)

  total = ce(start_BT, batch['start_positions']) + ce(end_BT, batch['end_positions'])
  return jnp.sum(total) / (2 * jnp.maximum(jnp.sum(valid_BM), 1))


def gathered_layers(params, policy: PrecisionPolicy):
  """params with the layers' matrices cast to the compute dtype and replicated: where the
  state is split over devices (mesh.sharded_state), each device gathers them in that dtype
  (half the bytes of float32), as the model would cast them anyway. The barrier keeps XLA
  from moving the cast after the gather (it did: float32 went over the wire). Each layer is
  gathered apart (the layers come out of their stacks first), so XLA can gather layer i+1
  while layer i computes."""
  def gather(x):
    if x.ndim < 2:
      return x
    x = jax.lax.optimization_barrier(x.astype(policy.compute_dtype))
    return jax.lax.with_sharding_constraint(x, PartitionSpec())
  layers = model.layer_params(params['layers'])
  return {**params, 'layers': [jax.tree.map(gather, layer) for layer in layers]}


def train_step(state: TrainState, batch: Batch, *, config: ModelConfig, policy: PrecisionPolicy,
               optimizer: optax.GradientTransformation, accumulation: int = 1,
               gather: bool = False) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step over `batch` (split into `accumulation` micro-batches).

  Micro-batch j takes rows j, j+k, j+2k, ... so each device keeps its own rows. Under
  fp16 the loss is multiplied by the dynamic scale and the gradients divided by it;
  a step with non-finite gradients leaves params and optimizer state unchanged.
  """
  rng = jax.random.fold_in(state.rng, state.step)
  scale = state.loss_scale.scale

  def scaled_loss(params, micro, micro_rng):
    if gather:
      params = gathered_layers(params, policy)
    loss = span_loss(params, micro, micro_rng, config=config, policy=policy)
    return loss * scale, loss

  grad_fn = jax.grad(scaled_loss, has_aux=True)
  if accumulation == 1:
    grads, loss = grad_fn(state.params, batch, rng)
  else:
    micro = jax.tree.map(lambda x: jnp.moveaxis(
        x.reshape(x.shape[0] // accumulation, accumulation, *x.shape[1:]), 1, 0), batch)

    def body(carry, xs):
      g_sum, l_sum = carry
      j, mb = xs
      g, l = grad_fn(state.params, mb, jax.random.fold_in(rng, j))
      return (jax.tree.map(jnp.add, g_sum, g), l_sum + l), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    (grads, loss), _ = jax.lax.scan(body, (zeros, jnp.zeros((), jnp.float32)),
                                    (jnp.arange(accumulation), micro))
    grads = jax.tree.map(lambda g: g / accumulation, grads)
    loss = loss / accumulation
  grads = jax.tree.map(lambda g: g / scale, grads)
  finite = all_finite(grads)
  updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = state.replace(
      step=state.step + 1, params=keep(new_params, state.params),
      opt_state=keep(new_opt, state.opt_state), loss_scale=state.loss_scale.update(finite))
  metrics = {'loss': loss, 'grad_norm': _global_norm(grads), 'finite': finite,
             'loss_scale': scale, 'skipped_steps': new_state.loss_scale.skipped}
  return new_state, metrics


def _global_norm(tree):
  # optax.tree.norm (optax >= 0.2.5) replaces the deprecated optax.global_norm.
  tree_lib = getattr(optax, 'tree', None)
  return tree_lib.norm(tree) if hasattr(tree_lib, 'norm') else optax.global_norm(tree)


def eval_step(params, batch: Batch, *, config: ModelConfig, policy: PrecisionPolicy,
              scan_layers: bool = False):
  """The start and end logits as one float32 [batch, time, 2] array ([..., 0] start, [..., 1]
  end); no dropout. scan_layers: model.encode's. A packed batch (bert_jax.packing) gives
  each row's logits, each window's at its own positions.

  One output, not two, so that a caller copies it home in one copy and one wait: 0.24 ms less
  at batch 1 than copying start and end one by one (BERT-Large, fp16, seq 384, H200); the
  call itself ran the same within 0.03 ms at batch 1 and 0.08 ms at batch 8
  (docs/performance_notes.md, 60)."""
  return model.span_logits(params, *(batch[k] for k in INPUT_KEYS), config=config,
                           policy=policy, segments=packing.segments_of(batch),
                           scan_layers=scan_layers)
