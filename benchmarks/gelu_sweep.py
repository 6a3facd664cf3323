"""The bias + GELU Pallas kernels alone, over tile shapes and warps, against XLA's fusions.

  python benchmarks/gelu_sweep.py --rows 12288 --width 4096 --out gpu_out/gelu_sweep.jsonl

Entry 29 of docs/performance_notes.md: inside the train step the kernels
(benchmarks/gelu_pallas.py, 32 x 256 tiles, 4 warps) ran at about a third of the GPU's
bandwidth and lost to XLA. This times each kernel on its own ([rows, width] bf16, the FFN's
shape for BERT-Large at seq 384 and batch 32 by default) for every tile shape and warp count
asked, beside XLA's fusion of the same math (gelu_pallas.grads; bias add + model._gelu), and
writes one JSON line per point: microseconds per call (median of --repeats timings of --calls
calls) and the bandwidth the bytes each call must move imply. Meant for a GPU (Triton); on CPU
the kernels run in Pallas' interpret mode (a check that the script runs, not a timing).
"""
import argparse
import itertools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gelu_pallas as gp  # noqa: E402
from bert_jax import model, records  # noqa: E402


def timed_us(fn, args, calls, repeats):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t0) / calls * 1e6)
  return float(np.median(times))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--rows', type=int, default=12288)
  p.add_argument('--width', type=int, default=4096)
  p.add_argument('--tile-rows', type=int, nargs='+', default=[8, 16, 32, 64])
  p.add_argument('--tile-cols', type=int, nargs='+', default=[128, 256, 512, 1024])
  p.add_argument('--warps', type=int, nargs='+', default=[4, 8])
  p.add_argument('--calls', type=int, default=50)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--out', required=True)
  args = p.parse_args()
  n, f = args.rows, args.width
  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.normal(size=(n, f)), jnp.bfloat16)
  g = jnp.asarray(rng.normal(size=(n, f)), jnp.bfloat16)
  bias = jnp.asarray(rng.normal(size=(1, f)), jnp.bfloat16)
  nbytes = {'bwd': 3 * n * f * 2, 'fwd': 3 * n * f * 2}   # bwd: h, g in, dh out; fwd: h0 in, h, y out

  def emit(rec):   # the card, driver and versions come from records.append
    rec = records.append(args.out, {'tool': 'gelu_sweep', 'rows': n, 'width': f, **rec,
                                    'tb_per_s': nbytes[rec['pass']] / rec['us'] / 1e6})
    print(json.dumps(rec), flush=True)

  xla_bwd = jax.jit(gp.grads)
  xla_fwd = jax.jit(lambda h0, b: (h0 + b, model._gelu(h0 + b)))
  emit({'pass': 'bwd', 'impl': 'xla', 'us': timed_us(xla_bwd, (h, g), args.calls, args.repeats)})
  emit({'pass': 'fwd', 'impl': 'xla',
        'us': timed_us(xla_fwd, (h, bias), args.calls, args.repeats)})
  for rows, cols, warps in itertools.product(args.tile_rows, args.tile_cols, args.warps):
    if n % rows or f % cols:
      continue
    gp.ROWS, gp.COLS, gp.NUM_WARPS = rows, cols, warps
    for name, fn, fn_args in (('bwd', gp._tiles_bwd, (h, g)), ('fwd', gp._tiles_fwd, (h, bias))):
      try:
        # a new function each time: jit would otherwise reuse the first tile's trace
        us = timed_us(jax.jit(lambda *a, fn=fn: fn(*a)), fn_args, args.calls, args.repeats)
      except Exception as e:  # noqa: BLE001 - a tile Triton cannot build is reported, skipped
        emit({'pass': name, 'impl': 'pallas', 'tile': [rows, cols], 'warps': warps,
              'us': float('nan'), 'error': f'{type(e).__name__}: {str(e)[:200]}'})
        continue
      emit({'pass': name, 'impl': 'pallas', 'tile': [rows, cols], 'warps': warps, 'us': us})


if __name__ == '__main__':
  main()
