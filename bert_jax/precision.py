"""Precision policies: float32 parameters, compute in the policy's dtype, float32 statistics."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bert_jax.errors import ConfigError

FP32_MATMUL_MODES = ('tf32', 'float32')


@dataclasses.dataclass(frozen=True)
class PrecisionPolicy:
  """Which dtype each part of the computation uses.

  Parameters and optimizer state stay in float32. Matmuls and activations run in
  `compute_dtype`. Softmax, LayerNorm statistics, logits and the loss are float32
  whatever the policy. Under 'fp32', `fp32_matmul` picks TF32 tensor cores on GPU
  ('tf32', JAX's default precision) or full float32 products ('float32'); on CPU both
  are exact float32.
  """
  name: str = 'fp32'
  fp32_matmul: str = 'tf32'

  def __post_init__(self):
    if self.name not in _DTYPES:
      raise ConfigError('precision.policy', self.name, f'choose one of {sorted(_DTYPES)}')
    if self.fp32_matmul not in FP32_MATMUL_MODES:
      raise ConfigError('precision.fp32_matmul', self.fp32_matmul,
                        f'choose one of {FP32_MATMUL_MODES}')

  @property
  def param_dtype(self):
    return jnp.float32

  @property
  def compute_dtype(self):
    return _DTYPES[self.name]

  @property
  def output_dtype(self):
    return jnp.float32

  @property
  def matmul_precision(self):
    if self.name == 'fp32' and self.fp32_matmul == 'float32':
      return jax.lax.Precision.HIGHEST
    return jax.lax.Precision.DEFAULT

  @property
  def needs_loss_scaling(self) -> bool:
    return self.name == 'fp16'


_DTYPES = {'fp32': jnp.float32, 'bf16': jnp.bfloat16, 'fp16': jnp.float16}
