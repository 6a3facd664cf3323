"""Experiment card: NVIDIA's finetune_inference_benchmark.sh, as bert_jax records.

What: BERT-Large inference latency p50/p90/p95/p99/p100, average and throughput over
batch 1-64 x seq 128/384 x fp16/bf16/fp32 on one GPU, on the real dev windows when the dev
file below exists (else synthetic windows; each record says which). Fixed shapes: nothing
recompiles in the timed loop. Tables and plots: --mode=report on the same workdir.
Command: python run.py --config=configs/bench_infer.py --mode=bench --workdir=runs/bench
Hardware: 1 x H100/H200. Expected: see docs/benchmarks.md for measured points.
"""
import ml_collections

from configs import base


def get_config():
  c = base.get_config()
  c.name = 'bench_infer'
  # Real SQuAD windows when these exist (else synthetic windows of the same shape);
  # the vocab is BERT's uncased one, which the MiniLM folder carries.
  c.model.vocab_dir = '../shared/models/all-MiniLM-L6-v2-fp16'
  c.data.train_file = '../shared/data/squad/train-v1.1.reconstructed.json.gz'
  c.data.dev_file = '../shared/data/squad/dev-v1.1.json.gz'
  c.bench = ml_collections.ConfigDict()
  c.bench.kind = 'infer'
  c.bench.batch_sizes = (1, 2, 4, 8, 16, 32, 64)
  c.bench.seq_lens = (128, 384)
  c.bench.precisions = ('fp16', 'bf16', 'fp32')
  c.bench.num_devices = (1,)
  c.bench.steps = 100                              # timed batches per point
  c.bench.scan_layers = False  # True: layers as one lax.scan (model.encode), one compiled layer,
  #                              +0.45 ms a call at small batches (BERT-Large, H200)
  c.bench.bind_params = True   # the weights compiled into the program as constants, a call
  #                              passes the batch alone (inference.compile_bound_eval): -0.24 /
  #                              -0.12 ms a call at batches 1 / 8 (H200), 10-20 s more compile
  #                              a point
  c.bench.packing = False      # True: the real dev windows packed into rows (eval.packing's
  #                              PackedEval): batch_sizes count rows, sentences/s windows
  c.bench.bucket_width = 0     # e.g. 64: each call's real dev windows cut to the multiple of 64
  #                              holding its longest (one program a width; 0 = padded)
  return c
