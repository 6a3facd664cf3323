"""SQuAD pipeline: features, postprocessing, the official metrics and bad input."""
import gzip
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from bert_jax.errors import SquadFormatError
from bert_jax.squad import evaluate, features, postprocess, reader, sources
from bert_jax.tokenizer import load_tokenizer, vocab_fingerprint

PARAMS = dict(max_seq_length=384, doc_stride=128, max_query_length=64)


@pytest.fixture(scope='module')
def sample_tokenizer():
  return load_tokenizer(reader.SAMPLE_DIR)


@pytest.fixture(scope='module')
def dev(squad_dev, minilm_tokenizer):
  examples, _ = reader.read_examples(squad_dev, is_training=False)
  return examples, features.featurize(examples, minilm_tokenizer, is_training=False, **PARAMS)


def gold_logits(feats):
  n, length = feats.input_ids.shape
  start, end = np.full((n, length), -10.0), np.full((n, length), -10.0)
  start[np.arange(n), feats.start_positions] = 10.0
  end[np.arange(n), feats.end_positions] = 10.0
  return start, end


def test_gold_spans_round_trip_on_real_dev(dev, squad_dev):
  """Gold answers -> token labels -> postprocessing -> official metric: EM >= 99, F1 >= 99.5."""
  examples, feats = dev
  preds, nbest, _ = postprocess.predict_answers(examples, feats, *gold_logits(feats))
  scores = evaluate.evaluate(reader.load_json(squad_dev), preds)
  assert scores['exact_match'] >= 99.0 and scores['f1'] >= 99.5, scores
  assert set(preds) == {e.qas_id for e in examples}
  first = nbest[examples[0].qas_id]
  assert abs(sum(x['probability'] for x in first) - 1.0) < 1e-6


def test_window_counts_against_transformers_overflow(dev, minilm_tokenizer):
  """Same windows as HF's overflow tokenisation once its stride is given as the overlap.

  run_squad.py's doc_stride is the step between window starts; HF's `stride` is the
  number of tokens shared by neighbouring windows. With the same room for context,
  overlap = room - doc_stride, so per question HF and we agree except where the last
  step is shorter: run_squad stops as soon as a window reaches the end, HF too, so the
  totals must agree exactly when the room is the same; any difference is listed.
  """
  examples, feats = dev
  sample = examples[:1500]
  ours = np.bincount(feats.example_index, minlength=len(examples))[:1500]
  hf = []
  for e in sample:
    q_len = min(len(minilm_tokenizer(e.question, add_special_tokens=False)['input_ids']), 64)
    room = 384 - q_len - 3
    enc = minilm_tokenizer(e.question[:10_000], e.context, truncation='only_second',
                           max_length=q_len + 3 + room, stride=room - 128,
                           return_overflowing_tokens=True)
    hf.append(len(enc['input_ids']))
  diff = [(e.qas_id, a, b) for e, a, b in zip(sample, ours, hf) if a != b]
  # Where HF differs, it is only from questions longer than max_query_length: HF keeps the
  # whole question (no query truncation), so its room for context is smaller.
  long_q = {e.qas_id for e in sample
            if len(minilm_tokenizer(e.question, add_special_tokens=False)['input_ids']) > 64}
  assert all(qid in long_q for qid, _, _ in diff), diff[:5]


def test_featurize_whole_train_set_fast(squad_train, minilm_tokenizer, tmp_path):
  """All 87,599 questions in <= 90 s on 2 cores; the cached second run in <= 5 s."""
  t0 = time.perf_counter()
  examples, report = sources.read(squad_train, 'train', is_training=True, version_2=False)[:2]
  kwargs = dict(data_identity=squad_train, vocab_fingerprint=vocab_fingerprint(minilm_tokenizer),
                cache_dir=str(tmp_path), is_training=True, **PARAMS)
  first = features.cached_featurize(examples, minilm_tokenizer, **kwargs)
  t1 = time.perf_counter()
  again = features.cached_featurize(examples, minilm_tokenizer, **kwargs)
  t2 = time.perf_counter()
  assert report.kept == 87599 and not report.skipped
  assert len(first) == 88641  # run_squad.py's count for 384/128 on SQuAD v1.1 train
  assert t1 - t0 <= 90 and t2 - t1 <= 5, (t1 - t0, t2 - t1)
  np.testing.assert_array_equal(first.input_ids, again.input_ids)
  np.testing.assert_array_equal(first.start_positions, again.start_positions)


