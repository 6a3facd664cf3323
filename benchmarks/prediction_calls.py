"""Where a small-batch prediction call's time goes: the job's loop against the bench's.

`inference.predict_logits` (what `--mode=evaluate` and the job run) times each call from its
dispatch until its logits are ready, making the next call's batch on the host meanwhile.
The bench (`benchmark.time_infer`) times calls on batches made beforehand. On an H200 the
job's unrolled bf16 calls at batch 8 took about 5.6 ms whatever their width
(docs/performance_notes.md, 93), where the bench's took 3.5-4 ms. This script runs, on the
same random BERT-Large weights and the same dev windows, for each precision and layer form:
  job     predict_logits itself (its latencies, each width's first call left out; with
          buckets its windows in order of width, eval.group_by_width's default);
  overlap the same eval step in predict_logits' order: the next batch made after a call's
          dispatch, before its wait;
  ahead   the next batch made before the call's dispatch;
  premade batches made beforehand, none made between calls;
  spin    as premade, waited for by polling (benchmark.wait_until_ready, the bench's wait);
  sorted  premade's calls in order of width: each width's program runs its calls together;
  same    premade's order of widths, each call on its width's first batch again: the programs
          switch as in premade, the inputs do not change;
so premade against sorted is what switching programs costs, premade against same what new
inputs cost (docs/performance_notes.md, 95 and 97). The others wait with
jax.block_until_ready, as the job does. Each way also gives its loop's seconds, making the
batches included, which is what a user waits for.
One JSON record a line: python benchmarks/prediction_calls.py --dev-file dev-v1.1.json.gz
--vocab-dir MODEL_DIR --out calls.jsonl [--windows 800 --batch 8 --bucket-width 64]
(random weights with a trained model's biases and LayerNorm scales,
benchmark.random_trained_like).
"""
import argparse
import dataclasses
import json
import time

import jax
import numpy as np

from bert_jax import batches, benchmark, inference, mesh as mesh_lib
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.settings import DataSettings, MeshSettings


def _loop(fn, params, calls, wait, order='premade') -> tuple[list[float], float]:
  """(ms a call, each width's first call left out; seconds for the whole loop, batches made
  included) over `calls`, an iterator of (batch, count). order: 'premade' (calls a list made
  beforehand), 'overlap' (the next batch made after this call's dispatch, before its wait:
  predict_logits' order) or 'ahead' (the next batch made before this call's dispatch)."""
  out, seen = [], set()
  calls = iter(calls)
  t_start = time.perf_counter()
  upcoming = next(calls, None)
  while upcoming is not None:
    batch, _ = upcoming
    if order != 'overlap':
      upcoming = next(calls, None)
    t0 = time.perf_counter()
    y = fn(params, batch)
    if order == 'overlap':
      upcoming = next(calls, None)
    wait(y)
    dt = (time.perf_counter() - t0) * 1e3
    width = batch['input_ids'].shape[1]
    if width in seen:
      out.append(dt)
    seen.add(width)
  return out, time.perf_counter() - t_start


def windows(features, n: int, run: int = 80):
  """About n windows: runs of `run` consecutive windows (as the job's calls take them),
  spread evenly over the set. Prediction reads only the model inputs."""
  run = min(run, n)
  starts = batches.spread(max(len(features) - run, 0) + 1, max(n // run, 1))
  idx = np.unique(np.concatenate([np.arange(s, min(s + run, len(features))) for s in starts]))
  per_window = ('input_ids', 'token_type_ids', 'attention_mask', 'start_positions',
                'end_positions', 'example_index', 'context_start', 'doc_start', 'doc_len',
                'max_context')
  return dataclasses.replace(features, **{k: getattr(features, k)[idx] for k in per_window})


def measure(params, features, mesh, config, policy, batch, scan, bucket_width) -> dict:
  """Each way's mean and median ms a call and its loop's seconds, for one precision, layer
  form and width (predict_logits' seconds include its first call's compile)."""
  t0 = time.perf_counter()
  _, _, timing = inference.predict_logits(params, features, mesh, config, policy, batch,
                                          scan_layers=scan, bucket_width=bucket_width)
  ways = {'job': (timing['latencies_ms'], time.perf_counter() - t0)}
  fn = inference.make_eval_fn(mesh, config, policy, scan)
  prepared = inference.prepare_params(params, policy, scan)
  sharding = mesh_lib.batch_sharding(mesh)
  made = lambda: batches.eval_batches(features, batch, sharding, bucket_width)
  _loop(fn, prepared, made(), jax.block_until_ready)   # compiles every width
  ways['overlap'] = _loop(fn, prepared, made(), jax.block_until_ready, 'overlap')
  ways['ahead'] = _loop(fn, prepared, made(), jax.block_until_ready, 'ahead')
  premade = list(made())
  ways['premade'] = _loop(fn, prepared, premade, jax.block_until_ready)
  ways['spin'] = _loop(fn, prepared, premade, benchmark.wait_until_ready)
  width = lambda call: call[0]['input_ids'].shape[1]
  ways['sorted'] = _loop(fn, prepared, sorted(premade, key=width), jax.block_until_ready)
  first = {}
  for call in premade:
    first.setdefault(width(call), call)
  ways['same'] = _loop(fn, prepared, [first[width(call)] for call in premade],
                       jax.block_until_ready)
  return {name: {'mean_ms': float(np.mean(v)), 'p50_ms': float(np.median(v)), 'calls': len(v),
                 'loop_s': loop_s} for name, (v, loop_s) in ways.items()}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--dev-file', required=True)
  ap.add_argument('--vocab-dir', required=True)
  ap.add_argument('--out', required=True)
  ap.add_argument('--preset', default='large')
  ap.add_argument('--seq', type=int, default=384)
  ap.add_argument('--windows', type=int, default=800,
                  help='about N dev windows, in runs of 80 spread over the set')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--bucket-width', type=int, default=64)
  ap.add_argument('--precisions', nargs='+', default=['bf16', 'fp16'])
  ap.add_argument('--attention', default='fused', help="the job's (configs/base.py)")
  ap.add_argument('--layers', nargs='+', default=['unrolled', 'scanned'],
                  choices=['unrolled', 'scanned'])
  ap.add_argument('--cache-dir', default='')
  args = ap.parse_args(argv)
  config = ModelConfig.preset(args.preset).replace(attention=args.attention)
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=1))
  data = DataSettings(dev_file=args.dev_file, cache_dir=args.cache_dir)
  features = windows(benchmark.squad_features(data, 'dev', args.seq, args.vocab_dir),
                     args.windows)
  params = benchmark.random_trained_like(mesh, config, jax.random.PRNGKey(1))
  with open(args.out, 'a') as f:
    for precision in args.precisions:
      policy = PrecisionPolicy(precision)
      for scan in (form == 'scanned' for form in args.layers):
        for width in (0, args.bucket_width):
          rec = {'precision': precision, 'scan_layers': scan, 'bucket_width': width,
                 'batch': args.batch, 'seq': args.seq, 'windows': len(features),
                 'attention': config.attention,
                 'device': jax.devices()[0].device_kind,
                 **measure(params, features, mesh, config, policy, args.batch, scan, width)}
          print(json.dumps(rec), flush=True)
          f.write(json.dumps(rec) + '\n')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
