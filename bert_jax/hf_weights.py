"""Hugging Face layout: load from a folder or the hub, export so transformers opens it."""
from __future__ import annotations

import json
import os
import re
import shutil

import jax
import numpy as np

from bert_jax import weights
from bert_jax.errors import CheckpointError
from bert_jax.model_config import ModelConfig

_LAYER_NAMES = {
    'query': 'attention.self.query', 'key': 'attention.self.key',
    'value': 'attention.self.value', 'attn_out': 'attention.output.dense',
    'attn_ln': 'attention.output.LayerNorm', 'ffn_in': 'intermediate.dense',
    'ffn_out': 'output.dense', 'ffn_ln': 'output.LayerNorm',
}
_TOKENIZER_FILES = ('vocab.txt', 'tokenizer.json', 'tokenizer_config.json',
                    'special_tokens_map.json')


def hf_name(canonical: str) -> str:
  """Canonical name -> Hugging Face tensor name (without the 'bert.' prefix)."""
  parts = canonical.split('/')
  leaf = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}.get(parts[-1])
  if parts[0] == 'embeddings':
    if parts[1] == 'ln':
      return f'embeddings.LayerNorm.{leaf}'
    return f'embeddings.{parts[1]}_embeddings.weight'
  if parts[0] == 'qa':
    return f'qa_outputs.{leaf}'
  layer = int(parts[0].split('_')[1])
  return f'encoder.layer.{layer}.{_LAYER_NAMES[parts[1]]}.{leaf}'


def _is_transposed(canonical: str) -> bool:
  return canonical.endswith('/kernel')  # torch Linear stores [out, in]


def _read_tensors(folder: str) -> tuple[dict[str, np.ndarray], str]:
  st = os.path.join(folder, 'model.safetensors')
  binary = os.path.join(folder, 'pytorch_model.bin')
  if os.path.exists(st):
    from safetensors.numpy import load_file
    raw, path = load_file(st), st
  elif os.path.exists(binary):
    try:
      import torch
    except ImportError as e:
      raise CheckpointError(f'{binary} needs torch to read; pip install torch, or convert '
                            'it to model.safetensors') from e
    raw = {k: v.float().numpy() for k, v in
           torch.load(binary, map_location='cpu', weights_only=True).items()}
    path = binary
  else:
    raise CheckpointError(f'{folder}: neither model.safetensors nor pytorch_model.bin found; '
                          'point at a Hugging Face model folder')
  tensors = {}
  for key, value in raw.items():
    key = re.sub(r'^bert\.', '', key)
    key = key.replace('LayerNorm.gamma', 'LayerNorm.weight').replace('LayerNorm.beta',
                                                                       'LayerNorm.bias')
    tensors[key] = value
  return tensors, path


def load_folder(folder: str, *, rng: jax.Array | None = None, **config_overrides
                ) -> weights.Pretrained:
  """Loads config.json + model.safetensors (or pytorch_model.bin) from a folder.

  Keys with or without the 'bert.' prefix are accepted; the pooler and pre-training
  heads are ignored; a QA head (qa_outputs.*) is loaded when present, else initialised.
  """
  config_path = os.path.join(folder, 'config.json')
  if not os.path.exists(config_path):
    raise CheckpointError(f'{config_path} not found: a Hugging Face folder needs config.json')
  with open(config_path) as f:
    config = ModelConfig.from_hf_dict(json.load(f), **config_overrides)
  tensors, path = _read_tensors(folder)

  def read(name):
    value = tensors.get(hf_name(name))
    if value is None:
      return None
    value = np.asarray(value, np.float32)
    return value.T if _is_transposed(name) else value

  params, has_qa = weights.assemble_params(config, read, hf_name, path, rng, _is_transposed)
  lower = True
  tok_config = os.path.join(folder, 'tokenizer_config.json')
  if os.path.exists(tok_config):
    with open(tok_config) as f:
      lower = json.load(f).get('do_lower_case', True)
  vocab_dir = folder if os.path.exists(os.path.join(folder, 'vocab.txt')) else None
  return weights.Pretrained(config, params, vocab_dir, has_qa, lower)


def load_hub(repo_id: str, *, rng: jax.Array | None = None, **config_overrides
             ) -> weights.Pretrained:
  """Downloads a Hugging Face hub model (needs network) and loads it."""
  try:
    from huggingface_hub import snapshot_download
    folder = snapshot_download(repo_id, allow_patterns=[
        'config.json', 'model.safetensors', *_TOKENIZER_FILES])
  except Exception as e:  # offline, unknown repo, no huggingface_hub
    raise CheckpointError(
        f'could not fetch {repo_id!r} from the Hugging Face hub ({type(e).__name__}: {e}). '
        'Offline? Download the model folder on a connected machine and pass its path.') from e
  return load_folder(folder, rng=rng, **config_overrides)


def export_folder(params: dict, config: ModelConfig, folder: str, *,
                  vocab_dir: str | None = None) -> str:
  """Writes config.json + model.safetensors (+ tokenizer files) for transformers.

  `BertForQuestionAnswering.from_pretrained(folder)` then gives the same logits.
  """
  from safetensors.numpy import save_file
  os.makedirs(folder, exist_ok=True)
  tensors = {}
  for name, value in weights.canonical_tensors(jax.device_get(params)):
    value = np.asarray(value, np.float32)
    value = value.T if _is_transposed(name) else value
    key = hf_name(name)
    tensors[key if key.startswith('qa_outputs') else f'bert.{key}'] = np.ascontiguousarray(value)
  save_file(tensors, os.path.join(folder, 'model.safetensors'), metadata={'format': 'pt'})
  with open(os.path.join(folder, 'config.json'), 'w') as f:
    json.dump(config.to_hf_dict(), f, indent=2)
  if vocab_dir:
    for name in _TOKENIZER_FILES:
      src = os.path.join(vocab_dir, name)
      if os.path.exists(src):
        shutil.copy(src, os.path.join(folder, name))
  return folder
