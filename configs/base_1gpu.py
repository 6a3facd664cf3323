"""Experiment card: BERT-Base fine-tuned on SQuAD v1.1 on one GPU, bf16.

What: bert-base-uncased (hub name below or a local folder), run_squad.py's recipe.
Command: python run.py --config=configs/base_1gpu.py --workdir=runs/base_1gpu
Hardware: 1 x H100/H200.
Expected: F1 about 88.5, EM about 81 (Google's BERT-Base result). Not yet reproduced here.
"""
from configs import base


def get_config():
  c = base.get_config()
  c.name = 'base_1gpu'
  c.model.preset = 'base'
  c.model.init_checkpoint = 'google-bert/bert-base-uncased'
  c.mesh.num_devices = 1
  return c
