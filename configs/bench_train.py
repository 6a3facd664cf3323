"""Experiment card: NVIDIA's finetune_train_benchmark.sh grid, as bert_jax records.

What: training sentences/s of BERT-Large (model.preset=base for Base) over per-GPU batch
1-64 x seq 128/384 (doc_stride 64/128) x fp32/fp16/bf16 x 1/2/4/8 GPUs, on real SQuAD
windows when the train file below exists, else synthetic windows of the same shape (each
record says which). GPU counts above what is present are recorded as skipped; out-of-memory
points as 'oom'. Tables and plots: --mode=report on the same workdir.
Command: python run.py --config=configs/bench_train.py --mode=bench --workdir=runs/bench
Hardware: 1-8 x H100/H200. Expected: see docs/benchmarks.md for measured points.
"""
import ml_collections

from configs import base


def get_config():
  c = base.get_config()
  c.name = 'bench_train'
  c.model.hidden_dropout = 0.1
  # Real SQuAD windows when these exist (else synthetic windows of the same shape);
  # the vocab is BERT's uncased one, which the MiniLM folder carries.
  c.model.vocab_dir = '../shared/models/all-MiniLM-L6-v2-fp16'
  c.data.train_file = '../shared/data/squad/train-v1.1.reconstructed.json.gz'
  c.data.dev_file = '../shared/data/squad/dev-v1.1.json.gz'
  c.bench = ml_collections.ConfigDict()
  c.bench.kind = 'train'
  c.bench.batch_sizes = (1, 2, 4, 8, 16, 32, 64)   # per GPU
  c.bench.seq_lens = (128, 384)
  c.bench.precisions = ('fp32', 'fp16', 'bf16')
  c.bench.num_devices = (1, 2, 4, 8)
  c.bench.steps = 20                               # timed steps per point (after warm-up)
  c.bench.packing = False      # True: the real train windows packed into rows (data.packing's
  #                              PackedBatches): batch_sizes count rows, sentences/s windows
  return c
