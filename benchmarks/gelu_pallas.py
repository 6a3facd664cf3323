"""The FFN's bias + GELU backward as one Pallas kernel: profile_step's `gelu_kernel` variant
(`gelu_kernel_fwd`: its forward as one kernel too).

Not the model's default: with 32 x 256 tiles it measured slower on an H200
(docs/performance_notes.md, entry 29: −1.5 % for the backward, −2.1 % with the forward); the
tiles below come from the kernel-alone sweep that followed (entry 32). In the training step XLA computes this backward,
with the FFN-in bias gradient, as one reduction fusion: 3.60 ms a step for BERT-Large at seq
384, batch 32 on an H200 (pair1 profile). Its bytes (read g and the bf16 pre-activation,
write dh: 7.2 GB a step) would take 1.8 ms at 4 TB/s. This kernel reads a [ROWS, COLS] tile
of each, writes dh, and one float32 [1, COLS] partial bias gradient per tile (XLA adds the
partials). The forward kernel adds the bias and writes the pre-activation (kept for the
backward) and the GELU in one pass, as XLA's fusion does. Its math is the model's
(model._normal_cdf_pdf, model._gelu_slope); it runs on GPU through Triton where the shapes
divide into tiles, per device under the data mesh (as bert_jax/layer_norm_kernel.py does),
and in Pallas' interpret mode on CPU (tests/test_gelu_pallas.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from bert_jax import layer_norm_kernel as lnk
from bert_jax import model

# Tiles of 8 x 512 with 4 warps: the fastest backward of benchmarks/gelu_sweep.py on an H200
# (scale4 call: 123.7 µs a call for [12288, 4096] against 190.3 µs with the 32 x 256 tiles the
# step was measured with, and XLA's fusion 203.8 µs alone, about 150 µs inside the step); the
# forward there 95.0 µs against 114.9. Not yet measured inside the train step with these tiles.
ROWS, COLS, NUM_WARPS = 8, 512, 4


def grads(h, g):
  """dh = g GELU'(h) in h's dtype and the bias gradient (the column sums of that dh) in
  float32 [1, F], for rows [n, F]: the math of the kernel, and XLA's where it does not fit."""
  x = h.astype(jnp.float32)
  dh = (g.astype(jnp.float32) * model._gelu_slope(x, *model._normal_cdf_pdf(x))).astype(h.dtype)
  return dh, jnp.sum(dh.astype(jnp.float32), axis=0, keepdims=True)


def _kernel(h_ref, g_ref, dh_ref, dbias_ref):
  dh_ref[...], dbias_ref[...] = grads(h_ref[...], g_ref[...])


def _cols(f: int) -> int:
  return min(COLS, f)


def fits(n: int, f: int) -> bool:
  """Whether [n, f] rows split into the kernel's tiles (ROWS x up to COLS) on this backend;
  Triton needs a power-of-two tile width."""
  cols = _cols(f)
  if n % ROWS or f % cols:
    return False
  return lnk._interpret() or (lnk._triton_available() and cols & (cols - 1) == 0)


