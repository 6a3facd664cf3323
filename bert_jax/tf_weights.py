"""Google's original TensorFlow BERT checkpoints (bert_model.ckpt* + bert_config.json + vocab.txt).

This is the format NVIDIA's and Google's run_squad.py scripts load. Reading needs
TensorFlow (the `tf` extra).
"""
from __future__ import annotations

import json
import os

import jax

from bert_jax import weights
from bert_jax.errors import CheckpointError
from bert_jax.model_config import ModelConfig

_LAYER_NAMES = {
    'query': 'attention/self/query', 'key': 'attention/self/key',
    'value': 'attention/self/value', 'attn_out': 'attention/output/dense',
    'attn_ln': 'attention/output/LayerNorm', 'ffn_in': 'intermediate/dense',
    'ffn_out': 'output/dense', 'ffn_ln': 'output/LayerNorm',
}


def tf_name(canonical: str) -> str:
  """Canonical name -> the TF variable name Google's modeling.py / run_squad.py use."""
  parts = canonical.split('/')
  leaf = {'kernel': 'kernel', 'bias': 'bias', 'scale': 'gamma'}.get(parts[-1])
  if parts[0] == 'embeddings':
    if parts[1] == 'ln':
      return f'bert/embeddings/LayerNorm/{"beta" if leaf == "bias" else leaf}'
    return f'bert/embeddings/{parts[1]}_embeddings'
  if parts[0] == 'qa':  # run_squad.py: output_weights [2, D], output_bias [2]
    return 'cls/squad/output_weights' if leaf == 'kernel' else 'cls/squad/output_bias'
  layer = int(parts[0].split('_')[1])
  sub = _LAYER_NAMES[parts[1]]
  if parts[1].endswith('_ln'):
    leaf = 'beta' if leaf == 'bias' else leaf
  return f'bert/encoder/layer_{layer}/{sub}/{leaf}'


def checkpoint_prefix(path: str) -> str:
  """Accepts the folder, the prefix (bert_model.ckpt) or any of its files."""
  if os.path.isdir(path):
    return os.path.join(path, 'bert_model.ckpt')
  for suffix in ('.index', '.meta'):
    if path.endswith(suffix):
      return path[:-len(suffix)]
  return path.split('.data-')[0]


def load_checkpoint(path: str, *, config_path: str | None = None,
                    rng: jax.Array | None = None, do_lower_case: bool | None = None,
                    **config_overrides) -> weights.Pretrained:
  """Loads a Google BERT TF checkpoint.

  Args:
    path: the folder holding bert_model.ckpt.*, or the checkpoint prefix.
    config_path: bert_config.json; defaults to the one beside the checkpoint.
    do_lower_case: defaults to True unless the folder name contains 'cased' without 'uncased'.
  """
  prefix = checkpoint_prefix(path)
  folder = os.path.dirname(prefix)
  config_path = config_path or os.path.join(folder, 'bert_config.json')
  if not os.path.exists(config_path):
    raise CheckpointError(f'{config_path} not found: Google checkpoints come with bert_config.json')
  with open(config_path) as f:
    config = ModelConfig.from_hf_dict(json.load(f), **config_overrides)
  try:
    import tensorflow as tf
  except ImportError as e:
    raise CheckpointError('reading TensorFlow checkpoints needs TensorFlow: '
                          "pip install 'bert_jax[tf]'") from e
  try:
    reader = tf.train.load_checkpoint(prefix)
  except Exception as e:
    raise CheckpointError(f'{prefix}: not a readable TensorFlow checkpoint ({e})') from e
  names = set(reader.get_variable_to_shape_map())

  def read(name):
    key = tf_name(name)
    if key not in names:
      return None
    value = reader.get_tensor(key)
    return value.T if name == 'qa/kernel' else value

  params, has_qa = weights.assemble_params(config, read, tf_name, prefix, rng,
                                           lambda name: name == 'qa/kernel')
  if do_lower_case is None:
    base = os.path.basename(os.path.normpath(folder)).lower()
    do_lower_case = not ('cased' in base and 'uncased' not in base)
  vocab_dir = folder if os.path.exists(os.path.join(folder, 'vocab.txt')) else None
  return weights.Pretrained(config, params, vocab_dir, has_qa, do_lower_case)
