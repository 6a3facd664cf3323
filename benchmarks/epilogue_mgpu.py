"""A Hopper matmul of our own with the FFN's bias and exact GELU in its epilogue, timed
against XLA.

Why: XLA runs BERT's FFN-in layer as a cuBLASLt matmul with a bias epilogue, then a pass of
its own for the exact GELU; cuBLASLt only offers the tanh GELU in an epilogue. The GELU passes
are 3-4 ms of a 50 ms seq-384 step (docs/benchmarks.md, "What 700 sent/s would take"). Folding
them into a matmul's epilogue needs a matmul of our own that is as fast as cuBLAS on BERT's
shapes. This tool measures whether one written with Pallas' Mosaic GPU backend is.

Cases, each timed by CUPTI over its kernels (jax.experimental.mosaic.gpu.profiler):
  xla_matmul       x @ w in XLA (a cuBLASLt kernel)
  xla_bias_gelu    h = x @ w + b and g = GELU(h) in XLA, as the model writes them
  lib_matmul[T]    jax's Hopper matmul example (jax.experimental.pallas.ops.gpu) as shipped
  ours_<E>[T]      this file's kernel; epilogue E: none, bias, gelu (the model's erfc fit:
                   abs, rsqrt, exp, a select) or gelu_erf (lax.erf)
where T names the tiles (see Tiles and parse_tiles).

  python benchmarks/epilogue_mgpu.py --out epi.jsonl                        # Hopper GPU
  python benchmarks/epilogue_mgpu.py --interpret --m 256 --k 128 --n 512    # CPU, no timing
  python benchmarks/epilogue_mgpu.py --trace traces --tiles m128n128k64s5i1e64x32g  # ranges

Each case writes one JSON record: kernel time (median over --iterations), TFLOP/s, the
largest difference from XLA's result, and the kernels one call launched. A case that fails to
compile or run writes its error instead, and the next case runs.

Measured on an H200 (docs/performance_notes.md, entry 76; gpu_run.sh groups epi1-epi8), FFN-in
at seq 384 batch 32: ours with the bias and GELU 192-194 µs (tiles m128n128k64s3i0, approximate
math) against XLA's matmul + GELU pass 215-217 µs, while ours without the epilogue is 141-144
against cuBLAS's 126-129. The GELU's arithmetic runs while the tensor cores wait; two blocks
an SM (the `c`/`p` options below) did not change that, nor did ping-pong blocks (`g`, entry
77: 194-200 µs): their in-kernel trace (--trace) shows each k step waiting for its operands
and the GELU epilogue outlasting the other warpgroup's main loop. Not used by the model.
"""

import argparse
import dataclasses
import functools
import glob
import json
import math
import os
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
from jax import lax

from bert_jax import model
from bert_jax.precision import PrecisionPolicy

