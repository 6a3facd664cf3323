"""Inference with the weights compiled into the program (inference.compile_bound_eval)."""
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from bert_jax import batches, benchmark, inference, mesh as mesh_lib, steps
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.settings import ConfigError, MeshSettings, from_config
from configs import bench_infer

CONFIG = ModelConfig.preset('tiny').replace(attention='xla')
POLICY = PrecisionPolicy('bf16')


def _batch(mesh, batch=4, seq=32, seed=0):
  host = benchmark.synthetic(np.random.default_rng(seed), batch, seq, CONFIG.vocab_size)
  return batches.to_device({k: host[k] for k in steps.INPUT_KEYS},
                           mesh_lib.batch_sharding(mesh))


def _params(mesh, scan_layers=False):
  return benchmark.random_params(mesh, CONFIG, POLICY, jax.random.PRNGKey(3), scan_layers)


def _entry_parameters(compiled) -> int:
  """How many parameters the compiled program's entry computation takes."""
  hlo = compiled.as_text()
  entry = hlo[hlo.index('\nENTRY'):]
  entry = entry[:entry.index('\n}')]
  return len(re.findall(r'= \S+ parameter\(\d+\)', entry))


@pytest.mark.parametrize('devices,scan_layers', [(1, False), (2, False), (2, True)])
def test_bound_program_takes_the_batch_alone_and_gives_the_same_logits(devices, scan_layers):
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=devices))
  params, batch = _params(mesh, scan_layers), _batch(mesh)
  passed = inference.make_eval_fn(mesh, CONFIG, POLICY, scan_layers).lower(params, batch).compile()
  bound = inference.compile_bound_eval(mesh, CONFIG, POLICY, params, batch, scan_layers)
  assert _entry_parameters(passed) == len(jax.tree.leaves(params)) + 3
  assert _entry_parameters(bound) == 3       # input_ids, token_type_ids, attention_mask
  np.testing.assert_allclose(np.asarray(bound(batch)), np.asarray(passed(params, batch)),
                             rtol=0, atol=1e-5)
  other = _batch(mesh, seed=1)               # any batch of the same shape, later calls too
  np.testing.assert_allclose(np.asarray(bound(other)), np.asarray(passed(params, other)),
                             rtol=0, atol=1e-5)


PROGRAM = """
import jax
from bert_jax import inference, mesh as mesh_lib
from bert_jax.settings import MeshSettings
import test_inference as t
mesh = mesh_lib.make_mesh(MeshSettings(num_devices=1))
params, batch = t._params(mesh), t._batch(mesh)
print('simplified', jax.config.jax_use_simplified_jaxpr_constants)
print('parameters', t._entry_parameters(
    inference.compile_bound_eval(mesh, t.CONFIG, t.POLICY, params, batch)))
inference._jax_config = None   # as if jax._src had moved: the public setting's way
print('public', t._entry_parameters(
    inference.compile_bound_eval(mesh, t.CONFIG, t.POLICY, params, batch)))
"""


def test_bound_program_keeps_the_weights_inside_under_jax_newer_constant_handling():
  """JAX's newer handling of closed-over arrays (JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS, read at
  import) hoists any over jax_embedded_constants_max_bytes back into arguments, unless
  compile_bound_eval lifts that limit for its lowering (by jax._src's context manager, or by
  the public setting where that has moved)."""
  if not hasattr(jax.config, 'jax_use_simplified_jaxpr_constants'):
    pytest.skip('this JAX has no jax_use_simplified_jaxpr_constants')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, 'JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS': 'True', 'JAX_PLATFORMS': 'cpu',
         # the caller's path kept (e.g. a --target folder of wheels, as on the GPU machines)
         'PYTHONPATH': os.pathsep.join([root, os.path.join(root, 'tests'),
                                        *filter(None, [os.environ.get('PYTHONPATH')])])}
  out = subprocess.run([sys.executable, '-c', PROGRAM], env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'simplified True' in out.stdout
  assert 'parameters 3' in out.stdout, out.stdout
  assert 'public 3' in out.stdout, out.stdout


def test_constant_limit_is_lifted_through_the_public_setting_where_jax_src_moved(monkeypatch):
  """Without jax._src's context manager, the public jax_embedded_constants_max_bytes is set
  for the block and put back after it, also when the block raises."""
  if not hasattr(jax.config, 'jax_embedded_constants_max_bytes'):
    pytest.skip('this JAX has no jax_embedded_constants_max_bytes')
  monkeypatch.setattr(inference, '_jax_config', None)
  before = jax.config.jax_embedded_constants_max_bytes
  with inference._embedded_constants_max_bytes(12345):
    assert jax.config.jax_embedded_constants_max_bytes == 12345
  assert jax.config.jax_embedded_constants_max_bytes == before
  with pytest.raises(KeyError):
    with inference._embedded_constants_max_bytes(777):
      raise KeyError('x')
  assert jax.config.jax_embedded_constants_max_bytes == before


def test_params_too_large_to_bind_are_refused_with_the_fix_and_the_bench_passes_them(
    monkeypatch):
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=1))
  params, batch = _params(mesh), _batch(mesh)
  monkeypatch.setattr(inference, 'BOUND_PARAMS_MAX_BYTES', 1000)
  assert not inference.can_bind(params)
  with pytest.raises(ValueError, match='use make_eval_fn'):
    inference.compile_bound_eval(mesh, CONFIG, POLICY, params, batch)
  rec = benchmark.time_infer(CONFIG, POLICY, 1, 2, 32, iterations=2, warmup=1,
                             bind_params=True)
  assert rec['params_bound'] is False and rec['sentences_per_s'] > 0


