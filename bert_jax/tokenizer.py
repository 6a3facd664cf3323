"""The WordPiece tokenizer that goes with a checkpoint (transformers' fast BERT tokenizer)."""
from __future__ import annotations

import hashlib
import os

from bert_jax.errors import CheckpointError


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


def vocab_fingerprint(tokenizer) -> str:
  """A hash of the vocabulary and normalisation, for cache keys."""
  h = hashlib.sha256()
  for token, index in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
    h.update(f'{index}:{token}\n'.encode())
  h.update(str(tokenizer.backend_tokenizer.normalizer.__getstate__()).encode())
  return h.hexdigest()[:16]