EPILOGUES = ('none', 'bias', 'gelu', 'gelu_erf')
TRACE_EVENTS = 512   # profiler ranges a warpgroup may record a call (--trace)
_SQRT_HALF = 1.0 / math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class Tiles:
  """How the kernel cuts the problem.

  A thread block holds `wgs` compute warpgroups (1 or 2) side by side, each with an m x n
  float32 accumulator, so a block computes m rows x wgs n columns; `blocks` persistent blocks
  share an SM (1 or 2: with 2, one block's epilogue could run while the other's matmul does,
  where both blocks' shared memory and registers fit; entry 76 found no gain). `stages` input
  tiles are in flight; `inflight` (0 or 1) warpgroup matmuls are left running while the next
  one is issued; the epilogue stores epi_m x epi_n pieces; `band` is the width of the snake
  order over output tiles (L2 reuse). With `pingpong` the two compute warpgroups take whole
  m x n tiles in turn instead of sharing one: the producer fills one ring of `stages` buffers
  in tile order, so one warpgroup's matmuls run while the other's epilogue does (cuBLAS's
  ping-pong kernels); each warpgroup waits on barriers of its own for the shared buffers.
  With `specialized` False a block is one warpgroup (wgs must be 1) that
  issues its own copies and matmuls (plgpu.emit_pipeline): it needs no producer warpgroup's
  registers, so two such blocks can share an SM. `stagger` (ns): the second block of each SM
  (block index >= the SM count) sleeps this long before its first tile, so that the two
  blocks' epilogues need not fall at the same time.
  """
  m: int = 128
  n: int = 128
  k: int = 64
  stages: int = 3
  inflight: int = 0
  epi_m: int = 64
  epi_n: int = 64
  band: int = 8
  wgs: int = 2
  blocks: int = 1
  specialized: bool = True
  stagger: int = 0
  pingpong: bool = False

  def __post_init__(self):
    for name in ('m', 'n', 'k', 'stages', 'epi_m', 'epi_n', 'band'):
      if getattr(self, name) < 1:
        raise ValueError(f'Tiles.{name} must be positive, got {getattr(self, name)}')
    if self.stagger < 0:
      raise ValueError(f'Tiles.stagger is a delay in ns, at least 0, got {self.stagger}')
    for name in ('inflight', 'wgs', 'blocks'):
      if getattr(self, name) not in ((0, 1) if name == 'inflight' else (1, 2)):
        raise ValueError(f'Tiles.{name} must be {"0 or 1" if name == "inflight" else "1 or 2"}'
                         f', got {getattr(self, name)}')
    if self.m % 64 or self.n % 8:
      raise ValueError(f'Tiles.m must be a multiple of 64 and Tiles.n of 8 (a warpgroup '
                       f"matmul's shape), got m={self.m}, n={self.n}")
    if not self.specialized and self.wgs != 1:
      raise ValueError(f'a block without a producer warpgroup has one compute warpgroup: '
                       f'Tiles.wgs must be 1, got {self.wgs}')
    if self.pingpong and (self.wgs != 2 or not self.specialized or self.blocks != 1):
      raise ValueError(f'a ping-pong block has two compute warpgroups and a producer, one '
                       f'block an SM: want wgs 2, blocks 1, no p; got wgs={self.wgs}, '
                       f'blocks={self.blocks}, specialized={self.specialized}')
    if self.m % self.epi_m or self.n % self.epi_n:
      raise ValueError(f'the epilogue piece {self.epi_m}x{self.epi_n} must divide the '
                       f'warpgroup tile {self.m}x{self.n}')

  @property
  def label(self) -> str:
    return (f'm{self.m}n{self.n}k{self.k}s{self.stages}i{self.inflight}'
            f'e{self.epi_m}x{self.epi_n}b{self.band}w{self.wgs}c{self.blocks}'
            + (f'd{self.stagger}' if self.stagger else '') + ('' if self.specialized else 'p')
            + ('g' if self.pingpong else ''))

  @property
  def block_n(self) -> int:
    """Output columns a block's warpgroups cover at once: side by side, or one tile each."""
    return self.n if self.pingpong else self.wgs * self.n


def parse_tiles(text: str) -> Tiles:
  """'m128n128k64s3i1e64x32b8w1c2d3000p' -> Tiles; the e, b, w, c, d and p parts may be left
  out (d: the stagger in ns; a final p: no producer warpgroup, `specialized` False; a final g
  instead: the compute warpgroups take turns, `pingpong`)."""
  hit = re.fullmatch(r'm(\d+)n(\d+)k(\d+)s(\d+)i(\d+)(?:e(\d+)x(\d+))?(?:b(\d+))?'
                     r'(?:w(\d+))?(?:c(\d+))?(?:d(\d+))?([pg]?)', text)
  if not hit:
    raise ValueError(f'--tiles {text!r}: want mMnNkKsSTAGESiINFLIGHT[eEMxEN][bBAND][wWGS]'
                     f'[cBLOCKS][dSTAGGER][p|g], e.g. m128n128k64s3i1e64x64b8w2c1')
  m, n, k, s, i, em, en, band, wgs, blocks, stagger, kind = hit.groups()
  plain = kind == 'p'
  if plain and not wgs:
    wgs = '1'
  d = Tiles()
  return Tiles(m=int(m), n=int(n), k=int(k), stages=int(s), inflight=int(i),
               epi_m=int(em or d.epi_m), epi_n=int(en or d.epi_n), band=int(band or d.band),
               wgs=int(wgs or d.wgs), blocks=int(blocks or d.blocks),
               stagger=int(stagger or 0), specialized=not plain, pingpong=kind == 'g')


def gelu_model(x):
  """The model's GELU forward for float32 x: x Phi(x) with model._normal_cdf (its erfc fit)."""
  return x * model._normal_cdf(x)


def gelu_erf(x):
  """The exact GELU through lax.erf, for float32 x."""
  return 0.5 * x * (1.0 + lax.erf(x * _SQRT_HALF))


_ACTIVATIONS = {'gelu': gelu_model, 'gelu_erf': gelu_erf}


