"""Helpers shared by test modules (tests/ is on sys.path under pytest)."""
import os
import subprocess
import sys

import numpy as np

from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FP32 = PrecisionPolicy('fp32', 'float32')
# For `python run.py` jobs the tests start: the CPU, XLA's full optimisation (conftest turns
# it down for the compile-bound tests in-process; a job's hundreds of steps ran 2.7 x slower
# under it, for 15 % less compile time).
SUBPROCESS_ENV = {'JAX_PLATFORMS': 'cpu', 'JAX_DISABLE_MOST_OPTIMIZATIONS': '0'}
# A two-layer encoder without dropout (the shapes of test_model's random transformers BERT).
TINY = ModelConfig(vocab_size=101, hidden_size=32, num_layers=2, num_heads=4,
                   intermediate_size=48, max_position_embeddings=64, hidden_dropout=0.0,
                   attention_dropout=0.0)


def features(ids, types, mask, starts, ends):
  """bert_jax Features over the given windows [N, T], with empty postprocessing fields."""
  from bert_jax.squad.features import Features
  n = len(ids)
  z = np.zeros(n)
  return Features(input_ids=ids, token_type_ids=types, attention_mask=mask, max_context=mask.copy(),
                  start_positions=np.asarray(starts, np.int32),
                  end_positions=np.asarray(ends, np.int32), example_index=np.arange(n),
                  context_start=z, doc_start=z, doc_len=z, example_context=np.arange(n),
                  context_token_start=np.zeros(n + 1), offsets=np.zeros((0, 2)))


def features_of_lengths(lengths, width=64):
  """Windows of the given lengths (token i has id i + 1), labels start = end = index."""
  n = len(lengths)
  mask = (np.arange(width)[None] < np.asarray(lengths)[:, None]).astype(np.int8)
  ids = (np.arange(1, width + 1)[None] * mask).astype(np.int32)
  return features(ids, mask.copy(), mask, np.arange(n), np.arange(n))


def run_tiny_job(workdir, *extra, wait=True, devices=1, env=None):
  """`python run.py` on configs/tiny_cpu.py (2 epochs, `devices` CPU devices) with extra
  flags, and `env`'s variables on top of this process's."""
  cmd = [sys.executable, 'run.py', '--config=configs/tiny_cpu.py', f'--workdir={workdir}',
         '--config.train.num_epochs=2', '--config.train.checkpoint_every=20',
         '--config.train.log_every=10', f'--config.mesh.num_devices={devices}', *extra]
  flags = f'--xla_force_host_platform_device_count={devices}' if devices > 1 else ''
  env = {**os.environ, 'XLA_FLAGS': flags, **SUBPROCESS_ENV, **(env or {})}
  if wait:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)


def cuda_mlir(fn, *args) -> str:
  """The StableHLO text of jit(fn) exported for CUDA from this CPU machine, Pallas' Triton
  kernels allowed. Lowered under an abstract H100: jax 0.11's Triton lowering asks the
  target GPU for its compute capability and, with no GPU here, fails without one
  ('No supported GPU devices found'); jax 0.10's assumed one."""
  import jax
  gpu = jax.sharding.AbstractDevice(device_kind='NVIDIA H100', num_cores=132, platform='gpu')
  triton = jax.export.DisabledSafetyCheck.custom_call('__gpu$xla.gpu.triton')
  with jax.sharding.use_abstract_mesh(
      jax.sharding.AbstractMesh((1,), ('cuda_target',), abstract_device=gpu)):
    return jax.export.export(jax.jit(fn), platforms=['cuda'],
                             disabled_checks=[triton])(*args).mlir_module()


def train_step_with_and_without(monkeypatch, switch, use_kernel):
  """The whole jitted train step of the tiny model in float32, without dropout, on 4 of the
  fake devices, 2 micro-batches accumulated in a scan: once with bert_jax.model's `switch`
  (a predicate choosing a kernel) always false, then with it set to `use_kernel`. Returns
  the model config and ((loss, grad_norm), params) for each, without first."""
  import jax

  from bert_jax import batches, benchmark, mesh as mesh_lib, model, optim, train
  from bert_jax.settings import MeshSettings, TrainSettings
  config = ModelConfig.preset('tiny').replace(hidden_dropout=0.0, attention_dropout=0.0)
  policy = PrecisionPolicy('fp32')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=min(4, jax.device_count())))
  opt = optim.make_optimizer(TrainSettings(), 1000)
  key = jax.random.PRNGKey(0)
  batch = batches.to_device(benchmark.synthetic(np.random.default_rng(0), 16, 32,
                                                config.vocab_size), mesh_lib.batch_sharding(mesh))
  results = []
  for use in (lambda x: False, use_kernel):
    monkeypatch.setattr(model, switch, use)
    state = benchmark.random_train_state(mesh, config, policy, opt, key, key)
    new, metrics = train.jit_train_step(mesh, config, policy, opt, accumulation=2)(state, batch)
    results.append(((metrics['loss'], metrics['grad_norm']), new.params))
  return config, results


def assert_same_step(ours, ref):
  """Two train_step_with_and_without results agree: loss and gradient norm within float32
  rounding, every updated parameter too."""
  import jax
  np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(ref[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

