"""The Colab notebook runs top to bottom on the tiny config (shell/magic lines skipped)."""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_notebook_runs(monkeypatch, capsys):
  with open(os.path.join(ROOT, 'notebooks', 'colab_quickstart.ipynb')) as f:
    nb = json.load(f)
  monkeypatch.chdir(ROOT)
  namespace = {}
  for cell in nb['cells']:
    if cell['cell_type'] != 'code':
      continue
    code = ''.join(line for line in cell['source'] if not line.lstrip().startswith(('%', '!')))
    exec(compile(code, 'colab_quickstart.ipynb', 'exec'), namespace)
  out = capsys.readouterr().out
  assert '"f1"' in out and 'answer:' in out
  assert 'same answer: True' in out   # the weights compiled into the program
  assert namespace['results']['f1'] > 0
  assert '## Inference, seq 64: latency (ms) and throughput' in out   # the benchmark cells
  assert namespace['written']['plots']