def reference(x, w, b, epilogue: str):
  """The same math in XLA, rounded where the model rounds: h in x's dtype (cuBLASLt's bias
  epilogue), the GELU of h in float32, rounded back."""
  y = jnp.dot(x, w, preferred_element_type=jnp.float32)
  if epilogue != 'none':
    y = y + b.astype(jnp.float32)
  h = y.astype(x.dtype)
  if epilogue in _ACTIVATIONS:
    return h, _ACTIVATIONS[epilogue](h.astype(jnp.float32)).astype(x.dtype)
  return (h,)


def _model_forward(x, w, b):
  """The model's FFN-in forward, by the model's own functions (model._dense, model._gelu): XLA
  gives it a cuBLASLt matmul with a bias epilogue, then a GELU pass."""
  policy = PrecisionPolicy({jnp.bfloat16: 'bf16', jnp.float16: 'fp16'}[x.dtype.type])
  h = model._dense(x, {'kernel': w, 'bias': b}, policy)
  return h, model._gelu(h)


def _check(x, w, b, epilogue: str, tiles: Tiles):
  if epilogue not in EPILOGUES:
    raise ValueError(f'epilogue must be one of {EPILOGUES}, got {epilogue!r}')
  if x.ndim != 2 or w.ndim != 2 or b.ndim != 1:
    raise ValueError(f'want x [M, K], w [K, N], b [N]; got {x.shape}, {w.shape}, {b.shape}')
  (m, k), (k2, n) = x.shape, w.shape
  if k != k2 or b.shape[0] != n:
    raise ValueError(f'shapes do not chain: x {x.shape} @ w {w.shape} + b {b.shape}')
  if x.dtype != w.dtype or x.dtype not in (jnp.bfloat16, jnp.float16):
    raise ValueError(f'x and w must both be bfloat16 or float16, got {x.dtype}, {w.dtype}')
  if m % tiles.m or n % tiles.block_n or k % tiles.k:
    raise ValueError(f'M={m}, N={n}, K={k} must be multiples of the tiles: m={tiles.m}, '
                     f'block n={tiles.block_n}, k={tiles.k}')


