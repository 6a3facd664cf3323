"""LayerNorm backward as one Pallas kernel per block of rows (GPU; the model's choice there).

XLA computes a LayerNorm backward in three fusions that each re-read the incoming gradient
and the input to recompute the row sums, one of them writing g * xhat as float32 [B, T, D]
for the scale gradient: about 120 us per LayerNorm of BERT-Large at seq 384, batch 32. This
kernel reads g and x once per block of rows, computes both row sums in registers, and writes
dx plus one float32 [1, D] partial sum per block for the scale and bias gradients (XLA adds
the partials): 37 us per LayerNorm in blocks of 4 rows, and the step went from 497 to 519
sent/s on one H200 (docs/performance_notes.md, 20).

On GPU it lowers through Triton, whose block shapes must be powers of two: it runs where D
is one (BERT-Large's 1024, not Base's 768) and the rows split into blocks; elsewhere, on CPU,
and where Pallas' Triton backend does not import, the model keeps XLA's backward. Under a
mesh whose 'data' axis splits the batch (the train step sets it, bert_jax/train.py), each
device runs the kernel on its own rows (shard_map): a Pallas call has no partitioning rule,
so GSPMD would otherwise gather the whole batch onto every device. The tests run it in
Pallas' interpret mode on CPU.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.sharding import PartitionSpec as P

from bert_jax.mesh import DATA_AXIS

ROWS, NUM_WARPS = 4, 4  # 4 rows x 4 warps: 518.9 sent/s; 16 x 8: 516.8 (same call, entry 20)


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


def _interpret() -> bool:
  return jax.default_backend() == 'cpu'


@functools.cache
def _triton_available() -> bool:
  """Pallas' Triton backend imports (jax 0.11 marks it deprecated in favour of Mosaic GPU)."""
  try:
    from jax.experimental.pallas import triton  # noqa: F401
  except ImportError:
    return False
  return True


def fits(n: int, d: int, rows: int = ROWS) -> bool:
  """Whether the kernel takes an [n, d] input in blocks of `rows` rows."""
  if _interpret():
    return n % rows == 0
  return (_triton_available() and n % rows == 0 and d & (d - 1) == 0
          and rows & (rows - 1) == 0)


def _data_shards(batch: int) -> int:
  """How many ways the enclosing mesh's data axis splits a leading axis of `batch`."""
  mesh = jax.sharding.get_abstract_mesh()
  size = 1 if mesh.empty else dict(mesh.shape).get(DATA_AXIS, 1)
  return size if size > 1 and batch % size == 0 else 1


def usable(x) -> bool:
  """Whether layer_norm_bwd takes x ([B, ..., D]) on this backend and mesh."""
  d, shards = x.shape[-1], _data_shards(x.shape[0])
  return x.ndim >= 2 and fits(x.size // d // shards, d)


def _rows_bwd(x, g, mean, rstd, scale, rows, num_warps):
  """[n, D] inputs; (dx [n, D], per-block partial dscale and dbias [n / rows, D])."""
  n, d = x.shape
  params = None
  if not _interpret():
    from jax.experimental.pallas import triton as plgpu
    params = plgpu.CompilerParams(num_warps=num_warps, num_stages=1)
  row_block = pl.BlockSpec((rows, d), lambda i: (i, 0))
  stat_block = pl.BlockSpec((rows,), lambda i: (i,))
  part_block = pl.BlockSpec((1, d), lambda i: (i, 0))
  return pl.pallas_call(
      _kernel, grid=(n // rows,),
      in_specs=[row_block, row_block, stat_block, stat_block,
                pl.BlockSpec((1, d), lambda i: (0, 0))],
      out_specs=[row_block, part_block, part_block],
      out_shape=[jax.ShapeDtypeStruct((n, d), x.dtype),
                 jax.ShapeDtypeStruct((n // rows, d), jnp.float32),
                 jax.ShapeDtypeStruct((n // rows, d), jnp.float32)],
      compiler_params=params, interpret=_interpret(), name='ln_bwd_rows',
  )(x, g, mean, rstd, scale)


def layer_norm_bwd(x, g, mean, rstd, scale, *, rows: int = ROWS, num_warps: int = NUM_WARPS):
  """(dx, dscale, dbias) of LayerNorm y = (x - mean) * rstd * scale + bias over the last axis
  of x [B, ..., D], given the output gradient g; mean and rstd as the forward pass kept them
  ([B, ..., 1]); dscale and dbias float32 [D]. Check `usable(x)` first."""
  d = x.shape[-1]
  flat = lambda a: a.reshape(a.shape[0], -1, a.shape[-1])            # [B, n / B, D or 1]
  args = (flat(x), flat(g), flat(mean).astype(jnp.float32), flat(rstd).astype(jnp.float32),
          scale.reshape(1, d))

  def local(x, g, mean, rstd, scale):
    n = x.shape[0] * x.shape[1]
    dx, dscale, dbias = _rows_bwd(x.reshape(n, d), g.reshape(n, d), mean.reshape(n),
                                  rstd.reshape(n), scale, rows, num_warps)
    return dx.reshape(x.shape), dscale, dbias

  if _data_shards(x.shape[0]) > 1:
    mesh = jax.sharding.get_abstract_mesh()
    rows_spec = P(DATA_AXIS)
    local = jax.shard_map(local, mesh=mesh, in_specs=(rows_spec,) * 4 + (P(),),
                          out_specs=(rows_spec,) * 3, check_vma=False)
  dx, dscale, dbias = local(*args)
  return dx.reshape(x.shape), jnp.sum(dscale, axis=0), jnp.sum(dbias, axis=0)
