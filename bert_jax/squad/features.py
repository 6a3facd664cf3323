"""Windowed SQuAD features, as run_squad.py makes them, with char offsets for scoring.

Differences from run_squad.py, on purpose:
* WordPiece runs once per context through the fast tokenizer; every token keeps its
  character offsets, so the answer label is the smallest token span covering the answer's
  characters (run_squad.py reaches the same span through whitespace words and
  _improve_answer_span) and predicted text is cut from the context by offsets
  (run_squad.py's get_final_text heuristic is not needed).
* Windows and "max context" flags follow run_squad.py exactly: doc_stride is the step
  between window starts (Hugging Face's `stride` is the overlap instead).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time

import numpy as np
from tqdm.auto import tqdm

from bert_jax.squad.reader import Example

FEATURES_VERSION = 2
_ARRAYS = ('input_ids', 'token_type_ids', 'attention_mask', 'start_positions',
           'end_positions', 'example_index', 'context_start', 'doc_start', 'doc_len',
           'max_context', 'example_context', 'context_token_start', 'offsets')


@dataclasses.dataclass
class Features:
  """Model inputs [N, L] and what postprocessing needs to map tokens back to text.

  offsets [T, 2] holds every context token's character span; the tokens of context c are
  offsets[context_token_start[c]:context_token_start[c + 1]]; example e reads context
  example_context[e]. Feature f shows that context's tokens doc_start[f] ..
  doc_start[f] + doc_len[f] - 1 at sequence positions context_start[f] onwards.
  """
  input_ids: np.ndarray
  token_type_ids: np.ndarray
  attention_mask: np.ndarray
  start_positions: np.ndarray
  end_positions: np.ndarray
  example_index: np.ndarray
  context_start: np.ndarray
  doc_start: np.ndarray
  doc_len: np.ndarray
  max_context: np.ndarray
  example_context: np.ndarray
  context_token_start: np.ndarray
  offsets: np.ndarray
  unlocated: int = 0
  no_window: int = 0

  def __len__(self):
    return len(self.input_ids)

  @property
  def max_seq_length(self) -> int:
    return self.input_ids.shape[1]

  def token_offsets(self, example: int) -> np.ndarray:
    c = self.example_context[example]
    return self.offsets[self.context_token_start[c]:self.context_token_start[c + 1]]

  def model_inputs(self, index=slice(None)) -> dict[str, np.ndarray]:
    return {'input_ids': self.input_ids[index],
            'token_type_ids': self.token_type_ids[index].astype(np.int32),
            'attention_mask': self.attention_mask[index].astype(np.int32)}


def _encode(tokenizer, texts, desc):
  backend = tokenizer.backend_tokenizer
  backend.no_truncation()
  backend.no_padding()
  out, chunk = [], 4096
  for i in tqdm(range(0, len(texts), chunk), desc=desc, unit_scale=chunk, leave=False):
    out.extend(backend.encode_batch(texts[i:i + chunk], add_special_tokens=False))
  return out


def _spans(n_doc: int, room: int, stride: int) -> list[tuple[int, int]]:
  spans, start = [], 0
  while start < n_doc:
    length = min(n_doc - start, room)
    spans.append((start, length))
    if start + length >= n_doc:
      break
    start += min(length, stride)
  return spans


def _max_context(spans, n_doc):
  """best[i] = the span where token i has the most context (run_squad.py's rule)."""
  pos = np.arange(n_doc)
  scores = np.full((len(spans), n_doc), -np.inf)
  for j, (s, length) in enumerate(spans):
    inside = slice(s, s + length)
    scores[j, inside] = np.minimum(pos[inside] - s, s + length - 1 - pos[inside]) + 0.01 * length
  return np.argmax(scores, axis=0)


def answer_token_span(offsets: np.ndarray, start: int, end: int) -> tuple[int, int]:
  """Smallest token span covering characters [start, end); (-1, -1) when none does."""
  tok_start = int(np.searchsorted(offsets[:, 1], start, side='right'))
  tok_end = int(np.searchsorted(offsets[:, 0], end, side='left')) - 1
  if tok_start >= len(offsets) or tok_end < tok_start:
    return -1, -1
  return tok_start, tok_end


def featurize(examples: list[Example], tokenizer, *, max_seq_length: int, doc_stride: int,
              max_query_length: int, is_training: bool) -> Features:
  """Turns examples into windows of max_seq_length tokens: [CLS] q [SEP] context [SEP]."""
  t0 = time.perf_counter()
  L = max_seq_length
  cls_id, sep_id, pad_id = (tokenizer.cls_token_id, tokenizer.sep_token_id,
                            tokenizer.pad_token_id)
  context_ids: dict[str, int] = {}
  example_context = np.array([context_ids.setdefault(e.context, len(context_ids))
                              for e in examples], np.int32)
  contexts = _encode(tokenizer, list(context_ids), 'tokenising contexts')
  questions = _encode(tokenizer, [e.question for e in examples], 'tokenising questions')
  ctx_tokens = [np.asarray(c.ids, np.int32) for c in contexts]
  ctx_offsets = [np.asarray(c.offsets, np.int32).reshape(-1, 2) for c in contexts]

  rows = {k: [] for k in ('input_ids', 'token_type_ids', 'start_positions', 'end_positions',
                          'example_index', 'context_start', 'doc_start', 'doc_len',
                          'max_context')}
  unlocated = no_window = 0
  for e_idx, (example, question) in enumerate(
      tqdm(zip(examples, questions), total=len(examples), desc='windows', leave=False)):
    q_ids = question.ids[:max_query_length]
    c = example_context[e_idx]
    doc, offs = ctx_tokens[c], ctx_offsets[c]
    room = L - len(q_ids) - 3
    spans = _spans(len(doc), room, doc_stride)
    if not spans:
      no_window += 1
      continue
    tok_s = tok_e = -1
    if example.answer_start >= 0 and not example.is_impossible:
      tok_s, tok_e = answer_token_span(
          offs, example.answer_start, example.answer_start + len(example.answer_text))
      if tok_s < 0:
        unlocated += 1
        if is_training:
          continue
    best = _max_context(spans, len(doc))
    ctx_pos = len(q_ids) + 2
    head = [cls_id, *q_ids, sep_id]
    for j, (s, length) in enumerate(spans):
      ids = np.full(L, pad_id, np.int32)
      ids[:ctx_pos] = head
      ids[ctx_pos:ctx_pos + length] = doc[s:s + length]
      ids[ctx_pos + length] = sep_id
      types = np.zeros(L, np.int8)
      types[ctx_pos:ctx_pos + length + 1] = 1
      flags = np.zeros(L, bool)
      flags[ctx_pos:ctx_pos + length] = best[s:s + length] == j
      if tok_s >= s and tok_e < s + length:
        start, end = tok_s - s + ctx_pos, tok_e - s + ctx_pos
      else:
        start = end = 0  # [CLS]: answer outside this window, or impossible (v2.0)
      for key, value in (('input_ids', ids), ('token_type_ids', types),
                         ('start_positions', start), ('end_positions', end),
                         ('example_index', e_idx), ('context_start', ctx_pos),
                         ('doc_start', s), ('doc_len', length), ('max_context', flags)):
        rows[key].append(value)
  token_start = np.zeros(len(ctx_offsets) + 1, np.int64)
  token_start[1:] = np.cumsum([len(o) for o in ctx_offsets])
  input_ids = np.stack(rows['input_ids']) if rows['input_ids'] else np.zeros((0, L), np.int32)
  features = Features(
      input_ids=input_ids,
      token_type_ids=np.stack(rows['token_type_ids']) if rows['input_ids'] else
      np.zeros((0, L), np.int8),
      attention_mask=(input_ids != pad_id).astype(np.int8),
      start_positions=np.asarray(rows['start_positions'], np.int32),
      end_positions=np.asarray(rows['end_positions'], np.int32),
      example_index=np.asarray(rows['example_index'], np.int32),
      context_start=np.asarray(rows['context_start'], np.int32),
      doc_start=np.asarray(rows['doc_start'], np.int32),
      doc_len=np.asarray(rows['doc_len'], np.int32),
      max_context=np.stack(rows['max_context']) if rows['input_ids'] else np.zeros((0, L), bool),
      example_context=example_context, context_token_start=token_start,
      offsets=np.concatenate(ctx_offsets) if ctx_offsets else np.zeros((0, 2), np.int32),
      unlocated=unlocated, no_window=no_window)
  logging.info('%d examples -> %d features in %.1fs (%d answers not locatable in tokens%s, '
               '%d with no context tokens)', len(examples), len(features),
               time.perf_counter() - t0, unlocated, ', skipped' if is_training else '', no_window)
  return features


def cache_key(data_identity: str, vocab_fingerprint: str, **params) -> str:
  """Hash of the data's content (or identity), the vocabulary and every parameter."""
  h = hashlib.sha256(f'v{FEATURES_VERSION}:{vocab_fingerprint}:{sorted(params.items())}'.encode())
  if os.path.isfile(data_identity):
    with open(data_identity, 'rb') as f:
      for block in iter(lambda: f.read(1 << 22), b''):
        h.update(block)
  else:
    h.update(data_identity.encode())
  return h.hexdigest()[:24]


def save(features: Features, path: str) -> None:
  tmp = path + '.partial.npz'
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(tmp, unlocated=features.unlocated, no_window=features.no_window,
           **{k: getattr(features, k) for k in _ARRAYS})
  os.replace(tmp, path)


def load(path: str) -> Features:
  with np.load(path) as z:
    return Features(**{k: z[k] for k in _ARRAYS}, unlocated=int(z['unlocated']),
                    no_window=int(z['no_window']))


def cached_featurize(examples, tokenizer, *, data_identity: str, vocab_fingerprint: str,
                     cache_dir: str, is_training: bool, **params) -> Features:
  """featurize() with an on-disk cache keyed by the data, the vocab and the parameters."""
  key = cache_key(data_identity, vocab_fingerprint, is_training=is_training,
                  n_examples=len(examples), **params)
  path = os.path.join(cache_dir, 'features', f'{key}.npz')
  if os.path.exists(path):
    logging.info('features from cache %s', path)
    return load(path)
  features = featurize(examples, tokenizer, is_training=is_training, **params)
  save(features, path)
  return features