def dense_epilogue(x, w, b, *, epilogue: str = 'gelu', tiles: Tiles = Tiles(),
                   approx_math: bool = False, num_sms: int | None = None,
                   interpret: bool = False, trace_dir: str = ''):
  """x @ w with the bias and GELU in the epilogue, as one Mosaic GPU kernel.

  Returns (h,) for the epilogues none and bias, (h, GELU(h)) for gelu and gelu_erf, each
  [M, N] in x's dtype: training keeps h for the backward pass. Persistent: tiles.blocks
  blocks per SM (num_sms: the device's SM count by default) walk the output tiles in a banded
  snake order. With tiles.specialized one more warpgroup per block feeds its compute
  warpgroups through `stages` shared-memory buffers; without, the block's one warpgroup issues
  its own copies. approx_math lets Mosaic GPU use the fast approximate exp and rsqrt
  (as XLA's own GELU pass does on an H200; see model._normal_cdf_pdf). trace_dir: each call
  writes a Chrome trace there of every compute warpgroup's ranges (Mosaic GPU's in-kernel
  profiler; read by trace_summary): 'mma', each k step's matmul issued and waited for (the
  tensor cores' work); 'wait', a ping-pong warpgroup waiting for its k step's data;
  'epilogue'. A TRACE_EVENTS budget of ranges a warpgroup: a longer trace is cut short.
  """
  import jax.experimental.pallas as pl
  import jax.experimental.pallas.mosaic_gpu as plgpu

  _check(x, w, b, epilogue, tiles)
  (m, k), n = x.shape, w.shape[1]
  dtype = x.dtype
  cta_n = tiles.block_n
  m_tiles, n_tiles, k_steps = m // tiles.m, n // cta_n, k // tiles.k
  with_bias = epilogue != 'none'
  act = _ACTIVATIONS.get(epilogue)
  n_out = 2 if act else 1
  if num_sms is None:
    num_sms = 4 if interpret else jax.devices()[0].core_count

  def smem_transforms(cols):
    swizzle = plgpu.find_swizzle(cols * dtype.itemsize * 8)
    return (plgpu.TilingTransform((8, swizzle // dtype.itemsize)),
            plgpu.SwizzleTransform(swizzle))

  in_transforms, out_transforms = smem_transforms(tiles.k), smem_transforms(tiles.epi_n)

  spec = functools.partial(plgpu.BlockSpec, transforms=in_transforms, memory_space=plgpu.SMEM,
                           delay_release=tiles.inflight)
  in_specs = [spec((tiles.m, tiles.k), lambda s: (0, s)), spec((tiles.k, cta_n), lambda s: (s, 0))]
  piece = (tiles.wgs, 2, tiles.epi_m, tiles.epi_n)  # [warpgroup, slot, rows, cols]
  scratch = dict(
      out_smem=[plgpu.SMEM(piece, dtype, transforms=out_transforms) for _ in range(n_out)],
      bias_smem=plgpu.SMEM((tiles.wgs, tiles.n), b.dtype),
      bias_ready=plgpu.Barrier(num_barriers=tiles.wgs))

  def fetch_bias(b_gmem, wg, col0, bias_smem, bias_ready):
    if with_bias:  # lands while the main loop runs
      plgpu.copy_gmem_to_smem(b_gmem.at[pl.ds(col0, tiles.n)], bias_smem.at[wg],
                              bias_ready.at[wg])

  def store(acc_ref, wg, row0, col0, outs, out_smem, bias_smem, bias_ready):
    """The epilogue: acc (+ bias) -> h (-> GELU(h)), piece by piece through shared memory."""
    acc = acc_ref[...]
    if with_bias:
      plgpu.barrier_wait(bias_ready.at[wg])
    per_row = tiles.n // tiles.epi_n
    for i in range(tiles.m // tiles.epi_m):
      for j in range(per_row):
        slot = (i * per_row + j) % 2
        y = acc[i * tiles.epi_m:(i + 1) * tiles.epi_m, j * tiles.epi_n:(j + 1) * tiles.epi_n]
        if with_bias:
          bias = bias_smem[wg, pl.ds(j * tiles.epi_n, tiles.epi_n)]
          y = y + lax.broadcast_in_dim(bias.astype(jnp.float32), y.shape, (1,))
        h = y.astype(dtype)
        pieces = [h] + ([act(h.astype(jnp.float32)).astype(dtype)] if act else [])
        # the copies that last read this slot (two pieces ago) are done
        plgpu.wait_smem_to_gmem(n_out, wait_read_only=True)
        for buf, val in zip(out_smem, pieces):
          buf[wg, slot] = val
        plgpu.commit_smem()
        rows = pl.ds(row0 + i * tiles.epi_m, tiles.epi_m)
        cols = pl.ds(col0 + j * tiles.epi_n, tiles.epi_n)
        for buf, out in zip(out_smem, outs):
          plgpu.copy_smem_to_gmem(buf.at[wg, slot], out.at[rows, cols])

  def tile_index(info):
    (lin,) = info.index
    return plgpu.planar_snake(lin, (m_tiles, n_tiles), 1, tiles.band)

  def specialized_body(x_gmem, w_gmem, b_gmem, *outs):
    def pipeline(step, context):
      return plgpu.emit_pipeline_warp_specialized(
          step, grid=(k_steps,), memory_registers=40, in_specs=in_specs, wg_axis='wg',
          num_compute_wgs=tiles.wgs, max_concurrent_steps=tiles.stages,
          compute_context=context)

    unused = lambda *_, **__: None  # noqa: E731  (allocations do not depend on the body)

    @functools.partial(pl.run_scoped,
                       allocs=pipeline(unused, unused).get_allocations(x_gmem, w_gmem),
                       **scratch, collective_axes='wg')
    def _scope(allocs, out_smem, bias_smem, bias_ready):
      wg = lax.axis_index('wg')

      @plgpu.nd_loop((m_tiles * n_tiles,), collective_axes='sm')
      def _tile(info):
        mi, ni = tile_index(info)
        col0 = ni * cta_n + wg * tiles.n  # this warpgroup's first output column

        def step(_, x_smem, w_smem, acc_ref):
          with jax.named_scope('mma'):
            plgpu.wgmma(acc_ref, x_smem, w_smem.at[:, pl.ds(wg * tiles.n, tiles.n)])
            plgpu.wgmma_wait(tiles.inflight)
          return acc_ref

        def context(run):
          @functools.partial(pl.run_scoped,
                             acc_ref=plgpu.ACC((tiles.m, tiles.n), jnp.float32))
          def _acc(acc_ref):
            fetch_bias(b_gmem, wg, col0, bias_smem, bias_ready)
            run(acc_ref)
            with jax.named_scope('epilogue'):  # a range of its own under --trace
              store(acc_ref, wg, mi * tiles.m, col0, outs, out_smem, bias_smem, bias_ready)

        pipeline(step, context)(x_gmem.at[pl.ds(mi * tiles.m, tiles.m), :],
                                w_gmem.at[:, pl.ds(ni * cta_n, cta_n)], allocations=allocs)

      plgpu.wait_smem_to_gmem(0, wait_read_only=True)

  def plain_body(x_gmem, w_gmem, b_gmem, *outs):
    @functools.partial(pl.run_scoped, **scratch)
    def _scope(out_smem, bias_smem, bias_ready):
      if tiles.stagger and not interpret:  # timing only; the interpreter has no delay
        @pl.when(lax.axis_index('sm') >= num_sms)
        def _late():
          pl.delay(tiles.stagger)

      @plgpu.nd_loop((m_tiles * n_tiles,), collective_axes='sm')
      def _tile(info):
        mi, ni = tile_index(info)
        col0 = ni * cta_n

        @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tiles.m, tiles.n), jnp.float32))
        def _acc(acc_ref):
          fetch_bias(b_gmem, 0, col0, bias_smem, bias_ready)

          def step(_, x_smem, w_smem):
            plgpu.wgmma(acc_ref, x_smem, w_smem)
            plgpu.wgmma_wait(tiles.inflight)

          plgpu.emit_pipeline(step, grid=(k_steps,), in_specs=in_specs,
                              max_concurrent_steps=tiles.stages)(
                                  x_gmem.at[pl.ds(mi * tiles.m, tiles.m), :],
                                  w_gmem.at[:, pl.ds(col0, cta_n)])
          store(acc_ref, 0, mi * tiles.m, col0, outs, out_smem, bias_smem, bias_ready)

      plgpu.wait_smem_to_gmem(0, wait_read_only=True)

  def pingpong_body(x_gmem, w_gmem, b_gmem, *outs):
    stages, grid = tiles.stages, num_sms
    ring = dict(
        x_smem=plgpu.SMEM((stages, tiles.m, tiles.k), dtype, transforms=in_transforms),
        w_smem=plgpu.SMEM((stages, tiles.k, tiles.n), dtype, transforms=in_transforms),
        # a slot's full barriers are per warpgroup ([owner, slot]), so that each warpgroup
        # waits on every phase of its own; the ring's buffers are shared
        x_full=plgpu.Barrier(num_barriers=2 * stages),
        w_full=plgpu.Barrier(num_barriers=2 * stages),
        consumed=plgpu.Barrier(num_barriers=stages))

    @functools.partial(pl.run_scoped, **ring, **scratch, collective_axes='wg')
    def _scope(x_smem, w_smem, x_full, w_full, consumed, out_smem, bias_smem, bias_ready):
      wg, block = lax.axis_index('wg'), lax.axis_index('sm')
      # this block's tiles are block, block + grid, ...; the i-th goes to warpgroup i % 2
      n_block = (m_tiles * n_tiles - block + grid - 1) // grid

      def tile_of(i):
        return plgpu.planar_snake(block + i * grid, (m_tiles, n_tiles), 1, tiles.band)

      @pl.when(wg == 2)
      def _producer():
        plgpu.set_max_registers(40, action='decrease')

        @pl.loop(0, n_block * k_steps)
        def _step(g):
          mi, ni = tile_of(g // k_steps)
          kk, slot = g % k_steps, g % stages
          full = (g // k_steps) % 2 * stages + slot

          @pl.when(g >= stages)
          def _wait():  # the warpgroup that read this slot `stages` steps ago is done
            plgpu.barrier_wait(consumed.at[slot])

          plgpu.copy_gmem_to_smem(
              x_gmem.at[pl.ds(mi * tiles.m, tiles.m), pl.ds(kk * tiles.k, tiles.k)],
              x_smem.at[slot], x_full.at[full])
          plgpu.copy_gmem_to_smem(
              w_gmem.at[pl.ds(kk * tiles.k, tiles.k), pl.ds(ni * tiles.n, tiles.n)],
              w_smem.at[slot], w_full.at[full])

        total = n_block * k_steps

        @pl.loop(jnp.maximum(total - stages, 0), total)
        def _drain(g):  # the last reads of each slot, so that every phase is waited on
          plgpu.barrier_wait(consumed.at[g % stages])

      @pl.when(wg < 2)
      def _compute():
        plgpu.set_max_registers(232, action='increase')

        @pl.loop(0, (n_block - wg + 1) // 2)
        def _tile(j):
          i = wg + 2 * j
          mi, ni = tile_of(i)
          col0 = ni * tiles.n

          @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tiles.m, tiles.n), jnp.float32))
          def _acc(acc_ref):
            fetch_bias(b_gmem, wg, col0, bias_smem, bias_ready)

            @pl.loop(0, k_steps)
            def _k(kk):
              g = i * k_steps + kk
              slot = g % stages
              with jax.named_scope('wait'):  # ranges of their own under --trace
                plgpu.barrier_wait(x_full.at[wg * stages + slot])
                plgpu.barrier_wait(w_full.at[wg * stages + slot])
              with jax.named_scope('mma'):
                plgpu.wgmma(acc_ref, x_smem.at[slot], w_smem.at[slot])
                plgpu.wgmma_wait(tiles.inflight)
                if tiles.inflight:  # the matmul before this one is done with its slot
                  @pl.when(kk > 0)
                  def _release():
                    plgpu.barrier_arrive(consumed.at[(g - 1) % stages])
                else:
                  plgpu.barrier_arrive(consumed.at[slot])

            if tiles.inflight:
              with jax.named_scope('mma'):
                plgpu.wgmma_wait(0)
                plgpu.barrier_arrive(consumed.at[(i * k_steps + k_steps - 1) % stages])
            with jax.named_scope('epilogue'):
              store(acc_ref, wg, mi * tiles.m, col0, outs, out_smem, bias_smem, bias_ready)

        plgpu.wait_smem_to_gmem(0, wait_read_only=True)

  extra = {}
  if interpret:
    from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams
    extra['interpret'] = InterpretGPUParams()
  if tiles.pingpong:
    body, threads = pingpong_body, dict(num_threads=3, thread_name='wg')
  elif tiles.specialized:
    body, threads = specialized_body, dict(num_threads=tiles.wgs + 1, thread_name='wg')
  else:
    body, threads = plain_body, {}
  kernel = plgpu.kernel(
      body, out_type=tuple(jax.ShapeDtypeStruct((m, n), dtype) for _ in range(n_out)),
      grid=(num_sms * tiles.blocks,), grid_names=('sm',), **threads,
      compiler_params=plgpu.CompilerParams(
          lowering_semantics=plgpu.LoweringSemantics.Warpgroup, approx_math=approx_math,
          **(dict(profile_space=TRACE_EVENTS, profile_dir=trace_dir, profile_bounds_check=True)
             if trace_dir else {})),
      **extra)
  return tuple(kernel(x, w, b))


