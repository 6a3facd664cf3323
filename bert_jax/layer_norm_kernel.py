"""LayerNorm as Pallas kernels on GPU: the backward in training, the forward at inference.

XLA computes a LayerNorm backward in three fusions that each re-read the incoming gradient
and the input to recompute the row sums, one of them writing g * xhat as float32 [B, T, D]
for the scale gradient: about 120 us per LayerNorm of BERT-Large at seq 384, batch 32. This
kernel reads g and x once per block of rows, computes both row sums in registers, and writes
dx plus one float32 [1, D] partial sum per block for the scale and bias gradients (XLA adds
the partials, both in one reduction): 37 us per LayerNorm in blocks of 4 rows, and the step
went from 497 to 519 sent/s on one H200 (docs/performance_notes.md, 20).

On GPU it lowers through Triton, whose block shapes must be powers of two: it runs where D
is one (BERT-Large's 1024, not Base's 768) and the rows split into blocks; elsewhere, on CPU,
and where Pallas' Triton backend does not import, the model keeps XLA's backward. Under a
mesh whose 'data' axis splits the batch (the train step sets it, bert_jax/train.py), each
device runs the kernel on its own rows (shard_map): a Pallas call has no partitioning rule,
so GSPMD would otherwise gather the whole batch onto every device. The tests run it in
Pallas' interpret mode on CPU.

At inference (no gradient taken) XLA runs a LayerNorm as two kernels, the row sums and the
normalisation, which reads x again (three at BERT-Large batch 8: the rsqrt of the variance on
[B, T] apart). layer_norm_fwd is one kernel per block of rows that reads x once
(docs/performance_notes.md, 56); training keeps XLA's forward, whose row sums it fuses into the
pass that forms x.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.sharding import PartitionSpec as P

from bert_jax.mesh import DATA_AXIS

ROWS, NUM_WARPS = 4, 4  # 4 rows x 4 warps: 518.9 sent/s; 16 x 8: 516.8 (same call, entry 20)
# Blocks of ROWS rows per program. More than 1 means fewer per-program partial sums for XLA to
# add (0.91 ms a step at 1); profile_step's ln_blocks4 / ln_blocks8 variants set it. Not yet
# measured on a GPU, so the model keeps the measured 1.
BLOCKS = 1
# The two gradients' partial sums added in one reduction: XLA then runs one kernel over both,
# not two (49 kernels of 12.6 us in place of 98 of 8.8 a BERT-Large step at seq 384 batch 32;
# +0.6 % there, +1.0 % at seq 128 batch 64 on an H200, docs/performance_notes.md, 81).
# profile_step's ln_apart variant turns it off.
JOINT_SUMS = True
# The forward's programs: FWD_ROWS rows each, FWD_NUM_WARPS warps (not yet swept on a GPU)
FWD_ROWS, FWD_NUM_WARPS = 4, 4


def grads(x, g, mean, rstd, scale):
  """The LayerNorm backward in float32, for rows along the last axis: dx, and the sums over
  all rows of g * xhat and g (kept as [1, ..., D]). This kernel runs it per block of rows;
  the model's XLA backward runs it on the whole [B, T, D] (model._ln_bwd_xla)."""
  xhat = (x - mean) * rstd
  gs = g * scale
  a = jnp.mean(gs, axis=-1, keepdims=True)
  b = jnp.mean(gs * xhat, axis=-1, keepdims=True)
  dx = rstd * (gs - a - xhat * b)
  rows = tuple(range(x.ndim - 1))
  return dx, jnp.sum(g * xhat, axis=rows, keepdims=True), jnp.sum(g, axis=rows, keepdims=True)


