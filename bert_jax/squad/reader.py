"""Reads SQuAD JSON (plain or .gz) into validated examples, with counted skips."""
from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import logging
import os
from typing import Iterable, Optional

from bert_jax.errors import SquadFormatError

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'sample_data')


@dataclasses.dataclass(frozen=True)
class Example:
  """One question. For training, `answer_start`/`answer_text` is the labelled span."""
  qas_id: str
  title: str
  question: str
  context: str
  answer_text: str = ''
  answer_start: int = -1
  all_answers: tuple[str, ...] = ()
  is_impossible: bool = False


@dataclasses.dataclass
class ReadReport:
  """What reading kept, repaired and skipped, and why; never silent."""
  source: str = ''
  questions: int = 0
  kept: int = 0
  relocated: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  skipped_ids: list = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    parts = [f'{self.source}: {self.kept}/{self.questions} questions kept']
    if self.relocated:
      parts.append(f'{self.relocated} answer_start values repaired to the nearest match')
    for reason, n in sorted(self.skipped.items()):
      parts.append(f'{n} skipped ({reason})')
    return '; '.join(parts)


def load_json(path: str) -> dict:
  """Reads plain or gzip JSON with an error that names the file and the fix."""
  if not os.path.exists(path):
    raise SquadFormatError(f'{path}: no such file. Pass a SQuAD JSON path, or '
                           "'download' (network) or 'tfds' (tensorflow-datasets).")
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rt', encoding='utf-8') as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
    raise SquadFormatError(f'{path}: not valid SQuAD JSON ({e}). '
                           'Re-download the file or check it is not truncated.') from e


def read_examples(path_or_data, *, is_training: bool, version_2: bool = False,
                  limit: int = 0, source: str | None = None) -> tuple[list[Example], ReadReport]:
  """Validates a SQuAD file (path or parsed dict) into Examples.

  Structural problems (missing fields, wrong types) raise SquadFormatError naming the
  file, article and question. Questions that cannot be used are skipped and counted:
  empty contexts, and, when training, answers whose text is not in the context.
  An answer_start that does not match its text is repaired to the nearest occurrence.
  """
  if isinstance(path_or_data, (str, os.PathLike)):
    source = source or str(path_or_data)
    data = load_json(str(path_or_data))
  else:
    source, data = source or '<data>', path_or_data
  report = ReadReport(source=source)
  if not isinstance(data, dict) or not isinstance(data.get('data'), list):
    raise SquadFormatError(f"{source}: top level must be an object with a 'data' list "
                           '(the official SQuAD layout)')
  examples = []
  for a, article in enumerate(data['data']):
    title = article.get('title', f'article {a}') if isinstance(article, dict) else None
    where = f'{source}: article {a} ({title!r})'
    paragraphs = _field(article, 'paragraphs', list, where)
    for p, paragraph in enumerate(paragraphs):
      pwhere = f'{where}, paragraph {p}'
      context = _field(paragraph, 'context', str, pwhere)
      for qa in _field(paragraph, 'qas', list, pwhere):
        qid = _field(qa, 'id', (str, int), pwhere)
        qwhere = f'{pwhere}, question id {qid!r}'
        example = _read_question(qa, str(qid), title, context, qwhere, is_training,
                                 version_2, report)
        if example is not None:
          examples.append(example)
          if limit and len(examples) >= limit:
            return _done(examples, report)
  return _done(examples, report)


def _done(examples, report):
  report.kept = len(examples)
  logging.info('%s', report.summary())
  return examples, report


def _field(obj, name, kind, where):
  if not isinstance(obj, dict) or name not in obj:
    raise SquadFormatError(f'{where}: missing field {name!r}')
  if not isinstance(obj[name], kind):
    raise SquadFormatError(f'{where}: field {name!r} should be '
                           f'{getattr(kind, "__name__", kind)}, found {type(obj[name]).__name__}')
  return obj[name]


def _skip(report, qid, reason):
  report.skipped[reason] += 1
  report.skipped_ids.append((qid, reason))


def _read_question(qa, qid, title, context, where, is_training, version_2, report):
  report.questions += 1
  question = _field(qa, 'question', str, where)
  answers = qa.get('answers', [])
  if not isinstance(answers, list):
    raise SquadFormatError(f"{where}: field 'answers' should be a list")
  is_impossible = bool(qa.get('is_impossible', False)) if version_2 else False
  if not context.strip():
    _skip(report, qid, 'empty context')
    return None
  if not question.strip():
    _skip(report, qid, 'empty question')
    return None
  texts = []
  for answer in answers:
    texts.append(_field(answer, 'text', str, where))
    _field(answer, 'answer_start', int, where)
  if is_impossible:
    return Example(qid, title, question, context, all_answers=(), is_impossible=True)
  if not answers:
    if is_training:
      raise SquadFormatError(f"{where}: no answers; v1.1 training questions need one "
                             "(set data.version_2 for unanswerable questions)")
    return Example(qid, title, question, context, all_answers=())
  text, start = answers[0]['text'], answers[0]['answer_start']
  if is_training:
    start = _locate(context, text, start, report)
    if start is None:
      _skip(report, qid, 'answer text not found in context')
      return None
  return Example(qid, title, question, context, text, start, tuple(texts))


def _locate(context: str, text: str, start: int, report) -> Optional[int]:
  if not text.strip():
    return None
  if 0 <= start and context[start:start + len(text)] == text:
    return start
  hits, i = [], context.find(text)
  while i >= 0:
    hits.append(i)
    i = context.find(text, i + 1)
  if not hits:
    return None
  report.relocated += 1
  return min(hits, key=lambda h: abs(h - start))


def from_records(records: Iterable[dict], source: str, *, is_training: bool,
                 version_2: bool = False, limit: int = 0):
  """Flat records (tensorflow-datasets' squad: id, title, context, question, answers)."""
  data = collections.OrderedDict()
  for r in records:
    dec = {k: (v.decode('utf-8') if isinstance(v, bytes) else v) for k, v in r.items()
           if k != 'answers'}
    ans = r.get('answers', {})
    texts = [t.decode('utf-8') if isinstance(t, bytes) else str(t) for t in ans.get('text', [])]
    starts = [int(s) for s in ans.get('answer_start', [])]
    para = data.setdefault(dec.get('title', ''), collections.OrderedDict()).setdefault(
        dec['context'], [])
    para.append({'id': dec['id'], 'question': dec['question'],
                 'is_impossible': bool(dec.get('is_impossible', not texts)),
                 'answers': [{'text': t, 'answer_start': s} for t, s in zip(texts, starts)]})
  squad = {'data': [{'title': t, 'paragraphs': [{'context': c, 'qas': q} for c, q in ps.items()]}
                    for t, ps in data.items()]}
  return read_examples(squad, is_training=is_training, version_2=version_2, limit=limit,
                       source=source)
