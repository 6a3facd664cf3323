"""The q/k/v gradients joined, with the projection's bias gradient, by one Pallas kernel: the
backward pass of model._qkv's fused projection on GPU (docs/performance_notes.md, 83, 84).

cuDNN's attention backward writes dq, dk and dv as three [B, T, N, H] arrays (laid out
[B, T, N, H] in memory). The fused q/k/v projection's backward needs them as one [B T, 3D]
gradient, whose rows are q | k | v. Left to XLA, that join with the bias gradient's column
sums fused in took 84 us a layer at seq 384 batch 32 on an H200 (2.03 ms a step, 1.8 TB/s
over its 150 MB; slope2's profile). Here each program copies a [ROWS, D] block of one of the
three into its place in the joined rows and writes its column sums as one float32 [1, D]
partial (XLA adds the partials, ROWS times fewer rows than the gradient): 41 us a layer,
and the train step 2.0 % faster at seq 384, 1.2 % at seq 128 (join1). It runs through Triton
on GPU where D is a power of two and the rows divide into blocks, per device under the data
mesh (as layer_norm_kernel.py does), and in Pallas' interpret mode on CPU
(tests/test_qkv_join_kernel.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from bert_jax import layer_norm_kernel as lnk

# 16 x 1,024 bf16 a program; 32 rows with 4 warps ran +0.3 %, inside the noise (join4)
ROWS, NUM_WARPS = 16, 8


def fits(n: int, d: int) -> bool:
  """Whether n rows of width d split into the kernel's blocks on this backend (the
  LayerNorm kernel's rule: Triton wants power-of-two block shapes)."""
  return lnk.fits(n, d, rows=ROWS, blocks=1)


def _width(g) -> int:
  """D of a gradient [B, T, N, H] or [B, T, D]: what each of its B T rows holds."""
  return g.size // (g.shape[0] * g.shape[1])


def usable(g) -> bool:
  """Whether join takes gradients like g ([B, T, N, H] or [B, T, D]) here, per device under
  the data mesh."""
  return g.ndim >= 3 and fits(g.shape[0] * g.shape[1] // lnk._data_shards(g.shape[0]),
                              _width(g))


def _kernel(q_ref, k_ref, v_ref, out_ref, part_ref):
  which = pl.program_id(1)

  def put(src_ref):
    block = src_ref[...]
    out_ref[...] = block
    part_ref[...] = jnp.sum(block.astype(jnp.float32), axis=0, keepdims=True)

  for index, src_ref in enumerate((q_ref, k_ref, v_ref)):
    pl.when(which == index)(lambda src_ref=src_ref: put(src_ref))


def _blocks(q, k, v):
  """[n, D] each; ([n, 3D] joined, float32 [n / ROWS, 3D] partial column sums)."""
  n, d = q.shape
  params = None
  if not lnk._interpret():
    from jax.experimental.pallas import triton as plgpu
    params = plgpu.CompilerParams(num_warps=NUM_WARPS, num_stages=1)
  source = pl.BlockSpec((ROWS, d), lambda i, j: (i, 0))
  return pl.pallas_call(
      _kernel, grid=(n // ROWS, 3), in_specs=[source] * 3,
      out_specs=[pl.BlockSpec((ROWS, d), lambda i, j: (i, j)),
                 pl.BlockSpec((1, d), lambda i, j: (i, j))],
      out_shape=[jax.ShapeDtypeStruct((n, 3 * d), q.dtype),
                 jax.ShapeDtypeStruct((n // ROWS, 3 * d), jnp.float32)],
      compiler_params=params, interpret=lnk._interpret(), name='qkv_join')(q, k, v)


def join(dq, dk, dv):
  """(g [B T, 3D] in the gradients' dtype, whose rows are dq | dk | dv, and the column sums
  of g in float32 [3D]) for dq, dk, dv [B, T, N, H] (or [B, T, D]). Check `usable(dq)`."""
  b, d = dq.shape[0], _width(dq)
  flat = lambda g: g.reshape(b, -1, d)                                 # [B, T, D]

  def local(q, k, v):
    rows = q.shape[0] * q.shape[1]
    g, parts = _blocks(q.reshape(rows, d), k.reshape(rows, d), v.reshape(rows, d))
    return g.reshape(q.shape[0], q.shape[1], 3 * d), parts

  g, parts = lnk.per_device(local, b, 3, 0, 2)(flat(dq), flat(dk), flat(dv))
  return g.reshape(-1, 3 * d), jnp.sum(parts, axis=0)


def reference(dq, dk, dv):
  """join's result as XLA computes it (a stack, then the column sums)."""
  g = jnp.stack([dq, dk, dv], axis=2).reshape(-1, 3 * _width(dq))
  return g, jnp.sum(g.astype(jnp.float32), axis=0)
