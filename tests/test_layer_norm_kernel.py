"""The LayerNorm backward Pallas kernel (bert_jax/layer_norm_kernel.py), in Pallas' interpret
mode on CPU: against XLA's backward, per device under a mesh, and its lowering for CUDA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from bert_jax import layer_norm_kernel as lnk
from bert_jax import mesh as mesh_lib
from bert_jax import model
from bert_jax.settings import MeshSettings


def _inputs(dtype, shape=(4, 16, 64)):
  x = (jax.random.normal(jax.random.PRNGKey(1), shape) * 2 + 0.5).astype(dtype)
  p = {'scale': jnp.linspace(0.5, 1.5, shape[-1]), 'bias': jnp.linspace(-0.1, 0.1, shape[-1])}
  g = jax.random.normal(jax.random.PRNGKey(2), shape).astype(dtype)
  return x, p, g


def _assert_close(ours, ref, dtype):
  assert jax.tree.map(lambda a: a.dtype, ours) == jax.tree.map(lambda a: a.dtype, ref)
  tol = 1e-5 if dtype == jnp.float32 else 2 ** -7   # float32 rounding; bf16: one bf16 step
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(np.max(np.abs(b))))


def _vjp(x, p, g, dtype):
  return jax.vjp(lambda x, p: model._layer_norm(x, p, 1e-12, dtype), x, p)[1](g)


@pytest.mark.parametrize('dtype,blocks', [(jnp.float32, 1), (jnp.bfloat16, 1),
                                          (jnp.float32, 4), (jnp.bfloat16, 2)])
def test_kernel_matches_xla_backward(dtype, blocks, monkeypatch):
  monkeypatch.setattr(lnk, 'BLOCKS', blocks)     # blocks of rows per program (a loop if > 1)
  x, p, g = _inputs(dtype)
  monkeypatch.setattr(model, '_use_ln_kernel', lambda x: False)
  ref = _vjp(x, p, g, dtype)
  calls = []
  monkeypatch.setattr(model, '_use_ln_kernel', lambda x: calls.append(x.shape) or lnk.usable(x))
  _assert_close(_vjp(x, p, g, dtype), ref, dtype)
  assert calls == [(4, 16, 64)]
  assert lnk.fits(4 * 4 * blocks, 64) and not lnk.fits(4 * 4 * blocks + 4 * blocks // 2, 64)


def test_kernel_runs_per_device_under_the_data_mesh(monkeypatch):
  """Under train.jit_train_step's abstract mesh the kernel runs in a shard_map over 'data'
  (each device its own rows) and gives XLA's gradients; without a mesh it runs whole."""
  dtype = jnp.float32
  x, p, g = _inputs(dtype, (8, 12, 32))
  if jax.device_count() < 2:
    pytest.skip('needs 2 or more devices (the suite fakes 8 CPU devices)')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=min(4, jax.device_count())))
  rows = NamedSharding(mesh, P('data'))
  x, g = jax.device_put(x, rows), jax.device_put(g, rows)
  loss = lambda x, p, g: jnp.sum(model._layer_norm(x, p, 1e-12, dtype) * g)
  grad = jax.jit(mesh_lib.traced_under(mesh, jax.grad(loss, argnums=(0, 1)), 'grad'))
  monkeypatch.setattr(model, '_use_ln_kernel', lambda x: False)
  ref = grad(x, p, g)
  maps = []
  shard_map = jax.shard_map
  monkeypatch.setattr(jax, 'shard_map', lambda f, **k: maps.append(k) or shard_map(f, **k))
  monkeypatch.setattr(model, '_use_ln_kernel', lnk.usable)
  ours = jax.jit(mesh_lib.traced_under(mesh, jax.grad(loss, argnums=(0, 1)), 'grad2'))(x, p, g)
  _assert_close(ours, ref, dtype)
  assert len(maps) == 1 and maps[0]['in_specs'][0] == P('data')
  assert ours[0].sharding.is_equivalent_to(rows, 3)
  maps.clear()
  _assert_close(jax.jit(jax.grad(loss, argnums=(0, 1)))(x, p, g), ref, dtype)
  assert maps == []