def test_training_labels_point_at_the_answer(sample_tokenizer):
  examples, _, _ = sources.read('sample', 'train', is_training=True, version_2=False)
  feats = features.featurize(examples, sample_tokenizer, max_seq_length=64, doc_stride=16,
                             max_query_length=24, is_training=True)
  assert len(feats) > len(examples)  # contexts longer than a window get several
  inside = feats.start_positions > 0
  assert inside.any() and (~inside).any()
  for f in np.flatnonzero(inside)[:50]:
    e = examples[feats.example_index[f]]
    offs = feats.token_offsets(feats.example_index[f])
    first = feats.doc_start[f] + feats.start_positions[f] - feats.context_start[f]
    last = feats.doc_start[f] + feats.end_positions[f] - feats.context_start[f]
    assert e.context[offs[first, 0]:offs[last, 1]].lower() == e.answer_text.lower()


def test_max_context_marks_each_token_once(dev):
  examples, feats = dev
  for e in range(200):
    rows = np.flatnonzero(feats.example_index == e)
    n_tokens = len(feats.token_offsets(e))
    counts = np.zeros(n_tokens, int)
    for f in rows:
      pos = np.flatnonzero(feats.max_context[f])
      counts[feats.doc_start[f] + pos - feats.context_start[f]] += 1
    assert (counts == 1).all()


# ---- the official metrics ---------------------------------------------------------------

def _squad(*qas, version='1.1'):
  return {'version': version, 'data': [{'title': 't', 'paragraphs': [
      {'context': 'The quick brown fox jumps over the lazy dog.', 'qas': list(qas)}]}]}


def _qa(qid, *answers, impossible=False):
  return {'id': qid, 'question': 'q?', 'is_impossible': impossible,
          'answers': [{'text': a, 'answer_start': 0} for a in answers]}


def test_gold_predictions_score_100(squad_dev):
  data = reader.load_json(squad_dev)
  gold = {qa['id']: qa['answers'][0]['text'] for a in data['data'] for p in a['paragraphs']
          for qa in p['qas']}
  assert evaluate.evaluate(data, gold) == {'exact_match': 100.0, 'f1': 100.0}


def test_hand_worked_v1_scores():
  data = _squad(_qa('a', 'the brown fox'), _qa('b', 'lazy dog', 'dog'), _qa('c', 'quick'))
  # a: 'Brown Fox!' normalises to 'brown fox' = gold: EM 1, F1 1.
  # b: 'the lazy cat' -> ['lazy','cat'] vs ['lazy','dog']: P=1/2 R=1/2 F1=0.5; vs ['dog']: 0.
  # c: missing: 0, 0.
  got = evaluate.evaluate(data, {'a': 'Brown Fox!', 'b': 'the lazy cat'})
  assert got['exact_match'] == pytest.approx(100 / 3)
  assert got['f1'] == pytest.approx(100 * 1.5 / 3)


def test_hand_worked_v2_scores():
  data = _squad(_qa('a', 'brown fox'), _qa('n', impossible=True), _qa('m', impossible=True),
                version='v2.0')
  # a: 'fox' vs 'brown fox' F1 = 2*(1*0.5)/1.5 = 2/3; n: '' right; m: 'dog' wrong.
  got = evaluate.evaluate(data, {'a': 'fox', 'n': '', 'm': 'dog'})
  assert got['exact'] == pytest.approx(100 / 3)
  assert got['f1'] == pytest.approx(100 * (2 / 3 + 1) / 3)
  assert got['HasAns_total'] == 1 and got['NoAns_total'] == 2
  assert got['NoAns_exact'] == pytest.approx(50.0)


def test_evaluate_cli_reads_gz(tmp_path):
  data = _squad(_qa('a', 'dog'))
  path = tmp_path / 'data.json.gz'
  with gzip.open(path, 'wt') as f:
    json.dump(data, f)
  (tmp_path / 'pred.json').write_text(json.dumps({'a': 'the dog'}))
  out = subprocess.run([sys.executable, '-m', 'bert_jax.squad.evaluate', str(path),
                        str(tmp_path / 'pred.json')], capture_output=True, text=True, check=True)
  assert json.loads(out.stdout) == {'exact_match': 100.0, 'f1': 100.0}


def test_v2_impossible_questions_point_at_cls_and_predict_empty(sample_tokenizer):
  data = _squad(_qa('a', 'brown fox'), _qa('n', impossible=True), version='v2.0')
  data['data'][0]['paragraphs'][0]['qas'][0]['answers'][0]['answer_start'] = 10
  examples, _ = reader.read_examples(data, is_training=True, version_2=True)
  feats = features.featurize(examples, sample_tokenizer, max_seq_length=32, doc_stride=8,
                             max_query_length=8, is_training=True)
  assert feats.start_positions[feats.example_index == 1].tolist() == [0]
  start, end = gold_logits(feats)
  preds, _, odds = postprocess.predict_answers(examples, feats, start, end, version_2=True)
  assert preds == {'a': 'brown fox', 'n': ''}
  assert odds['n'] > 0 > odds['a']