def usable(h) -> bool:
  """Whether bias_gelu_bwd takes h ([B, ..., F]) here, per device under the data mesh."""
  f = h.shape[-1]
  return h.ndim >= 2 and fits(h.size // f // lnk._data_shards(h.shape[0]), f)


_TILE, _BIAS, _PART = 'tile', 'bias', 'part'


def _specs(kinds, cols):
  """BlockSpecs over a (row block i, column block j) grid: 'tile' a [ROWS, cols] tile of an
  [n, F] array, 'bias' the [1, cols] piece of a [1, F] row, 'part' row i of [n / ROWS, F]."""
  index = {_TILE: lambda i, j: (i, j), _BIAS: lambda i, j: (0, j), _PART: lambda i, j: (i, j)}
  return [pl.BlockSpec((ROWS if k == _TILE else 1, cols), index[k]) for k in kinds]


def _tiled(kernel, name, ins, in_kinds, out_kinds, out_dtypes):
  """pallas_call of kernel over ins (the first an [n, F] array), tiled ROWS x cols."""
  n, f = ins[0].shape
  cols = _cols(f)
  params = None
  if not lnk._interpret():
    from jax.experimental.pallas import triton as plgpu
    params = plgpu.CompilerParams(num_warps=NUM_WARPS, num_stages=1)
  shapes = {_TILE: (n, f), _PART: (n // ROWS, f)}
  return pl.pallas_call(
      kernel, grid=(n // ROWS, f // cols), in_specs=_specs(in_kinds, cols),
      out_specs=_specs(out_kinds, cols),
      out_shape=[jax.ShapeDtypeStruct(shapes[k], d) for k, d in zip(out_kinds, out_dtypes)],
      compiler_params=params, interpret=lnk._interpret(), name=name)(*ins)


def _tiles_bwd(h, g):
  return _tiled(_kernel, 'bias_gelu_bwd', (h, g), (_TILE, _TILE), (_TILE, _PART),
                (h.dtype, jnp.float32))


def _fwd_kernel(h0_ref, bias_ref, h_ref, y_ref):
  h = h0_ref[...] + bias_ref[...]
  h_ref[...] = h
  x = h.astype(jnp.float32)
  y_ref[...] = (x * model._normal_cdf(x)).astype(y_ref.dtype)      # model._gelu's math


def _tiles_fwd(h0, bias):
  return _tiled(_fwd_kernel, 'bias_gelu_fwd', (h0, bias), (_TILE, _BIAS), (_TILE, _TILE),
                (h0.dtype, h0.dtype))


def bias_gelu_bwd(h, g):
  """(dh, dbias float32 [F]) for y = GELU(h), h = x W + b, given dy = g; h [B, ..., F] is the
  pre-activation the forward pass kept. Check `usable(h)` first."""
  f = h.shape[-1]
  flat = lambda a: a.reshape(a.shape[0], -1, f)

  def local(h, g):
    n = h.shape[0] * h.shape[1]
    dh, parts = _tiles_bwd(h.reshape(n, f), g.reshape(n, f))
    return dh.reshape(h.shape), parts

  dh, parts = lnk.per_device(local, h.shape[0], 2, 0, 2)(flat(h), flat(g))
  return dh.reshape(h.shape), jnp.sum(parts, axis=0)


def bias_gelu_fwd(h0, bias):
  """(h0 + bias, GELU of it), both in h0's dtype, in one pass. Check `usable(h0)` first."""
  f = h0.shape[-1]

  def local(h0, bias):
    n = h0.shape[0] * h0.shape[1]
    h, y = _tiles_fwd(h0.reshape(n, f), bias)
    return h.reshape(h0.shape), y.reshape(h0.shape)

  flat = h0.reshape(h0.shape[0], -1, f)
  h, y = lnk.per_device(local, h0.shape[0], 1, 1, 2)(flat, bias.reshape(1, f))
  return h.reshape(h0.shape), y.reshape(h0.shape)


# The forward pass as a kernel too: profile_step's gelu_kernel_fwd sets it (read at tracing)
FORWARD_KERNEL = False


@jax.custom_vjp
def bias_gelu(h0, bias):
  """GELU(h0 + bias), both in the compute dtype, as model._dense then model._gelu compute it."""
  return _fwd(h0, bias)[0]


def _fwd(h0, bias):
  if FORWARD_KERNEL and usable(h0):
    h, y = bias_gelu_fwd(h0, bias)
    return y, h
  h = h0 + bias
  return model._gelu(h), h


def _bwd(h, g):
  if usable(h):
    dh, dbias = bias_gelu_bwd(h, g)
  else:
    f = h.shape[-1]
    dh, dbias = grads(h.reshape(-1, f), g.reshape(-1, f))
    dh = dh.reshape(h.shape)
  return dh, dbias.reshape(h.shape[-1]).astype(h.dtype)


bias_gelu.defvjp(_fwd, _bwd)


def ffn_block(x_BTD, p, config, policy, rng):
  """model._ffn_block with its bias add and GELU as bias_gelu (the kernel's backward, and
  its forward where FORWARD_KERNEL is set)."""
  dtype = policy.compute_dtype
  h0 = jnp.einsum('...d,de->...e', x_BTD, p['ffn_in']['kernel'].astype(dtype),
                  precision=policy.matmul_precision)
  h = bias_gelu(h0, p['ffn_in']['bias'].astype(dtype))
  out_BTD = model._dense(h, p['ffn_out'], policy)
  out_BTD = model._dropout(out_BTD, config.hidden_dropout, model._rng(rng, 2))
  return model._layer_norm(out_BTD + x_BTD, p['ffn_ln'], config.layer_norm_eps, x_BTD.dtype)
