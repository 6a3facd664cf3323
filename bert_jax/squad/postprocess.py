"""Start/end logits -> answer text per question, run_squad.py's n-best search."""
from __future__ import annotations

import collections
import json
import os

import numpy as np

from bert_jax.squad.features import Features
from bert_jax.squad.reader import Example


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max())
  return e / e.sum()


def predict_answers(examples: list[Example], features: Features, start_logits: np.ndarray,
                    end_logits: np.ndarray, *, n_best_size: int = 20,
                    max_answer_length: int = 30, version_2: bool = False,
                    null_score_diff_threshold: float = 0.0):
  """Best span per question across its windows, cut from the context by char offsets.

  Candidates: the top n_best_size starts and ends of each window, inside the window's
  context, start <= end, at most max_answer_length tokens, the start token having its
  maximum context in this window. v2.0 adds the null answer ([CLS] start and end, the
  lowest over windows) and predicts '' when null beats the best span by the threshold.

  Returns:
    (predictions {id: text}, nbest {id: [{text, probability, start_logit, end_logit}]},
     null_odds {id: null score - best span score} (v2.0, else empty)).
  """
  by_example = collections.defaultdict(list)
  for f, e in enumerate(features.example_index):
    by_example[int(e)].append(f)
  predictions, nbest_json, null_odds = {}, {}, {}
  for e, example in enumerate(examples):
    candidates, null_score = [], np.inf
    for f in by_example.get(e, ()):
      sl, el = start_logits[f], end_logits[f]
      null_score = min(null_score, float(sl[0] + el[0]))
      lo = features.context_start[f]
      hi = lo + features.doc_len[f]
      starts = np.argsort(sl)[::-1][:n_best_size]
      ends = np.argsort(el)[::-1][:n_best_size]
      for s in starts:
        if not (lo <= s < hi and features.max_context[f, s]):
          continue
        for t in ends:
          if lo <= t < hi and s <= t < s + max_answer_length:
            candidates.append((float(sl[s] + el[t]), float(sl[s]), float(el[t]), f, s, t))
    candidates.sort(key=lambda c: -c[0])
    offsets = features.token_offsets(e)
    entries, seen = [], set()
    for score, s_logit, e_logit, f, s, t in candidates:
      first = features.doc_start[f] + s - features.context_start[f]
      last = features.doc_start[f] + t - features.context_start[f]
      text = example.context[offsets[first, 0]:offsets[last, 1]]
      if text in seen:
        continue
      seen.add(text)
      entries.append({'text': text, 'score': score, 'start_logit': s_logit,
                      'end_logit': e_logit})
      if len(entries) >= n_best_size:
        break
    if version_2 and np.isfinite(null_score):
      entries.append({'text': '', 'score': null_score, 'start_logit': null_score / 2,
                      'end_logit': null_score / 2})
      entries.sort(key=lambda x: -x['score'])
    if not entries:
      entries = [{'text': '', 'score': 0.0, 'start_logit': 0.0, 'end_logit': 0.0}]
    probs = _softmax([x['score'] for x in entries])
    nbest_json[example.qas_id] = [
        {'text': x['text'], 'probability': float(p), 'start_logit': x['start_logit'],
         'end_logit': x['end_logit']} for x, p in zip(entries, probs)]
    best_span = next((x for x in entries if x['text']), None)
    if version_2:
      best_score = best_span['score'] if best_span else -np.inf
      null_odds[example.qas_id] = float(null_score - best_score)
      predictions[example.qas_id] = ('' if best_span is None or
                                     null_score - best_score > null_score_diff_threshold
                                     else best_span['text'])
    else:
      predictions[example.qas_id] = best_span['text'] if best_span else ''
  return predictions, nbest_json, null_odds


def write_predictions(folder: str, predictions: dict, nbest: dict, null_odds: dict) -> None:
  """predictions.json (the official format), nbest_predictions.json, null_odds.json (v2.0)."""
  os.makedirs(folder, exist_ok=True)
  outputs = {'predictions.json': predictions, 'nbest_predictions.json': nbest}
  if null_odds:
    outputs['null_odds.json'] = null_odds
  for name, obj in outputs.items():
    tmp = os.path.join(folder, name + '.partial')
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2 if name == 'predictions.json' else None)
    os.replace(tmp, os.path.join(folder, name))
