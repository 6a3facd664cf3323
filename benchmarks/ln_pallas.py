"""LayerNorm backward as one Pallas kernel per block of rows (a profile_step.py variant).

Why: in the seq-384 batch-32 training step, XLA computes each LayerNorm backward in three
fusions that each re-read the incoming gradient and the input to recompute the row sums,
and one of them writes g * xhat as float32 [B, T, D] for the scale gradient (gridrest call,
docs/performance_notes.md, 14 and 19): about 120 us per LayerNorm, 48 a step. This kernel
reads g and x once per block of rows, computes both row sums in registers, writes dx and
one [1, D] partial sum per block for the scale and bias gradients (XLA adds the partials).

Not measured yet: `bash benchmarks/gpu_run.sh lnpallas` times it beside the base step.
On GPU it lowers through Triton (block shapes must be powers of two, so it needs D a power
of two and the row count divisible by the block; otherwise the model's own backward runs);
on CPU it runs in Pallas' interpret mode, which is how the tests check it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from bert_jax import model


def _kernel(x_ref, g_ref, mean_ref, rstd_ref, scale_ref, dx_ref, dscale_ref, dbias_ref):
  x = x_ref[...].astype(jnp.float32)                     # [R, D]
  g = g_ref[...].astype(jnp.float32)
  mean = mean_ref[...][:, None]                          # [R, 1]
  rstd = rstd_ref[...][:, None]
  xhat = (x - mean) * rstd
  gs = g * scale_ref[...].astype(jnp.float32)            # scale [1, D]
  a = jnp.mean(gs, axis=1, keepdims=True)
  b = jnp.mean(gs * xhat, axis=1, keepdims=True)
  dx_ref[...] = (rstd * (gs - a - xhat * b)).astype(dx_ref.dtype)
  dscale_ref[...] = jnp.sum(g * xhat, axis=0, keepdims=True)
  dbias_ref[...] = jnp.sum(g, axis=0, keepdims=True)


def fits(n: int, d: int, rows: int) -> bool:
  """Whether the Triton kernel takes an [n, d] input in blocks of `rows` rows."""
  on_cpu = jax.default_backend() == 'cpu'
  return n % rows == 0 and (on_cpu or (d & (d - 1) == 0 and rows & (rows - 1) == 0))


def layer_norm_bwd(x, g, mean, rstd, scale, *, rows: int = 16, num_warps: int = 8):
  """(dx, dscale, dbias) of LayerNorm y = (x - mean) * rstd * scale + bias over the last
  axis, given the output gradient g; mean and rstd as the forward pass kept them."""
  *lead, d = x.shape
  n = x.size // d
  interpret = jax.default_backend() == 'cpu'
  params = None
  if not interpret:
    from jax.experimental.pallas import triton as plgpu
    params = plgpu.CompilerParams(num_warps=num_warps, num_stages=1)
  row_block = pl.BlockSpec((rows, d), lambda i: (i, 0))
  stat_block = pl.BlockSpec((rows,), lambda i: (i,))
  part_block = pl.BlockSpec((1, d), lambda i: (i, 0))
  dx, dscale, dbias = pl.pallas_call(
      _kernel, grid=(n // rows,),
      in_specs=[row_block, row_block, stat_block, stat_block,
                pl.BlockSpec((1, d), lambda i: (0, 0))],
      out_specs=[row_block, part_block, part_block],
      out_shape=[jax.ShapeDtypeStruct((n, d), x.dtype),
                 jax.ShapeDtypeStruct((n // rows, d), jnp.float32),
                 jax.ShapeDtypeStruct((n // rows, d), jnp.float32)],
      compiler_params=params, interpret=interpret, name='ln_bwd_rows',
  )(x.reshape(n, d), g.reshape(n, d), mean.reshape(n).astype(jnp.float32),
    rstd.reshape(n).astype(jnp.float32), scale.reshape(1, d))
  return dx.reshape(*lead, d), jnp.sum(dscale, axis=0), jnp.sum(dbias, axis=0)


def make_layer_norm(rows: int = 16, num_warps: int = 8):
  """A drop-in for bert_jax.model._layer_norm: the model's forward and residuals, this
  module's backward where it fits (else the model's)."""

  @functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
  def ln(x, scale, bias, eps, dtype):
    return model._ln_fwd(x, scale, bias, eps, dtype)[0]

  def bwd(eps, dtype, res, g):
    x, mean, rstd, scale = res
    d = x.shape[-1]
    if not fits(x.size // d, d, rows):
      return model._ln_bwd(eps, dtype, res, g)
    dx, dscale, dbias = layer_norm_bwd(x, g, mean, rstd, scale, rows=rows,
                                       num_warps=num_warps)
    return dx, dscale.astype(scale.dtype), dbias.astype(scale.dtype)

  ln.defvjp(model._ln_fwd, bwd)

  def layer_norm(x, p, eps, dtype):
    return ln(x, p['scale'], p['bias'], eps, dtype)
  return layer_norm