def normalise(x, scale, bias, eps):
  """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, in x's dtype (float32
  here); the variance from the centred values, which a kernel holds in registers anyway."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  xc = x - mean
  var = jnp.mean(xc * xc, axis=-1, keepdims=True)
  return xc * jax.lax.rsqrt(var + eps) * scale + bias


def _fwd_kernel(x_ref, scale_ref, bias_ref, y_ref, *, eps):
  f32 = jnp.float32
  y = normalise(x_ref[...].astype(f32), scale_ref[...].astype(f32), bias_ref[...].astype(f32),
                eps)
  y_ref[...] = y.astype(y_ref.dtype)


def _kernel(x_ref, g_ref, mean_ref, rstd_ref, scale_ref, dx_ref, dscale_ref, dbias_ref, *,
            rows, blocks):
  scale = scale_ref[...].astype(jnp.float32)             # [1, D]
  if blocks == 1:
    dx, dscale, dbias = grads(x_ref[...].astype(jnp.float32),
                              g_ref[...].astype(jnp.float32),
                              mean_ref[...][:, None], rstd_ref[...][:, None], scale)
    dx_ref[...] = dx.astype(dx_ref.dtype)
    dscale_ref[...] = dscale
    dbias_ref[...] = dbias
    return

  def body(i, sums):
    sl = pl.ds(i * rows, rows)
    dx, dscale, dbias = grads(x_ref[sl, :].astype(jnp.float32),
                              g_ref[sl, :].astype(jnp.float32),
                              mean_ref[sl][:, None], rstd_ref[sl][:, None], scale)
    dx_ref[sl, :] = dx.astype(dx_ref.dtype)
    return sums[0] + dscale, sums[1] + dbias

  zeros = jnp.zeros(scale.shape, jnp.float32)
  dscale_ref[...], dbias_ref[...] = jax.lax.fori_loop(0, blocks, body, (zeros, zeros))


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


def fits(n: int, d: int, rows: int | None = None, blocks: int | None = None) -> bool:
  """Whether the kernel takes an [n, d] input in programs of `blocks` blocks of `rows` rows."""
  rows, blocks = rows or ROWS, blocks or BLOCKS
  if n % (rows * blocks):
    return False
  return _interpret() or (_triton_available() and d & (d - 1) == 0 and rows & (rows - 1) == 0)


def _data_shards(batch: int) -> int:
  """How many ways the enclosing mesh's data axis splits a leading axis of `batch`."""
  mesh = jax.sharding.get_abstract_mesh()
  size = 1 if mesh.empty else dict(mesh.shape).get(DATA_AXIS, 1)
  return size if size > 1 and batch % size == 0 else 1


def per_device(local, batch: int, n_rows: int, n_shared: int, n_out: int):
  """local, run on each device's rows where the enclosing mesh's data axis splits a leading
  axis of `batch` (a shard_map: its first n_rows arguments and its n_out results split over
  'data', the n_shared after them replicated); local itself where it does not."""
  if _data_shards(batch) == 1:
    return local
  return jax.shard_map(local, mesh=jax.sharding.get_abstract_mesh(),
                       in_specs=(P(DATA_AXIS),) * n_rows + (P(),) * n_shared,
                       out_specs=(P(DATA_AXIS),) * n_out, check_vma=False)