def _lib_matmul(x, w, tiles: Tiles):
  """jax's Hopper matmul example as shipped, at the same tiles (no epilogue work)."""
  from jax.experimental.pallas.ops.gpu import hopper_matmul_mgpu as lib
  dim = lib.MatmulDimension
  config = lib.TuningConfig(
      tile_m=tiles.m, tile_n=tiles.n, tile_k=tiles.k, max_concurrent_steps=tiles.stages,
      epi_tile_m=tiles.epi_m, epi_tile_n=tiles.epi_n, grid_minor_dim=dim.N,
      grid_tile_width=tiles.band, wg_dimension=dim.N)
  return (lib.matmul(x, w, None, config),)


def _intervals(events):
  """Chrome-trace B/E events of one thread -> {name: [(begin, end), ...]} in µs."""
  out, open_at = {}, {}
  for e in sorted(events, key=lambda e: e['ts']):
    if e['ph'] == 'B':
      open_at[e['name']] = e['ts']
    elif e['name'] in open_at:
      out.setdefault(e['name'], []).append((open_at.pop(e['name']), e['ts']))
  return out


def _length(intervals) -> float:
  """Total length of the union of (begin, end) intervals."""
  total, end = 0.0, float('-inf')
  for b, e in sorted(intervals):
    if e > end:
      total += e - max(b, end)
      end = e
  return total


