"""Regenerates bert_jax/sample_data: a small SQuAD-format set about invented towns.

The text is generated here from templates (no SQuAD text), so it can ship with the package.
Run: python tools/make_sample_data.py
"""
import collections
import json
import os
import random
import re

OUT = os.path.join(os.path.dirname(__file__), '..', 'bert_jax', 'sample_data')
SYLLABLES = ['bar', 'vel', 'dor', 'mi', 'ka', 'lun', 'ster', 'o', 'ran', 'tis', 'wen', 'gal',
             'ho', 'pel', 'zu', 'ner', 'fa', 'cor', 'ly', 'thon']
RIVERS = ['Amber', 'Silver', 'Crane', 'Willow', 'Falcon', 'Otter', 'Granite', 'Heron']
PROVINCES = ['Northmarch', 'Eastvale', 'Lowmoor', 'Highfold', 'Westreach', 'Sunmere']
PROFESSIONS = ['weaver', 'miller', 'sailor', 'blacksmith', 'teacher', 'merchant', 'priest']
PRODUCTS = ['blue pottery', 'apple cider', 'woollen blankets', 'copper bells', 'honey cakes',
            'glass beads', 'smoked fish', 'paper lanterns']
DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday']


def name(rng, parts=2):
  return ''.join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def paragraph(rng):
  f = dict(town=name(rng, 3), river=rng.choice(RIVERS), province=rng.choice(PROVINCES),
           year=str(rng.randint(1100, 1950)), founder=f'{name(rng)} {name(rng)}',
           profession=rng.choice(PROFESSIONS), origin=name(rng, 3),
           product=rng.choice(PRODUCTS), market=name(rng), day=rng.choice(DAYS),
           pop=f'{rng.randint(1, 90)},{rng.randint(100, 999)}')
  sentences = [
      f'{f["town"]} is a small town on the {f["river"]} river in the province of {f["province"]}.',
      f'It was founded in {f["year"]} by {f["founder"]}, a {f["profession"]} from {f["origin"]}.',
      f'The town is best known for its {f["product"]}, which are sold at the {f["market"]} '
      f'market every {f["day"]}.',
      f'At the last census its population was {f["pop"]}.',
  ]
  rng.shuffle(sentences[2:])
  context = ' '.join(sentences)
  qas = [
      (f'When was {f["town"]} founded?', f['year']),
      (f'Who founded {f["town"]}?', f['founder']),
      (f'What is {f["town"]} best known for?', f['product']),
      (f'On which river does {f["town"]} lie?', f['river']),
      (f'On what day is the {f["market"]} market held?', f['day']),
      (f'What was the population of {f["town"]} at the last census?', f['pop']),
      (f'What was the profession of the founder of {f["town"]}?', f['profession']),
  ]
  return f['town'], context, qas


def dataset(rng, n_articles, prefix):
  data = []
  for a in range(n_articles):
    paragraphs = []
    for p in range(2):
      title, context, qas = paragraph(rng)
      entries = []
      for q, (question, answer) in enumerate(qas):
        start = context.index(answer)
        entries.append({'id': f'{prefix}-{a}-{p}-{q}', 'question': question,
                        'answers': [{'text': answer, 'answer_start': start}]})
      paragraphs.append({'context': context, 'qas': entries})
    data.append({'title': title, 'paragraphs': paragraphs})
  return {'version': '1.1', 'data': data}


def vocab(*sets):
  words = collections.Counter()
  for ds in sets:
    for art in ds['data']:
      for par in art['paragraphs']:
        texts = [par['context']] + [qa['question'] for qa in par['qas']]
        for text in texts:
          words.update(re.findall(r'\w+|[^\w\s]', text.lower()))
  chars = sorted({c for w in words for c in w})
  return (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + sorted(words)
          + [c for c in chars if c not in words] + ['##' + c for c in chars])


def main():
  rng = random.Random(20261127)
  train, dev = dataset(rng, 60, 'train'), dataset(rng, 12, 'dev')
  os.makedirs(OUT, exist_ok=True)
  for fname, ds in (('train.json', train), ('dev.json', dev)):
    with open(os.path.join(OUT, fname), 'w') as f:
      json.dump(ds, f, indent=0)
  with open(os.path.join(OUT, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(vocab(train, dev)) + '\n')


if __name__ == '__main__':
  main()