def test_rows_that_do_not_split_fall_back():
  assert not lnk.usable(jnp.zeros((3, 5, 64)))       # 15 rows, blocks of 4
  assert lnk.usable(jnp.zeros((3, 4, 64)))


def test_gpu_without_pallas_triton_falls_back(monkeypatch):
  monkeypatch.setattr(lnk.jax, 'default_backend', lambda: 'gpu')
  assert lnk.fits(32, 1024)
  monkeypatch.setattr(lnk, '_triton_available', lambda: False)
  assert not lnk.fits(32, 1024)


@pytest.mark.parametrize('blocks', [1, 8])
def test_lowers_to_one_triton_kernel_for_cuda(blocks, monkeypatch):
  """On this CPU machine: the BERT-Large shape lowers through Pallas' Triton path (its block
  shapes, and the loop over blocks of rows, are accepted) into a single kernel; compiling and
  timing it needs a GPU."""
  monkeypatch.setattr(lnk.jax, 'default_backend', lambda: 'gpu')
  monkeypatch.setattr(lnk, 'BLOCKS', blocks)
  x = jax.ShapeDtypeStruct((32, 384, 1024), jnp.bfloat16)
  stats = jax.ShapeDtypeStruct((32, 384, 1), jnp.float32)
  scale = jax.ShapeDtypeStruct((1024,), jnp.float32)
  triton = jax.export.DisabledSafetyCheck.custom_call('__gpu$xla.gpu.triton')
  bwd = lambda *a: lnk.layer_norm_bwd(*a)          # a fresh function: BLOCKS is read at tracing
  exported = jax.export.export(jax.jit(bwd), platforms=['cuda'],
                               disabled_checks=[triton])(x, x, stats, stats, scale)
  text = exported.mlir_module()
  assert text.count('__gpu$xla.gpu.triton') == 1 and f'num_warps = {lnk.NUM_WARPS}' in text
  rows = 32 * 384
  parts = rows // (lnk.ROWS * blocks)
  assert f'tensor<{rows}x1024xbf16>' in text and f'tensor<{parts}x1024xf32>' in text
  assert not lnk.fits(rows, 768)                     # BERT-Base's width: XLA's backward


def test_train_step_with_the_kernel_matches_xla_on_a_mesh(monkeypatch):
  """The whole jitted train step (4 devices, 2 accumulated micro-batches in a scan): the
  kernel's step gives XLA's loss, gradient norm and updated params."""
  from bert_jax import batches, benchmark, optim, train
  from bert_jax.model_config import ModelConfig
  from bert_jax.precision import PrecisionPolicy
  from bert_jax.settings import TrainSettings
  config = ModelConfig.preset('tiny').replace(hidden_dropout=0.0, attention_dropout=0.0)
  policy = PrecisionPolicy('fp32')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=min(4, jax.device_count())))
  opt = optim.make_optimizer(TrainSettings(), 1000)
  key = jax.random.PRNGKey(0)
  batch = batches.to_device(benchmark.synthetic(np.random.default_rng(0), 16, 32,
                                                config.vocab_size), mesh_lib.batch_sharding(mesh))
  results, calls = {}, []
  kernel = lnk.layer_norm_bwd
  monkeypatch.setattr(lnk, 'layer_norm_bwd', lambda *a, **k: calls.append(1) or kernel(*a, **k))
  for name, use in (('xla', lambda x: False), ('kernel', lnk.usable)):
    monkeypatch.setattr(model, '_use_ln_kernel', use)
    state = benchmark.random_train_state(mesh, config, policy, opt, key, key)
    new, metrics = train.jit_train_step(mesh, config, policy, opt, accumulation=2)(state, batch)
    results[name] = (metrics, new.params)
  assert len(calls) == 1 + 2 * config.num_layers     # every LayerNorm, traced once in the scan
  for k in ('loss', 'grad_norm'):
    np.testing.assert_allclose(results['kernel'][0][k], results['xla'][0][k], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(results['kernel'][1]), jax.tree.leaves(results['xla'][1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
