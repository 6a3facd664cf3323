"""The WordPiece tokenizer that goes with a checkpoint (transformers' fast BERT tokenizer)."""
from __future__ import annotations

import hashlib
import os

from bert_jax.errors import CheckpointError, ConfigError


def load_tokenizer(vocab_dir: str, do_lower_case: bool = True):
  """BertTokenizerFast from a folder holding vocab.txt (tokenizer.json is used when present)."""
  from transformers import BertTokenizerFast
  vocab = os.path.join(vocab_dir, 'vocab.txt')
  if not os.path.exists(vocab):
    raise CheckpointError(f'{vocab} not found: the tokenizer needs the checkpoint\'s '
                          'vocab.txt (set model.vocab_dir)')
  if os.path.exists(os.path.join(vocab_dir, 'tokenizer.json')):
    return BertTokenizerFast.from_pretrained(vocab_dir, do_lower_case=do_lower_case)
  return BertTokenizerFast(vocab_file=vocab, do_lower_case=do_lower_case)


def check_fits(tokenizer, vocab_size: int, vocab_dir: str) -> None:
  """ConfigError unless every id the tokenizer gives has a row in the model's word
  embeddings: an id past them reads no row (jnp.take fills NaN), and the loss is NaN."""
  if len(tokenizer) > vocab_size:
    raise ConfigError('model.vocab_dir', vocab_dir,
                      f'its tokenizer has {len(tokenizer)} tokens, more than the model\'s '
                      f'{vocab_size} word embeddings (vocab_size): ids past them would read '
                      'no embedding. Use the vocab.txt of the checkpoint the weights come from')


def vocab_fingerprint(tokenizer) -> str:
  """A hash of the vocabulary and normalisation, for cache keys."""
  h = hashlib.sha256()
  for token, index in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
    h.update(f'{index}:{token}\n'.encode())
  h.update(str(tokenizer.backend_tokenizer.normalizer.__getstate__()).encode())
  return h.hexdigest()[:16]
