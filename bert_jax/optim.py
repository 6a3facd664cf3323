"""optax optimizers with BERT's recipe: warm-up then linear decay, no decay on bias/LayerNorm."""
from __future__ import annotations

import jax
import optax

from bert_jax.settings import TrainSettings


def decay_mask(params):
  """True for weight matrices (kernels, embeddings); False for biases and LayerNorm."""
  def is_decayed(path, _):
    last = path[-1].key if hasattr(path[-1], 'key') else str(path[-1])
    parent = path[-2].key if len(path) > 1 and hasattr(path[-2], 'key') else ''
    return last not in ('bias', 'scale') and parent != 'ln'
  return jax.tree_util.tree_map_with_path(is_decayed, params)


def learning_rate_schedule(train: TrainSettings, total_steps: int) -> optax.Schedule:
  warmup = int(train.warmup_proportion * total_steps)
  return optax.join_schedules([
      optax.linear_schedule(0.0, train.learning_rate, max(warmup, 1)),
      optax.linear_schedule(train.learning_rate, 0.0, max(total_steps - warmup, 1)),
  ], [warmup])


def make_optimizer(train: TrainSettings, total_steps: int) -> optax.GradientTransformation:
  """AdamW (eps 1e-6, as BERT) or LAMB, with global-norm clipping first."""
  lr = learning_rate_schedule(train, total_steps)
  if train.optimizer == 'adamw':
    opt = optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-6, weight_decay=train.weight_decay,
                      mask=decay_mask)
  else:
    opt = optax.lamb(lr, b1=0.9, b2=0.999, eps=1e-6, weight_decay=train.weight_decay,
                     mask=decay_mask)
  if train.max_grad_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(train.max_grad_norm), opt)
  return opt