def _intersect(a, b):
  return [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b if max(x0, y0) < min(x1, y1)]


def trace_summary(trace: dict, threads_per_block: int = 3) -> dict:
  """How a block's compute warpgroups spent a call, from Mosaic GPU's trace (thread id - 1
  = warpgroup + threads_per_block x block; ranges 'mma' and 'epilogue', see
  dense_epilogue), as shares of each block's span, averaged over blocks:
    main_busy      some warpgroup in an 'mma' range (the tensor cores can be busy)
    both_main      both warpgroups in 'mma' ranges at once
    epi_beside_main  one warpgroup's epilogue while the other is in an 'mma' range
    epi_alone      epilogue time with no 'mma' range beside it (tensor cores idle)
  and `epilogue_hidden`: the share of all epilogue time spent beside another's 'mma'."""
  by_block = {}
  for e in trace.get('traceEvents', []):
    block, wg = divmod(e['tid'] - 1, threads_per_block)
    by_block.setdefault(block, {}).setdefault(wg, []).append(e)
  shares, epi_total, epi_hidden = [], 0.0, 0.0
  for threads in by_block.values():
    ranges = {wg: _intervals(ev) for wg, ev in threads.items()}
    mains = {wg: r.get('mma', []) for wg, r in ranges.items()}
    epis = {wg: r.get('epilogue', []) for wg, r in ranges.items()}
    every = [iv for wg in ranges for iv in mains[wg] + epis[wg]]
    if not every:
      continue
    span = max(e for _, e in every) - min(b for b, _ in every)
    if span <= 0:
      continue
    all_main = [iv for ivs in mains.values() for iv in ivs]
    all_epi = [iv for ivs in epis.values() for iv in ivs]
    beside = [iv for wg in epis for other in mains if other != wg
              for iv in _intersect(epis[wg], mains[other])]
    both = [iv for a in mains for b in mains if a < b for iv in _intersect(mains[a], mains[b])]
    main_busy = _length(all_main)
    # epilogue time not covered by any main loop: |epi ∪ main| - |main|
    alone = _length(all_epi + all_main) - main_busy
    shares.append((main_busy / span, _length(both) / span, _length(beside) / span,
                   alone / span, span))
    epi_total += sum(e - b for b, e in all_epi)
    epi_hidden += _length(beside)
  if not shares:
    return {'trace_blocks': 0}
  mean = lambda i: sum(s[i] for s in shares) / len(shares)  # noqa: E731
  return {'trace_blocks': len(shares), 'span_us': mean(4), 'main_busy': mean(0),
          'both_main': mean(1), 'epi_beside_main': mean(2), 'epi_alone': mean(3),
          'epilogue_hidden': epi_hidden / epi_total if epi_total else None}


