"""Format-independent weight assembly: canonical tensor names <-> the params pytree.

Each checkpoint format (hf_weights, tf_weights) only maps its own tensor names to the
canonical ones below and says whether a kernel is stored transposed; shape checks,
QKV fusion and QA-head fallback live here once.

Canonical names, kernels laid out [in, out]:
  embeddings/{word,position,token_type}, embeddings/ln/{scale,bias}
  layer_{i}/{query,key,value,attn_out,ffn_in,ffn_out}/{kernel,bias}
  layer_{i}/{attn_ln,ffn_ln}/{scale,bias}
  qa/{kernel,bias}
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterator, Optional

import jax
import numpy as np

from bert_jax import model as model_lib
from bert_jax.errors import CheckpointError
from bert_jax.model_config import ModelConfig

Reader = Callable[[str], Optional[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """What a checkpoint loader returns.

  Attributes:
    config: the encoder's shape.
    params: float32 params pytree (see bert_jax.model).
    vocab_dir: a folder with vocab.txt (and maybe tokenizer.json), or None.
    has_qa_head: False when the QA head was freshly initialised.
    do_lower_case: whether the vocabulary is uncased.
  """
  config: ModelConfig
  params: dict
  vocab_dir: Optional[str]
  has_qa_head: bool
  do_lower_case: bool = True


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
  d, f = config.hidden_size, config.intermediate_size
  shapes = {
      'embeddings/word': (config.vocab_size, d),
      'embeddings/position': (config.max_position_embeddings, d),
      'embeddings/token_type': (config.type_vocab_size, d),
      'embeddings/ln/scale': (d,), 'embeddings/ln/bias': (d,),
  }
  dense = {'query': (d, d), 'key': (d, d), 'value': (d, d), 'attn_out': (d, d),
           'ffn_in': (d, f), 'ffn_out': (f, d)}
  for i in range(config.num_layers):
    for name, (n_in, n_out) in dense.items():
      shapes[f'layer_{i}/{name}/kernel'] = (n_in, n_out)
      shapes[f'layer_{i}/{name}/bias'] = (n_out,)
    for name in ('attn_ln', 'ffn_ln'):
      shapes[f'layer_{i}/{name}/scale'] = (d,)
      shapes[f'layer_{i}/{name}/bias'] = (d,)
  shapes['qa/kernel'] = (d, 2)
  shapes['qa/bias'] = (2,)
  return shapes


def assemble_params(config: ModelConfig, read: Reader, source_name: Callable[[str], str],
                    source: str, rng: jax.Array | None = None,
                    transposed: Callable[[str], bool] = lambda name: False
                    ) -> tuple[dict, bool]:
  """Builds the params pytree from a reader of canonical names.

  Args:
    read: canonical name -> array in [in, out] layout, or None when absent.
    source_name: canonical name -> the tensor's name in the checkpoint (for errors).
    source: the checkpoint's path, for errors.
    transposed: whether the checkpoint stores this tensor as [out, in] (errors then show
      shapes in the checkpoint's own layout).
    rng: initialises the QA head when the checkpoint has none.

  Returns:
    (params, has_qa_head).

  Raises:
    CheckpointError: a tensor is missing or has the wrong shape.
  """
  tensors = {}
  for name, shape in expected_shapes(config).items():
    value = read(name)
    stored = (lambda s: s[::-1]) if transposed(name) else (lambda s: s)
    if value is None:
      if name.startswith('qa/'):
        continue
      raise CheckpointError(
          f'{source}: tensor {source_name(name)!r} is missing (expected shape '
          f'{stored(shape)}); is this a BERT checkpoint, and does its config match its weights?')
    if tuple(value.shape) != shape:
      raise CheckpointError(
          f'{source}: tensor {source_name(name)!r} has shape {stored(tuple(value.shape))}, '
          f'expected {stored(shape)} from the config (hidden={config.hidden_size}, '
          f'intermediate={config.intermediate_size}, vocab={config.vocab_size})')
    tensors[name] = np.asarray(value, np.float32)
  has_qa = 'qa/kernel' in tensors and 'qa/bias' in tensors
  if not has_qa:
    logging.info('%s has no QA head: initialising start/end logits afresh', source)
    fresh = model_lib.init_qa_head(rng if rng is not None else jax.random.PRNGKey(0), config)
    tensors['qa/kernel'], tensors['qa/bias'] = (np.asarray(fresh['kernel']),
                                                np.asarray(fresh['bias']))

  def dense(prefix):
    return {'kernel': tensors[f'{prefix}/kernel'], 'bias': tensors[f'{prefix}/bias']}

  def ln(prefix):
    return {'scale': tensors[f'{prefix}/scale'], 'bias': tensors[f'{prefix}/bias']}

  layers = []
  for i in range(config.num_layers):
    p = f'layer_{i}'
    qkv = {'kernel': np.concatenate([tensors[f'{p}/{n}/kernel'] for n in ('query', 'key', 'value')], 1),
           'bias': np.concatenate([tensors[f'{p}/{n}/bias'] for n in ('query', 'key', 'value')])}
    layers.append({'qkv': qkv, 'attn_out': dense(f'{p}/attn_out'), 'attn_ln': ln(f'{p}/attn_ln'),
                   'ffn_in': dense(f'{p}/ffn_in'), 'ffn_out': dense(f'{p}/ffn_out'),
                   'ffn_ln': ln(f'{p}/ffn_ln')})
  params = {
      'embeddings': {'word': tensors['embeddings/word'],
                     'position': tensors['embeddings/position'],
                     'token_type': tensors['embeddings/token_type'],
                     'ln': ln('embeddings/ln')},
      'layers': layers,
      'qa': dense('qa'),
  }
  return params, has_qa


def canonical_tensors(params: dict) -> Iterator[tuple[str, np.ndarray]]:
  """The inverse of assemble_params: (canonical name, float32 array [in, out])."""
  emb = params['embeddings']
  yield 'embeddings/word', emb['word']
  yield 'embeddings/position', emb['position']
  yield 'embeddings/token_type', emb['token_type']
  yield 'embeddings/ln/scale', emb['ln']['scale']
  yield 'embeddings/ln/bias', emb['ln']['bias']
  for i, layer in enumerate(model_lib.unstack_layers(params)['layers']):
    p = f'layer_{i}'
    kernels = np.split(np.asarray(layer['qkv']['kernel']), 3, axis=1)
    biases = np.split(np.asarray(layer['qkv']['bias']), 3)
    for name, k, b in zip(('query', 'key', 'value'), kernels, biases):
      yield f'{p}/{name}/kernel', k
      yield f'{p}/{name}/bias', b
    for name in ('attn_out', 'ffn_in', 'ffn_out'):
      yield f'{p}/{name}/kernel', layer[name]['kernel']
      yield f'{p}/{name}/bias', layer[name]['bias']
    for name in ('attn_ln', 'ffn_ln'):
      yield f'{p}/{name}/scale', layer[name]['scale']
      yield f'{p}/{name}/bias', layer[name]['bias']
  yield 'qa/kernel', params['qa']['kernel']
  yield 'qa/bias', params['qa']['bias']