# ---- bad input --------------------------------------------------------------------------

def test_malformed_json_names_file(tmp_path):
  path = tmp_path / 'broken.json'
  path.write_text('{"data": [')
  with pytest.raises(SquadFormatError, match='broken.json.*not valid SQuAD JSON'):
    reader.read_examples(str(path), is_training=True)


def test_missing_file_says_how_to_get_one(tmp_path):
  with pytest.raises(SquadFormatError, match="no such file.*'download'"):
    sources.read(str(tmp_path / 'nope.json'), 'train', is_training=True, version_2=False)


@pytest.mark.parametrize('drop,where', [('question', "question id 'x'"),
                                        ('id', 'paragraph 0'), ('context', 'paragraph 0')])
def test_missing_field_names_article_and_question(drop, where):
  data = _squad({'id': 'x', 'question': 'q?', 'answers': [{'text': 'fox', 'answer_start': 16}]})
  target = data['data'][0]['paragraphs'][0]
  (target if drop == 'context' else target['qas'][0]).pop(drop)
  with pytest.raises(SquadFormatError, match=f"article 0 \\('t'\\).*{where}.*missing field '{drop}'"):
    reader.read_examples(data, is_training=True)


def test_wrong_answer_start_is_repaired_and_counted():
  data = _squad({'id': 'x', 'question': 'q?', 'answers': [{'text': 'fox', 'answer_start': 3}]},
                {'id': 'y', 'question': 'q?', 'answers': [{'text': 'cat', 'answer_start': 0}]})
  examples, report = reader.read_examples(data, is_training=True)
  assert [e.qas_id for e in examples] == ['x'] and examples[0].answer_start == 16
  assert report.relocated == 1 and report.skipped['answer text not found in context'] == 1
  assert 'y' in [qid for qid, _ in report.skipped_ids]
  assert '1 skipped (answer text not found in context)' in report.summary()


def test_empty_context_is_skipped_and_counted():
  data = _squad(_qa('a', 'dog'))
  data['data'][0]['paragraphs'][0]['context'] = '   '
  examples, report = reader.read_examples(data, is_training=False)
  assert not examples and report.skipped['empty context'] == 1


def test_unicode_and_control_characters(sample_tokenizer):
  context = 'Caf\u00e9 \u201cZ\u00fcrich\u201d \x07opened\u200b in 1901 \u2014 \U0001F600 na\u00efve.'
  start = context.index('1901')
  data = {'data': [{'title': 'u', 'paragraphs': [{'context': context, 'qas': [
      {'id': 'u', 'question': 'When did it open?',
       'answers': [{'text': '1901', 'answer_start': start}]}]}]}]}
  examples, _ = reader.read_examples(data, is_training=True)
  feats = features.featurize(examples, sample_tokenizer, max_seq_length=48, doc_stride=8,
                             max_query_length=16, is_training=True)
  preds, _, _ = postprocess.predict_answers(examples, feats, *gold_logits(feats))
  assert preds == {'u': '1901'}


def test_offline_download_error_says_what_to_do(monkeypatch, tmp_path):
  import urllib.request
  def refuse(*a, **k):
    raise OSError('network unreachable')
  monkeypatch.setattr(urllib.request, 'urlopen', refuse)
  with pytest.raises(SquadFormatError, match='Offline\\? Fetch train-v1.1.json'):
    sources.download('train', False, str(tmp_path))


def test_tfds_records_are_read():
  records = [{'id': b'1', 'title': b'T', 'context': b'Ada wrote it.', 'question': b'Who?',
              'answers': {'text': [b'Ada'], 'answer_start': [0]}}]
  examples, report = reader.from_records(records, 'tfds:test', is_training=True)
  assert examples[0].answer_text == 'Ada' and report.kept == 1


def test_a_tokenizer_with_more_ids_than_word_embeddings_is_refused(sample_tokenizer):
  from bert_jax.settings import ConfigError
  from bert_jax.tokenizer import check_fits
  size = len(sample_tokenizer)
  check_fits(sample_tokenizer, size, reader.SAMPLE_DIR)       # every id has a row: fine
  with pytest.raises(ConfigError, match=r"model.vocab_dir.*sample_data.*"
                                        rf"{size} tokens, more than the model's {size - 1} word"):
    check_fits(sample_tokenizer, size - 1, reader.SAMPLE_DIR)
