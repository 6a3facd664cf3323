"""bert_jax command line: parse flags, dispatch. Everything else lives in bert_jax/.

  python run.py --config=configs/tiny_cpu.py --workdir=/tmp/tiny
  python run.py --config=configs/large_4gpu.py --config.train.learning_rate=8e-5 --workdir=W
"""
import json
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', 'configs/tiny_cpu.py', 'Experiment config file.')
flags.DEFINE_string('workdir', '/tmp/bert_jax', 'Where checkpoints, predictions and records go.')
flags.DEFINE_enum('mode', 'train_and_evaluate',
                  ['train_and_evaluate', 'evaluate', 'export', 'bench', 'report'],
                  'train_and_evaluate: the whole job; evaluate: predict+score the last '
                  'checkpoint; export: write the last checkpoint in Hugging Face layout; '
                  'bench: the timing sweep of a bench config (records.jsonl in workdir); '
                  'report: tables and plots from the records in workdir (workdir/report).')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger('absl').setLevel(logging.WARNING)  # orbax's per-save chatter
  from bert_jax import benchmark, report, train
  from bert_jax.errors import BertJaxError
  try:
    if FLAGS.mode == 'report':
      results = report.write(FLAGS.workdir)
    elif FLAGS.mode == 'bench':
      results = benchmark.run(FLAGS.config, FLAGS.workdir)
    elif FLAGS.mode == 'train_and_evaluate':
      results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
      results = train.from_checkpoint(FLAGS.config, FLAGS.workdir, FLAGS.mode)
  except (BertJaxError, FileNotFoundError) as e:  # bad input: the message says what to fix
    sys.exit(f'bert_jax: {e}')
  print(json.dumps(results, indent=2))


if __name__ == '__main__':
  app.run(main)
