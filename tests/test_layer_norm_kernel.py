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
from helpers import assert_same_step, cuda_mlir, train_step_with_and_without


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


@pytest.mark.parametrize('dtype,blocks,joint', [(jnp.float32, 1, False), (jnp.bfloat16, 1, False),
                                                (jnp.float32, 4, False), (jnp.bfloat16, 2, False),
                                                (jnp.float32, 1, True), (jnp.bfloat16, 2, True)])
def test_kernel_matches_xla_backward(dtype, blocks, joint, monkeypatch):
  monkeypatch.setattr(lnk, 'BLOCKS', blocks)     # blocks of rows per program (a loop if > 1)
  monkeypatch.setattr(lnk, 'JOINT_SUMS', joint)  # both partial sums in one reduction
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
  bwd = lambda *a: lnk.layer_norm_bwd(*a)          # a fresh function: BLOCKS is read at tracing
  text = cuda_mlir(bwd, x, x, stats, stats, scale)
  assert text.count('__gpu$xla.gpu.triton') == 1 and f'num_warps = {lnk.NUM_WARPS}' in text
  rows = 32 * 384
  parts = rows // (lnk.ROWS * blocks)
  assert f'tensor<{rows}x1024xbf16>' in text and f'tensor<{parts}x1024xf32>' in text
  assert not lnk.fits(rows, 768)                     # BERT-Base's width: XLA's backward


def test_train_step_with_the_kernel_matches_xla_on_a_mesh(monkeypatch):
  """The whole jitted train step (4 devices, 2 accumulated micro-batches in a scan): the
  kernel's step gives XLA's loss, gradient norm and updated params."""
  calls = []
  kernel = lnk.layer_norm_bwd
  monkeypatch.setattr(lnk, 'layer_norm_bwd', lambda *a, **k: calls.append(1) or kernel(*a, **k))
  config, (xla, ours) = train_step_with_and_without(monkeypatch, '_use_ln_kernel', lnk.usable)
  assert len(calls) == 1 + 2 * config.num_layers     # every LayerNorm, traced once in the scan
  assert_same_step(ours, xla)


# The forward kernel, used where no gradient is taken (inference)

def _forward_ref(x, p, dtype):
  return model._ln_fwd(x, p['scale'], p['bias'], 1e-12, dtype)[0]


@pytest.mark.parametrize('dtype,out', [(jnp.float32, jnp.float32), (jnp.bfloat16, jnp.bfloat16),
                                       (jnp.float16, jnp.float16), (jnp.float32, jnp.float16)])
def test_forward_kernel_matches_xla_forward(dtype, out):
  """x in dtype, y in out (the embeddings' LayerNorm takes float32 and gives the compute
  dtype): XLA's one-pass forward, within float32 rounding or one step of out's rounding."""
  x, p, _ = _inputs(dtype)
  ours = lnk.layer_norm_fwd(x, p['scale'], p['bias'], 1e-12, out)
  assert ours.dtype == out and ours.shape == x.shape
  _assert_close(ours, _forward_ref(x, p, out), jnp.float32 if out == jnp.float32 else out)
  ref64 = (np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(-1, keepdims=True))
  ref64 = ref64 / np.sqrt(np.asarray(x, np.float64).var(-1, keepdims=True) + 1e-12)
  ref64 = ref64 * np.asarray(p['scale']) + np.asarray(p['bias'])
  assert np.max(np.abs(np.asarray(ours, np.float64) - ref64)) < (
      2e-6 if out == jnp.float32 else 2.0 ** -7 * np.max(np.abs(ref64)))


def test_forward_kernel_keeps_its_precision_far_from_zero_mean():
  """Rows whose mean is 1000 times their spread: the kernel's variance comes from the centred
  values, so its error stays at float32 rounding where a one-pass variance would lose it."""
  x = 1000.0 + jax.random.normal(jax.random.PRNGKey(3), (2, 8, 64))
  p = {'scale': jnp.ones(64), 'bias': jnp.zeros(64)}
  ours = np.asarray(lnk.layer_norm_fwd(x, p['scale'], p['bias'], 1e-12, jnp.float32))
  x64 = np.asarray(x, np.float64)
  ref64 = (x64 - x64.mean(-1, keepdims=True)) / x64.std(-1, keepdims=True)
  assert np.max(np.abs(ours - ref64)) < 1e-3


def test_model_uses_the_forward_kernel_only_where_no_gradient_is_taken(monkeypatch):
  dtype = jnp.bfloat16
  x, p, g = _inputs(dtype)
  calls = []
  monkeypatch.setattr(model, '_use_ln_fwd_kernel',
                      lambda x: calls.append(x.shape) or lnk.usable_fwd(x))
  y = jax.jit(lambda x, p: model._layer_norm(x, p, 1e-12, dtype))(x, p)
  assert calls == [(4, 16, 64)]
  _assert_close(y, _forward_ref(x, p, dtype), dtype)
  calls.clear()
  monkeypatch.setattr(model, '_use_ln_kernel', lambda x: False)
  _vjp(x, p, g, dtype)                 # the gradient's forward is the custom VJP's, not this
  assert calls == []


