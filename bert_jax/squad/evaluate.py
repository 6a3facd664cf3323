"""The official SQuAD metrics: v1.1 EM/F1 and v2.0's HasAns/NoAns breakdown.

Usage, like the official scripts (data may be .gz):
  python -m bert_jax.squad.evaluate DATA_JSON PRED_JSON [--na-prob-file NA_JSON]
prints {"exact_match": ..., "f1": ...} (v1.1) or the v2.0 dict.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import string
import sys

from bert_jax.squad import reader

_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
  """Lower case, drop punctuation and the articles a/an/the, squeeze whitespace."""
  s = ''.join(ch for ch in s.lower() if ch not in _PUNCT)
  s = re.sub(r'\b(a|an|the)\b', ' ', s)
  return ' '.join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
  """v1.1's token F1 (an empty side scores 0)."""
  pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
  common = collections.Counter(pred) & collections.Counter(gold)
  same = sum(common.values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred), same / len(gold)
  return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def evaluate_v1(dataset: list, predictions: dict) -> dict:
  """The official v1.1 evaluate(): max over gold answers; unanswered questions score 0."""
  f1 = exact = total = 0.0
  for article in dataset:
    for paragraph in article['paragraphs']:
      for qa in paragraph['qas']:
        total += 1
        if qa['id'] not in predictions:
          print(f"Unanswered question {qa['id']} will receive score 0.", file=sys.stderr)
          continue
        golds = [a['text'] for a in qa['answers']]
        pred = predictions[qa['id']]
        exact += max(exact_match_score(pred, g) for g in golds)
        f1 += max(f1_score(pred, g) for g in golds)
  return {'exact_match': 100.0 * exact / total, 'f1': 100.0 * f1 / total}


def _f1_v2(gold: str, pred: str) -> float:
  gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
  if not gold_toks or not pred_toks:
    return float(gold_toks == pred_toks)
  return f1_score(pred, gold)


def evaluate_v2(dataset: list, predictions: dict, na_probs: dict | None = None,
                na_prob_thresh: float = 1.0) -> dict:
  """The official v2.0 metrics: exact/f1 overall, HasAns_*, NoAns_*, and best thresholds."""
  exact, f1, has_ans = {}, {}, {}
  for article in dataset:
    for paragraph in article['paragraphs']:
      for qa in paragraph['qas']:
        qid = qa['id']
        golds = [a['text'] for a in qa['answers'] if normalize_answer(a['text'])] or ['']
        has_ans[qid] = golds != ['']
        if qid not in predictions:
          print(f'Missing prediction for {qid}', file=sys.stderr)
          continue
        pred = predictions[qid]
        exact[qid] = max(float(normalize_answer(g) == normalize_answer(pred)) for g in golds)
        f1[qid] = max(_f1_v2(g, pred) for g in golds)
  na_probs = na_probs or {k: 0.0 for k in predictions}
  for scores in (exact, f1):
    for qid in scores:
      if na_probs.get(qid, 0.0) > na_prob_thresh:
        scores[qid] = float(not has_ans[qid])
  def block(ids):
    return {'exact': 100.0 * sum(exact.get(k, 0) for k in ids) / len(ids),
            'f1': 100.0 * sum(f1.get(k, 0) for k in ids) / len(ids), 'total': len(ids)}
  out = block(list(has_ans))
  for name, ids in (('HasAns', [k for k, v in has_ans.items() if v]),
                    ('NoAns', [k for k, v in has_ans.items() if not v])):
    if ids:
      out.update({f'{name}_{k}': v for k, v in block(ids).items()})
  for name, scores in (('exact', exact), ('f1', f1)):
    best, thresh = _best_threshold(predictions, scores, na_probs, has_ans)
    out[f'best_{name}'], out[f'best_{name}_thresh'] = best, thresh
  return out


def _best_threshold(preds, scores, na_probs, has_ans):
  score = cur = float(sum(1 for k in has_ans if not has_ans[k]))
  best_thresh = 0.0
  for qid in sorted(na_probs, key=lambda k: na_probs[k]):
    if qid not in scores:
      continue
    if has_ans[qid]:
      diff = scores[qid]
    else:
      diff = -1 if preds[qid] else 0
    cur += diff
    if cur > score:
      score, best_thresh = cur, na_probs[qid]
  return 100.0 * score / len(has_ans), best_thresh


def evaluate(data: dict, predictions: dict, na_probs: dict | None = None) -> dict:
  """v2.0 metrics when the data has impossible questions (or says version 2.0), else v1.1."""
  dataset = data['data']
  is_v2 = str(data.get('version', '')).startswith('v2') or any(
      qa.get('is_impossible') for art in dataset for p in art['paragraphs'] for qa in p['qas'])
  return evaluate_v2(dataset, predictions, na_probs) if is_v2 else evaluate_v1(dataset, predictions)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description='Official SQuAD v1.1/v2.0 evaluation.')
  parser.add_argument('data_file', help='SQuAD JSON (plain or .gz)')
  parser.add_argument('pred_file', help='predictions.json: {question id: answer text}')
  parser.add_argument('--na-prob-file', default=None, help='v2.0: {id: P(no answer)}')
  args = parser.parse_args(argv)
  data = reader.load_json(args.data_file)
  with open(args.pred_file) as f:
    predictions = json.load(f)
  na_probs = None
  if args.na_prob_file:
    with open(args.na_prob_file) as f:
      na_probs = json.load(f)
  print(json.dumps(evaluate(data, predictions, na_probs)))


if __name__ == '__main__':
  main()