def trace_folder(trace_dir: str, case: str) -> str:
  """Where --trace puts a case's traces: its name with characters a path should not hold
  replaced, e.g. 'ours_gelu[m64n64k64s2i0...g]' -> 'ours_gelu_m64n64k64s2i0..._'."""
  return os.path.join(trace_dir, re.sub(r'[^\w.+-]', '_', case))


def _read_traces(folder: str) -> dict:
  """The summary of the newest trace in folder: this run's one call of the case (an earlier
  run with the same case name, e.g. at another shape, leaves its own there too)."""
  files = glob.glob(os.path.join(folder, '*-trace.json'))
  if not files:
    return {'trace_error': f'no trace in {folder}'}
  newest = max(files, key=os.path.getmtime)
  with open(newest) as f:
    return {'trace_file': newest, **trace_summary(json.load(f))}


def _time(fn, args, iterations: int):
  """The median over `iterations` calls of fn's kernel time in ms (CUPTI), and the kernels of
  the last call as [name, µs]."""
  from jax.experimental.mosaic.gpu import profiler
  _, runs = profiler.measure(fn, aggregate=False, iterations=iterations)(*args)
  totals = [sum(t for _, t in run) for run in runs]
  return statistics.median(totals), [[name[:80], round(t * 1e3, 2)] for name, t in runs[-1]]


def run_case(name, fn, args, want, flops: float, iterations: int, timed: bool) -> dict:
  record = {'tool': 'epilogue_mgpu', 'case': name}
  try:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    record['first_call_s'] = round(time.perf_counter() - t0, 2)
    record['max_abs_err'] = max(
        float(jnp.max(jnp.abs(g.astype(jnp.float32) - r.astype(jnp.float32))))
        for g, r in zip(out, want))
    if timed:
      ms, kernels = _time(fn, args, iterations)
      record.update(kernel_ms=ms, tflops=flops / ms / 1e9, kernels=kernels)
  except Exception as e:  # noqa: BLE001  (a case that fails is a result; the next one runs)
    record['error'] = f'{type(e).__name__}: {str(e)[:600]}'
  return record