def usable(x, rows: int | None = None, blocks: int | None = None) -> bool:
  """Whether layer_norm_bwd takes x ([B, ..., D]) on this backend and mesh (in programs of
  `blocks` blocks of `rows` rows, the module's ROWS and BLOCKS by default)."""
  d, shards = x.shape[-1], _data_shards(x.shape[0])
  return x.ndim >= 2 and fits(x.size // d // shards, d, rows, blocks)


def usable_fwd(x) -> bool:
  """Whether layer_norm_fwd takes x ([B, ..., D]) on this backend and mesh."""
  return usable(x, rows=FWD_ROWS, blocks=1)


def _params(num_warps):
  if _interpret():
    return None
  from jax.experimental.pallas import triton as plgpu
  return plgpu.CompilerParams(num_warps=num_warps, num_stages=1)


def _rows_fwd(x, scale, bias, eps, dtype, rows, num_warps, row):
  """[n, D] input, [L, D] scale and bias, of which row `row` is used; y [n, D] in dtype."""
  n, d = x.shape
  row_block = pl.BlockSpec((rows, d), lambda i: (i, 0))
  vector = pl.BlockSpec((1, d), lambda i: (row, 0))
  return pl.pallas_call(
      functools.partial(_fwd_kernel, eps=eps), grid=(n // rows,),
      in_specs=[row_block, vector, vector], out_specs=row_block,
      out_shape=jax.ShapeDtypeStruct((n, d), dtype),
      compiler_params=_params(num_warps), interpret=_interpret(), name='ln_fwd_rows',
  )(x, scale, bias)


def layer_norm_fwd(x, scale, bias, eps: float, dtype, *, row: int = 0,
                   rows: int | None = None, num_warps: int | None = None):
  """LayerNorm of x [B, ..., D] over its last axis, computed in float32 and returned in dtype,
  as one kernel per block of rows (check `usable_fwd(x)` first). scale and bias are [D], or
  stacks [L, D] of which the kernel reads row `row` in place (a slice given to a kernel is
  a copy first: 96 copies a BERT-Large call, docs/performance_notes.md, 56). Under a mesh
  whose data axis splits the batch, each device normalises its own rows."""
  rows, num_warps = rows or FWD_ROWS, num_warps or FWD_NUM_WARPS
  d = x.shape[-1]

  def local(x, scale, bias):
    n = x.shape[0] * x.shape[1]
    return (_rows_fwd(x.reshape(n, d), scale, bias, eps, dtype, rows, num_warps,
                      row).reshape(x.shape),)

  y, = per_device(local, x.shape[0], 1, 2, 1)(x.reshape(x.shape[0], -1, d),
                                               scale.reshape(-1, d), bias.reshape(-1, d))
  return y.reshape(x.shape)


def _rows_bwd(x, g, mean, rstd, scale, rows, num_warps, blocks):
  """[n, D] inputs; (dx [n, D], per-program partial dscale and dbias [n / (rows blocks), D])."""
  n, d = x.shape
  per_program = rows * blocks
  params = _params(num_warps)
  row_block = pl.BlockSpec((per_program, d), lambda i: (i, 0))
  stat_block = pl.BlockSpec((per_program,), lambda i: (i,))
  part_block = pl.BlockSpec((1, d), lambda i: (i, 0))
  parts = n // per_program
  return pl.pallas_call(
      functools.partial(_kernel, rows=rows, blocks=blocks), grid=(parts,),
      in_specs=[row_block, row_block, stat_block, stat_block,
                pl.BlockSpec((1, d), lambda i: (0, 0))],
      out_specs=[row_block, part_block, part_block],
      out_shape=[jax.ShapeDtypeStruct((n, d), x.dtype),
                 jax.ShapeDtypeStruct((parts, d), jnp.float32),
                 jax.ShapeDtypeStruct((parts, d), jnp.float32)],
      compiler_params=params, interpret=_interpret(), name='ln_bwd_rows',
  )(x, g, mean, rstd, scale)


def layer_norm_bwd(x, g, mean, rstd, scale, *, rows: int | None = None,
                   num_warps: int | None = None, blocks: int | None = None):
  """(dx, dscale, dbias) of LayerNorm y = (x - mean) * rstd * scale + bias over the last axis
  of x [B, ..., D], given the output gradient g; mean and rstd as the forward pass kept them
  ([B, ..., 1]); dscale and dbias float32 [D]. Check `usable(x)` first. rows, num_warps and
  blocks default to this module's ROWS, NUM_WARPS and BLOCKS as they are when the caller is
  traced (a function jitted before a change keeps its compiled choice)."""
  rows, num_warps, blocks = rows or ROWS, num_warps or NUM_WARPS, blocks or BLOCKS
  d = x.shape[-1]
  flat = lambda a: a.reshape(a.shape[0], -1, a.shape[-1])            # [B, n / B, D or 1]
  args = (flat(x), flat(g), flat(mean).astype(jnp.float32), flat(rstd).astype(jnp.float32),
          scale.reshape(1, d))

  def local(x, g, mean, rstd, scale):
    n = x.shape[0] * x.shape[1]
    dx, dscale, dbias = _rows_bwd(x.reshape(n, d), g.reshape(n, d), mean.reshape(n),
                                  rstd.reshape(n), scale, rows, num_warps, blocks)
    return dx.reshape(x.shape), dscale, dbias

  dx, dscale, dbias = per_device(local, x.shape[0], 4, 1, 3)(*args)
  if JOINT_SUMS:
    dscale, dbias = jnp.sum(jnp.stack([dscale, dbias]), axis=1)
    return dx.reshape(x.shape), dscale, dbias
  return dx.reshape(x.shape), jnp.sum(dscale, axis=0), jnp.sum(dbias, axis=0)
