"""benchmarks/gelu_pallas.py, profile_step's gelu_kernel variant (the FFN's bias + GELU
backward as one Pallas kernel), in Pallas' interpret mode on CPU: against the model's
backward, per device under a mesh, in the whole train step, and its lowering for CUDA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from bert_jax import mesh as mesh_lib
from bert_jax import model
from bert_jax.settings import MeshSettings
from helpers import cuda_mlir


@pytest.fixture(scope='module')
def gp(load_script):
  return load_script('gelu_pallas')


def _inputs(dtype, shape=(2, 32, 512)):
  h0 = (jax.random.normal(jax.random.PRNGKey(0), shape) * 2).astype(dtype)
  bias = jnp.linspace(-1, 1, shape[-1]).astype(dtype)
  g = jax.random.normal(jax.random.PRNGKey(1), shape).astype(dtype)
  return h0, bias, g


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_kernel_matches_the_model_backward(gp, dtype, monkeypatch):
  h0, bias, g = _inputs(dtype)
  calls = []
  monkeypatch.setattr(gp, '_tiles_bwd', lambda h, g, f=gp._tiles_bwd: calls.append(h.shape)
                      or f(h, g))
  y, vjp = jax.vjp(gp.bias_gelu, h0, bias)
  dh, dbias = vjp(g)
  y_ref, vjp_ref = jax.vjp(lambda h0, b: model._gelu(h0 + b), h0, bias)
  dh_ref, _ = vjp_ref(g)
  assert calls == [(64, 512)] and dh.dtype == dbias.dtype == dtype
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
  tol = 1e-6 if dtype == jnp.float32 else 2 ** -8
  scale = float(jnp.max(jnp.abs(dh_ref.astype(jnp.float32))))
  np.testing.assert_allclose(np.asarray(dh, np.float32), np.asarray(dh_ref, np.float32),
                             rtol=tol, atol=tol * scale)
  # the bias gradient: the column sums of dh, summed in float32 and rounded once
  exact = np.asarray(dh, np.float64).sum(axis=(0, 1))
  np.testing.assert_allclose(np.asarray(dbias, np.float64), exact, rtol=2 * tol,
                             atol=2 * tol * np.abs(exact).max())


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_forward_kernel_gives_the_model_forward(gp, dtype, monkeypatch):
  """The forward kernel: the model's GELU within float32 rounding (bf16: one bf16 step), and
  the same pre-activation kept for the backward pass (so the same gradients)."""
  h0, bias, g = _inputs(dtype)
  y_ref = model._gelu(h0 + bias)
  grads_ref = jax.vjp(gp.bias_gelu, h0, bias)[1](g)          # XLA's forward, kernel backward
  monkeypatch.setattr(gp, 'FORWARD_KERNEL', True)
  calls = []
  monkeypatch.setattr(gp, '_tiles_fwd', lambda h0, b, f=gp._tiles_fwd: calls.append(h0.shape)
                      or f(h0, b))
  y, vjp = jax.vjp(gp.bias_gelu, h0, bias)
  assert calls == [(64, 512)] and y.dtype == dtype
  tol = 1e-6 if dtype == jnp.float32 else 2 ** -8
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32),
                             rtol=tol, atol=tol * float(jnp.max(jnp.abs(y_ref))))
  for a, b in zip(vjp(g), grads_ref):
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_shapes_that_do_not_tile_fall_back(gp, monkeypatch):
  h0, bias, g = _inputs(jnp.float32, (3, 10, 64))        # 30 rows: not a multiple of ROWS
  assert not gp.usable(h0 + bias) and gp.usable(jnp.zeros((2, 16, 64)))
  ref = jax.vjp(lambda h0, b: model._gelu(h0 + b), h0, bias)[1](g)
  ours = jax.vjp(gp.bias_gelu, h0, bias)[1](g)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  monkeypatch.setattr(gp.lnk.jax, 'default_backend', lambda: 'gpu')
  monkeypatch.setattr(gp.lnk, '_triton_available', lambda: True)
  assert gp.fits(12288, 4096) and gp.fits(12288, 3072)    # Large's and Base's FFN
  assert not gp.fits(12288, 1000) and not gp.fits(12288 + gp.ROWS // 2, 4096)
  assert gp.fits(64, 128) and not gp.fits(64, 96)         # power-of-two tile widths only


def test_kernel_runs_per_device_under_the_data_mesh(gp, monkeypatch):
  if jax.device_count() < 2:
    pytest.skip('needs 2 or more devices (the suite fakes 8 CPU devices)')
  h0, bias, g = _inputs(jnp.float32, (8, 16, 256))
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=min(4, jax.device_count())))
  rows = NamedSharding(mesh, P('data'))
  h0, g = jax.device_put(h0, rows), jax.device_put(g, rows)
  loss = lambda h0, b, g: jnp.sum(gp.bias_gelu(h0, b) * g)
  ref = jax.jit(jax.grad(loss, argnums=(0, 1)))(h0, bias, g)     # no mesh: one kernel call
  maps = []
  shard_map = jax.shard_map
  monkeypatch.setattr(jax, 'shard_map', lambda f, **k: maps.append(k) or shard_map(f, **k))
  ours = jax.jit(mesh_lib.traced_under(mesh, jax.grad(loss, argnums=(0, 1)), 'g'))(h0, bias, g)
  assert len(maps) == 1 and maps[0]['in_specs'][0] == P('data')
  assert ours[0].sharding.is_equivalent_to(rows, 3)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  maps.clear()
  monkeypatch.setattr(gp, 'FORWARD_KERNEL', True)                # the forward kernel too
  ours = jax.jit(mesh_lib.traced_under(mesh, jax.grad(loss, argnums=(0, 1)), 'g2'))(h0, bias, g)
  assert [m['in_specs'] for m in maps] == [(P('data'), P()), (P('data'), P('data'))]
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow_tool
def test_the_variant_train_step_matches_the_model_on_a_mesh(gp, monkeypatch):
  """profile_step's gelu_kernel: the whole jitted train step (4 devices, tiny model whose FFN
  width 128 tiles) gives the model's loss, gradient norm and params, in float32."""
  from bert_jax import batches, benchmark, optim, train
  from bert_jax.model_config import ModelConfig
  from bert_jax.precision import PrecisionPolicy
  from bert_jax.settings import TrainSettings
  config = ModelConfig.preset('tiny').replace(hidden_dropout=0.0, attention_dropout=0.0)
  policy = PrecisionPolicy('fp32', fp32_matmul='float32')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=min(4, jax.device_count())))
  opt = optim.make_optimizer(TrainSettings(), 1000)
  key = jax.random.PRNGKey(0)
  batch = batches.to_device(benchmark.synthetic(np.random.default_rng(0), 8, 32,
                                                config.vocab_size), mesh_lib.batch_sharding(mesh))
  calls, results = [], {}
  tiles = gp._tiles_bwd
  monkeypatch.setattr(gp, '_tiles_bwd', lambda h, g: calls.append(h.shape) or tiles(h, g))
  for name, block in (('model', model._ffn_block), ('kernel', gp.ffn_block)):
    monkeypatch.setattr(model, '_ffn_block', block)
    state = benchmark.random_train_state(mesh, config, policy, opt, key, key)
    new, metrics = train.jit_train_step(mesh, config, policy, opt)(state, batch)
    results[name] = (metrics, new.params)
  assert calls == [(64, 128)] * config.num_layers      # per device: 2 of the 8 sequences
  for k in ('loss', 'grad_norm'):
    np.testing.assert_allclose(results['kernel'][0][k], results['model'][0][k], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(results['kernel'][1]), jax.tree.leaves(results['model'][1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_lowers_to_one_triton_kernel_for_cuda(gp, monkeypatch):
  """On this CPU machine: BERT-Large's FFN shape lowers through Pallas' Triton path into a
  single kernel; compiling and timing it needs a GPU."""
  monkeypatch.setattr(gp.lnk.jax, 'default_backend', lambda: 'gpu')
  h = jax.ShapeDtypeStruct((32, 384, 4096), jnp.bfloat16)
  text = cuda_mlir(lambda h, g: gp.bias_gelu_bwd(h, g), h, h)
  assert text.count('__gpu$xla.gpu.triton') == 1 and f'num_warps = {gp.NUM_WARPS}' in text
  assert 'tensor<12288x4096xbf16>' in text and f'tensor<{12288 // gp.ROWS}x4096xf32>' in text
  bias = jax.ShapeDtypeStruct((4096,), jnp.bfloat16)
  text = cuda_mlir(lambda h, b: gp.bias_gelu_fwd(h, b), h, bias)
  assert text.count('__gpu$xla.gpu.triton') == 1 and 'tensor<1x4096xbf16>' in text


def test_gelu_sweep_script_times_each_tile_beside_xla(tmp_path, monkeypatch, load_script):
  """benchmarks/gelu_sweep.py on CPU (interpret mode, tiny shapes): XLA's two passes, then
  both kernels for each tile shape, each tile traced anew (not the first tile's trace)."""
  import json
  import sys
  module = load_script('gelu_sweep')
  seen = []
  real = module.gp._tiles_bwd
  monkeypatch.setattr(module.gp, '_tiles_bwd',
                      lambda h, g: seen.append((module.gp.ROWS, module.gp.COLS)) or real(h, g))
  out = tmp_path / 'sweep.jsonl'
  monkeypatch.setattr(sys, 'argv', [
      'gelu_sweep.py', '--rows', '32', '--width', '256', '--tile-rows', '16', '32',
      '--tile-cols', '128', '--warps', '4', '--calls', '1', '--repeats', '1', '--out', str(out)])
  for name in ('ROWS', 'COLS', 'NUM_WARPS'):      # the sweep sets them: put them back after
    monkeypatch.setattr(module.gp, name, getattr(module.gp, name))
  module.main()
  recs = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(r['pass'], r['impl'], r.get('tile')) for r in recs] == [
      ('bwd', 'xla', None), ('fwd', 'xla', None), ('bwd', 'pallas', [16, 128]),
      ('fwd', 'pallas', [16, 128]), ('bwd', 'pallas', [32, 128]), ('fwd', 'pallas', [32, 128])]
  assert all(r['us'] > 0 and 'error' not in r for r in recs)
  assert (16, 128) in seen and (32, 128) in seen