def test_bench_binds_the_weights_unless_told_not_to():
  rec = benchmark.time_infer(CONFIG, POLICY, 1, 2, 32, iterations=2, warmup=1)
  assert rec['params_bound'] is True and len(rec['latency_ms']) > 0
  passed = benchmark.time_infer(CONFIG, POLICY, 1, 2, 32, iterations=2, warmup=1,
                                bind_params=False)
  assert passed['params_bound'] is False
  # the weights count in the memory either way: as arguments, or as the program's constants,
  # less the position table's rows past the 32 positions used, a constant slice that XLA
  # folds (jax 0.11 does; the program then holds 7.96 of the 8.08 MB)
  params = _params(mesh_lib.make_mesh(MeshSettings(num_devices=1)))
  needed_gb = (sum(x.nbytes for x in jax.tree.leaves(params))
               - params['embeddings']['position'][32:].nbytes) / 2 ** 30
  assert rec['peak_memory_gb'] >= needed_gb and passed['peak_memory_gb'] >= needed_gb


def test_bench_binds_by_default_and_takes_bind_params_as_a_bool():
  config = bench_infer.get_config()
  assert from_config(config).bench.bind_params is True
  config.bench.bind_params = False
  assert from_config(config).bench.bind_params is False
  raw = bench_infer.get_config().to_dict()
  raw['bench']['bind_params'] = 'yes'
  with pytest.raises(ConfigError, match='bench.bind_params'):
    from_config(raw)


def test_notebook_flow_binds_the_weights_and_takes_the_tokenizers_numpy_batch():
  """bert_jax's docstring: a tokenizer's numpy batch as the example and as each call's input."""
  import bert_jax
  pre = bert_jax.random_init(ModelConfig.preset('tiny'), jax.random.PRNGKey(0))
  tok = bert_jax.load_tokenizer(pre.vocab_dir, pre.do_lower_case)
  batch = dict(tok(['Who wrote it?', 'When?'], ['It was written by Ada.', 'In 1843.'],
                   padding='max_length', max_length=32, return_tensors='np'))
  policy = bert_jax.PrecisionPolicy('fp32')
  mesh = bert_jax.make_mesh(bert_jax.MeshSettings(num_devices=1))
  fn = bert_jax.compile_bound_eval(mesh, pre.config, policy,
                                   bert_jax.prepare_params(pre.params, policy), batch)
  logits = fn(batch)
  assert logits.shape == (2, 32, 2)
  start, end = logits[..., 0], logits[..., 1]
  ref = bert_jax.qa_logits(pre.params, batch['input_ids'], batch['token_type_ids'],
                           batch['attention_mask'], config=pre.config, policy=policy)
  np.testing.assert_allclose(np.asarray(start), np.asarray(ref[0]), atol=1e-4)
  np.testing.assert_allclose(np.asarray(end), np.asarray(ref[1]), atol=1e-4)


def test_can_bind_takes_numpy_params_and_counts_their_bytes(monkeypatch):
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=1))
  host = jax.tree.map(np.asarray, _params(mesh))
  assert inference.can_bind(host)
  monkeypatch.setattr(inference, 'BOUND_PARAMS_MAX_BYTES',
                      sum(x.nbytes for x in jax.tree.leaves(host)) - 1)
  assert not inference.can_bind(host)
