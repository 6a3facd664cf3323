"""One entry point for weights: a HF folder, a Google TF checkpoint, a hub name, or random init."""
from __future__ import annotations

import os

import jax

from bert_jax import hf_weights, model, tf_weights
from bert_jax.errors import CheckpointError
from bert_jax.model_config import ModelConfig
from bert_jax.squad.reader import SAMPLE_DIR
from bert_jax.weights import Pretrained


def detect_format(path: str) -> str:
  """'hf', 'tf' or 'hub' for a path or name; raises when it is none of them."""
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, 'config.json')):
      return 'hf'
    if os.path.exists(os.path.join(path, 'bert_config.json')):
      return 'tf'
    raise CheckpointError(f'{path}: holds neither config.json (Hugging Face layout) nor '
                          'bert_config.json (Google TF checkpoint)')
  if os.path.exists(path + '.index') or path.endswith(('.index', '.meta')):
    return 'tf'
  if os.path.exists(path):
    raise CheckpointError(f'{path}: a file; pass the checkpoint folder instead')
  if path.count('/') == 1 and not path.startswith(('.', '/')):
    return 'hub'
  raise CheckpointError(f'{path}: no such folder; give a Hugging Face folder, a Google TF '
                        "checkpoint folder, or a hub name like 'google-bert/bert-large-uncased'")


def load_pretrained(path_or_name: str, *, checkpoint_format: str = 'auto',
                    rng: jax.Array | None = None, **config_overrides) -> Pretrained:
  """Loads weights and shape from any supported source.

  Args:
    path_or_name: a Hugging Face folder, a Google TF checkpoint folder or prefix, or a
      hub name (needs network).
    checkpoint_format: 'auto' detects it; or 'hf', 'tf', 'hub'.
    rng: initialises the QA head when the checkpoint has none.
    **config_overrides: ModelConfig fields to change (attention, dropout).
  """
  fmt = detect_format(path_or_name) if checkpoint_format == 'auto' else checkpoint_format
  loader = {'hf': hf_weights.load_folder, 'tf': tf_weights.load_checkpoint,
            'hub': hf_weights.load_hub}[fmt]
  return loader(path_or_name, rng=rng, **config_overrides)


def random_init(config: ModelConfig, rng: jax.Array, vocab_dir: str = '') -> Pretrained:
  """Random weights of `config`'s shape; vocab_dir defaults to the bundled sample vocab."""
  vocab_dir = vocab_dir or SAMPLE_DIR
  with open(os.path.join(vocab_dir, 'vocab.txt'), encoding='utf-8') as f:
    vocab_size = sum(1 for _ in f)
  config = config.replace(vocab_size=vocab_size)
  return Pretrained(config, model.init_params(rng, config), vocab_dir, False, True)