def cases(tiles_list, epilogues, *, lib: bool, interpret: bool, approx=(False,),
          trace_dir: str = ''):
  """(name, jitted function of (x, w, b), the epilogue whose reference it must match)."""
  out = [('xla_matmul', jax.jit(lambda x, w, b: (x @ w,)), 'none'),
         ('xla_bias_gelu', jax.jit(_model_forward), 'gelu')]
  for t in tiles_list:
    if lib:
      out.append((f'lib_matmul[{t.label}]',
                  jax.jit(lambda x, w, b, t=t: _lib_matmul(x, w, t)), 'none'))
    for e in epilogues:
      for fast in approx:
        name = f'ours_{e}[{t.label}]' + ('+approx' if fast else '')
        where = trace_folder(trace_dir, name) if trace_dir else ''
        if where:
          os.makedirs(where, exist_ok=True)   # the profiler writes there, creating no folder
        out.append((name, jax.jit(functools.partial(
            dense_epilogue, epilogue=e, tiles=t, approx_math=fast, interpret=interpret,
            trace_dir=where)), e))
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--m', type=int, default=12288, help='rows (tokens); 32 x 384 by default')
  ap.add_argument('--k', type=int, default=1024, help='inner size (hidden)')
  ap.add_argument('--n', type=int, default=4096, help='output columns (FFN size)')
  ap.add_argument('--dtype', choices=('bfloat16', 'float16'), default='bfloat16')
  ap.add_argument('--iterations', type=int, default=20)
  ap.add_argument('--tiles', nargs='+', default=['m128n128k64s3i0', 'm128n128k64s3i1'],
                  help='tile sets, each mMnNkKsSTAGESiINFLIGHT[eEMxEN][bBAND][wWGS][cBLOCKS]'
                  '[dSTAGGER][p|g] (see parse_tiles)')
  ap.add_argument('--epilogues', nargs='+', default=list(EPILOGUES), choices=EPILOGUES)
  ap.add_argument('--no-lib', action='store_true', help="skip jax's example matmul")
  ap.add_argument('--approx', choices=('off', 'on', 'both'), default='off',
                  help="our kernel with Mosaic GPU's approximate math off, on, or each")
  ap.add_argument('--interpret', action='store_true',
                  help="run the kernels in Mosaic GPU's interpreter (CPU): results, no timing")
  ap.add_argument('--no-timing', action='store_true',
                  help='check results only (e.g. under Nsight Compute, which holds CUPTI)')
  ap.add_argument('--trace', metavar='DIR',
                  help="Mosaic GPU's in-kernel trace of our kernels' 'mma', 'wait' and "
                  "'epilogue' ranges: one call a case, its trace in DIR/<case>/, its summary "
                  '(trace_summary) in the record; no timing')
  ap.add_argument('--out', help='append the records to this JSONL file')
  a = ap.parse_args(argv)
  try:
    tiles_list = [parse_tiles(t) for t in a.tiles]
  except ValueError as e:
    ap.error(str(e))

  dtype = jnp.dtype(a.dtype)
  kx, kw, kb = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (a.m, a.k), jnp.float32).astype(dtype)
  w = (jax.random.normal(kw, (a.k, a.n), jnp.float32) / math.sqrt(a.k)).astype(dtype)
  b = jax.random.normal(kb, (a.n,), jnp.float32).astype(dtype)
  want = {e: jax.jit(functools.partial(reference, epilogue=e))(x, w, b) for e in EPILOGUES}
  common = {'device': jax.devices()[0].device_kind, 'jax': jax.__version__, 'm': a.m,
            'k': a.k, 'n': a.n, 'dtype': a.dtype}
  sink = open(a.out, 'a') if a.out else None
  approx = {'off': (False,), 'on': (True,), 'both': (False, True)}[a.approx]
  if a.trace and a.interpret:
    ap.error('--trace needs a GPU: the interpreter has no in-kernel profiler')
  for name, fn, e in cases(tiles_list, a.epilogues, lib=not (a.no_lib or a.interpret),
                           interpret=a.interpret, approx=approx, trace_dir=a.trace or ''):
    record = {**run_case(name, fn, (x, w, b), want[e], 2.0 * a.m * a.k * a.n, a.iterations,
                         timed=not (a.interpret or a.no_timing or a.trace)), **common}
    if a.trace and name.startswith('ours_'):
      record.update(_read_traces(trace_folder(a.trace, name)))
    line = json.dumps(record)
    print(line[:400], flush=True)
    if sink:
      sink.write(line + '\n')
      sink.flush()
  return 0


if __name__ == '__main__':
  sys.exit(main())
