"""Experiment card: NVIDIA's finetune_train_benchmark.sh grid, as bert_jax records.

What: training sentences/s of BERT-Large (model.preset=base for Base) over per-GPU batch
1-64 x seq 128/384 x fp32/fp16/bf16 x 1/2/4/8 GPUs, synthetic SQuAD-shaped batches; GPU
counts above what is present are recorded as skipped; out-of-memory points as 'oom'.
Command: python run.py --config=configs/bench_train.py --mode=bench --workdir=runs/bench
Hardware: 1-8 x H100/H200. Expected: see docs/benchmarks.md for measured points.
"""
import ml_collections

from configs import base


def get_config():
  c = base.get_config()
  c.name = 'bench_train'
  c.model.hidden_dropout = 0.1
  c.bench = ml_collections.ConfigDict()
  c.bench.kind = 'train'
  c.bench.batch_sizes = (1, 2, 4, 8, 16, 32, 64)   # per GPU
  c.bench.seq_lens = (128, 384)
  c.bench.precisions = ('fp32', 'fp16', 'bf16')
  c.bench.num_devices = (1, 2, 4, 8)
  c.bench.steps = 20                               # timed steps per point (after warm-up)
  return c
