"""Several hosts through jax.distributed, on localhost: two CPU processes, one device each."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import SUBPROCESS_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = ['run.py', '--config=configs/tiny_cpu.py', '--config.train.max_steps=50',
       '--config.train.checkpoint_every=30', '--config.train.log_every=10',
       '--config.mesh.num_devices=2']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return {**os.environ, **SUBPROCESS_ENV,
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}


def test_two_processes_match_one_process(tmp_path):
  """The whole job split over 2 processes (jax.distributed, gloo collectives on CPU, each
  process feeding its half of every global batch) gives the single-process result: the
  same 2-device data-parallel computation, so the same predictions and scores, and the
  same losses up to float rounding. The train state is split over the processes
  (mesh.shard_state, the default), checkpointed from both and gathered for prediction."""
  one = subprocess.run([sys.executable, *JOB, f'--workdir={tmp_path / "one"}'], cwd=ROOT,
                       env=_env(2), capture_output=True, text=True, timeout=900)
  assert one.returncode == 0, one.stderr[-3000:]
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, *JOB, f'--workdir={tmp_path / "two"}',
       f'--config.mesh.coordinator_address=localhost:{port}', '--config.mesh.num_processes=2',
       f'--config.mesh.process_id={pid}'], cwd=ROOT, env=_env(1), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for pid in (0, 1)]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  a = json.loads((tmp_path / 'one' / 'eval_results.json').read_text())
  b = json.loads((tmp_path / 'two' / 'eval_results.json').read_text())
  assert (a['exact_match'], a['f1'], a['steps']) == (b['exact_match'], b['f1'], b['steps'])
  assert json.loads((tmp_path / 'one' / 'predictions.json').read_text()) == json.loads(
      (tmp_path / 'two' / 'predictions.json').read_text())
  loss = lambda d: [json.loads(line)['loss'] for line in open(tmp_path / d / 'metrics.jsonl')]
  # Cross-process (gloo) and in-process reductions may round differently in the last bits,
  # and training carries those bits forward: tight early, looser over the 50 steps.
  np.testing.assert_allclose(loss('two')[:6], loss('one')[:6], rtol=1e-5)
  np.testing.assert_allclose(loss('two'), loss('one'), rtol=1e-4)
  records = [json.loads(line) for line in open(tmp_path / 'two' / 'records.jsonl')]
  assert {r['process_count'] for r in records} == {2}   # written once, by process 0
  assert {r['num_devices'] for r in records} == {2}
  # configs/base.py splits the state over the devices: here, over the two processes
  assert [r['shard_state'] for r in records if r['kind'] == 'train'] == [True]


def test_hosts_from_explicit_settings_or_the_cluster_environment(monkeypatch):
  import jax
  from bert_jax import mesh
  from bert_jax.errors import TopologyError
  from bert_jax.settings import MeshSettings
  calls = []
  monkeypatch.setattr(jax.distributed, 'is_initialized', lambda: False)
  monkeypatch.setattr(jax.distributed, 'initialize', lambda *a, **k: calls.append(k))
  mesh.initialize_distributed(MeshSettings())                     # one process: nothing
  mesh.initialize_distributed(MeshSettings(num_processes=0))      # the cluster's environment
  mesh.initialize_distributed(MeshSettings(coordinator_address='h:1', num_processes=4,
                                           process_id=3))
  assert calls == [{}, {'coordinator_address': 'h:1', 'num_processes': 4, 'process_id': 3}]

  def no_cluster(**_):
    raise ValueError('coordinator_address should be defined')
  monkeypatch.setattr(jax.distributed, 'initialize', no_cluster)
  with pytest.raises(TopologyError, match='num_processes=0 .* cluster environment'):
    mesh.initialize_distributed(MeshSettings(num_processes=0))
