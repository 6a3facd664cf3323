"""Experiment card: the embedded default, the whole path on a CPU in a few minutes.

What: a 2-layer, hidden-64 BERT from random init, trained on the SQuAD-format sample that
ships in bert_jax/sample_data (written for this project, not SQuAD text), then predicting
and scoring its dev sample. Proves train -> predict -> evaluate -> records end to end.
Command: python run.py --config=configs/tiny_cpu.py --workdir=/tmp/bert_jax_tiny
Hardware: any CPU (2 cores: about two minutes).
Expected: the loss falls well below its start; dev F1 far above a random model's (which is
near 0); eval_results.json, predictions.json and records.jsonl in the workdir.
"""
from configs import base


def get_config():
  c = base.get_config()
  c.name = 'tiny_cpu'
  c.model.preset = 'tiny'
  c.model.attention = 'xla'
  c.model.hidden_dropout = 0.0
  c.model.attention_dropout = 0.0
  c.precision.policy = 'fp32'
  c.mesh.num_devices = 1
  c.data.train_file = 'sample'
  c.data.dev_file = 'sample'
  c.data.max_seq_length = 64   # short windows: most contexts span two or three
  c.data.doc_stride = 24
  c.data.max_query_length = 20
  c.train.batch_size = 16
  c.train.learning_rate = 2e-3
  c.train.num_epochs = 30.0
  c.train.warmup_proportion = 0.05
  c.train.log_every = 25
  c.train.checkpoint_every = 200
  c.eval.batch_size = 32
  return c