def test_forward_kernel_runs_per_device_in_the_eval_step():
  """make_eval_fn traces under its mesh: with the kernel on, a 4-device eval runs it in a
  shard_map over 'data' and gives the logits of XLA's forward."""
  from bert_jax import batches, benchmark, inference
  from bert_jax.model_config import ModelConfig
  from bert_jax.precision import PrecisionPolicy
  if jax.device_count() < 4:
    pytest.skip('needs 4 devices (the suite fakes 8 CPU devices)')
  config, policy = ModelConfig.preset('tiny'), PrecisionPolicy('fp32')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=4))
  params = inference.prepare_params(model.init_params(jax.random.PRNGKey(0), config), policy)
  batch = batches.to_device(benchmark.synthetic(np.random.default_rng(0), 8, 32,
                                                config.vocab_size), mesh_lib.batch_sharding(mesh))
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(model, '_use_ln_fwd_kernel', lambda x: False)
    ref = inference.make_eval_fn(mesh, config, policy)(params, batch)
  maps = []
  with pytest.MonkeyPatch.context() as mp:
    shard_map = jax.shard_map
    mp.setattr(jax, 'shard_map', lambda f, **k: maps.append(k) or shard_map(f, **k))
    mp.setattr(model, '_use_ln_fwd_kernel', lnk.usable_fwd)
    ours = inference.make_eval_fn(mesh, config, policy)(params, batch)
  assert len(maps) == 1 + 2 * config.num_layers and maps[0]['in_specs'][0] == P('data')
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_forward_lowers_to_one_triton_kernel_for_cuda(monkeypatch):
  monkeypatch.setattr(lnk.jax, 'default_backend', lambda: 'gpu')
  x = jax.ShapeDtypeStruct((1, 384, 1024), jnp.float16)
  vec = jax.ShapeDtypeStruct((1024,), jnp.float32)
  assert lnk.usable_fwd(x) and not lnk.usable_fwd(jax.ShapeDtypeStruct((1, 384, 768), x.dtype))
  text = cuda_mlir(lambda x, s, b: lnk.layer_norm_fwd(x, s, b, 1e-12, jnp.float16), x, vec, vec)
  assert text.count('__gpu$xla.gpu.triton') == 1 and f'num_warps = {lnk.FWD_NUM_WARPS}' in text


def test_forward_kernel_reads_a_row_of_a_stack():
  x, _, _ = _inputs(jnp.float16)
  scales = jnp.linspace(0.5, 1.5, 3 * 64).reshape(3, 64)
  biases = jnp.linspace(-0.2, 0.2, 3 * 64).reshape(3, 64)
  for i in range(3):
    ours = lnk.layer_norm_fwd(x, scales, biases, 1e-12, jnp.float16, row=i)
    np.testing.assert_array_equal(
        ours, lnk.layer_norm_fwd(x, scales[i], biases[i], 1e-12, jnp.float16))


def test_split_layers_layer_norms_read_their_rows_in_place(monkeypatch):
  """split_kernels' layers (the inference layout): with the kernel on, each layer's two
  LayerNorms take the stacks and the layer's index, and the logits are XLA's."""
  from bert_jax.model_config import ModelConfig
  from bert_jax.precision import PrecisionPolicy
  config = ModelConfig.preset('tiny').replace(num_layers=3)
  policy = PrecisionPolicy('fp32')
  params = model.init_params(jax.random.PRNGKey(0), config)
  params = jax.tree.map(lambda a: a + 0.01 * jax.random.normal(jax.random.PRNGKey(4), a.shape),
                        params)                   # LayerNorm params that differ by layer
  ids = jnp.asarray(np.random.default_rng(2).integers(0, config.vocab_size, (2, 16)))
  args = (ids, jnp.zeros_like(ids), jnp.ones_like(ids))
  run = lambda p: model.qa_logits(p, *args, config=config, policy=policy)
  ref = run(params)
  seen = []
  fwd = lnk.layer_norm_fwd
  monkeypatch.setattr(lnk, 'layer_norm_fwd', lambda *a, **k: seen.append(
      (a[1].shape, k.get('row'))) or fwd(*a, **k))
  monkeypatch.setattr(model, '_use_ln_fwd_kernel', lnk.usable_fwd)
  ours = run(model.split_kernels(params))
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  stacks = [(s, r) for s, r in seen if r is not None]
  assert stacks == [((3, 64), i) for i in range(3) for _ in range(2)]
  assert len(seen) == len(stacks) + 1           # and the embeddings' LayerNorm, a [D] vector


def test_forward_kernel_on_a_stack_lowers_without_slicing_it(monkeypatch):
  monkeypatch.setattr(lnk.jax, 'default_backend', lambda: 'gpu')
  x = jax.ShapeDtypeStruct((1, 384, 1024), jnp.float16)
  stack = jax.ShapeDtypeStruct((24, 1024), jnp.float32)
  text = cuda_mlir(lambda x, s, b: lnk.layer_norm_fwd(x, s, b, 1e-12, jnp.float16, row=5),
                   x, stack, stack)
  assert text.count('__gpu$xla.gpu.triton') == 1
  assert 'stablehlo.slice' not in text and 'dynamic_slice' not in text
  assert 'tensor<24x1024xf32>' in text
