"""bert_jax/qkv_join_kernel.py, the backward pass of model._qkv's fused projection on GPU (the
q/k/v gradients joined with the bias gradient's sums by one Pallas kernel), in Pallas'
interpret mode on CPU: against XLA's join, per device under a mesh, in the model's
projection against autodiff, in a whole train step, and its lowering for CUDA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from bert_jax import layer_norm_kernel as lnk
from bert_jax import mesh as mesh_lib
from bert_jax import model
from bert_jax import qkv_join_kernel as qj
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.settings import MeshSettings
from helpers import assert_same_step, cuda_mlir, train_step_with_and_without


def _grads(dtype, shape=(2, 16, 4, 32)):
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  return [jax.random.normal(k, shape).astype(dtype) for k in keys]


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_join_matches_xla(dtype):
  dq, dk, dv = _grads(dtype)
  assert qj.usable(dq)
  g, db = jax.jit(qj.join)(dq, dk, dv)
  g_ref, db_ref = qj.reference(dq, dk, dv)
  assert g.shape == (32, 384) and g.dtype == dtype and db.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(g_ref, np.float32))
  np.testing.assert_array_equal(np.asarray(g[:, 128:256], np.float32),
                                np.asarray(dk.reshape(32, 128), np.float32))
  np.testing.assert_allclose(db, db_ref, rtol=1e-5, atol=1e-5)


def test_rows_that_do_not_split_are_not_taken():
  assert not qj.usable(jnp.zeros((3, 5, 4, 32)))            # 15 rows, blocks of 16
  assert qj.usable(jnp.zeros((1, 16, 4, 32)))


def test_join_runs_per_device_under_the_data_mesh(monkeypatch):
  if jax.device_count() < 2:
    pytest.skip('needs 2 or more devices (the suite fakes 8 CPU devices)')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=min(4, jax.device_count())))
  grads = [jax.device_put(g, NamedSharding(mesh, P('data'))) for g in _grads(jnp.float32,
                                                                              (4, 16, 4, 32))]
  maps = []
  shard_map = jax.shard_map
  monkeypatch.setattr(jax, 'shard_map', lambda f, **k: maps.append(k) or shard_map(f, **k))
  g, db = jax.jit(mesh_lib.traced_under(mesh, qj.join, 'join'))(*grads)
  g_ref, db_ref = qj.reference(*grads)
  assert len(maps) == 1 and maps[0]['in_specs'][0] == P('data')
  np.testing.assert_array_equal(np.asarray(g), np.asarray(g_ref))
  np.testing.assert_allclose(db, db_ref, rtol=1e-5, atol=1e-5)


def _projection_grads(use_kernel, monkeypatch, precision):
  """Gradients of model._qkv's x, kernel and bias [x, w, b] under the precision policy, with
  its join kernel forced on or off, and the shapes the kernel was built for."""
  calls = []
  monkeypatch.setattr(model, '_use_qkv_join_kernel', lambda x: use_kernel)
  monkeypatch.setattr(qj, '_blocks', lambda *a, f=qj._blocks: calls.append(a[0].shape) or f(*a))
  config = ModelConfig(vocab_size=8, hidden_size=64, num_layers=1, num_heads=4,
                       intermediate_size=128)
  policy = PrecisionPolicy(precision)
  # x and the kernel hold bf16 values, so the float32 policy computes the bf16 one exactly
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 64)).astype(jnp.bfloat16)
  p = {'kernel': (jax.random.normal(jax.random.PRNGKey(1), (64, 192)) * 0.1)
       .astype(jnp.bfloat16).astype(jnp.float32), 'bias': jnp.linspace(-1, 1, 192)}
  probe = [jax.random.normal(jax.random.PRNGKey(i), (2, 16, 4, 16)).astype(jnp.bfloat16)
           for i in (5, 6, 7)]

  def loss(x, p):
    qkv = model._qkv(x.astype(policy.compute_dtype), p, config, policy)
    return sum(jnp.sum(t.astype(jnp.float32) * r) for t, r in zip(qkv, probe))

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(x.astype(jnp.float32), p)
  return [grads[0], grads[1]['kernel'], grads[1]['bias']], calls


def test_model_projection_with_the_kernel_gives_autodiffs_gradients(monkeypatch):
  ours, calls = _projection_grads(True, monkeypatch, 'fp32')
  assert calls == [(32, 64)]
  ref, calls = _projection_grads(False, monkeypatch, 'fp32')
  assert calls == []
  for a, r in zip(ours, ref):
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


def test_bf16_projection_with_the_kernel_is_as_close_to_float32_as_autodiff(monkeypatch):
  """In bf16 the kernel sums the bias gradient in float32, where XLA on CPU sums in bf16:
  its gradients must be within two bf16 steps of the float32 ones and no further off than
  autodiff's."""
  exact, _ = _projection_grads(False, monkeypatch, 'fp32')
  ours, calls = _projection_grads(True, monkeypatch, 'bf16')
  assert calls == [(32, 64)]
  ref, _ = _projection_grads(False, monkeypatch, 'bf16')
  for name, a, r, e in zip(('x', 'kernel', 'bias'), ours, ref, exact):
    a, r, e = (np.asarray(v, np.float32) for v in (a, r, e))
    scale = np.max(np.abs(e))
    assert np.max(np.abs(a - e)) <= 2 * 2 ** -8 * scale, name
    assert np.max(np.abs(a - e)) <= np.max(np.abs(r - e)) * 1.001, name


def test_the_kernel_is_the_models_choice_only_on_gpu_in_16_bits(monkeypatch):
  x = jnp.zeros((32, 384, 1024), jnp.bfloat16)
  if jax.default_backend() == 'cpu':
    assert not model._use_qkv_join_kernel(x)
  monkeypatch.setattr(model.jax, 'default_backend', lambda: 'gpu')
  assert model._use_qkv_join_kernel(x)
  assert model._use_qkv_join_kernel(x.astype(jnp.float16))
  assert not model._use_qkv_join_kernel(x.astype(jnp.float32))
  assert not model._use_qkv_join_kernel(jnp.zeros((3, 5, 1024), jnp.bfloat16))   # 15 rows
  monkeypatch.setattr(lnk, '_triton_available', lambda: False)  # a jax without Pallas Triton
  assert not model._use_qkv_join_kernel(x)


def test_train_step_with_the_kernel_matches_autodiffs_on_a_mesh(monkeypatch):
  """The whole jitted train step (4 devices, 2 accumulated micro-batches in a scan): the
  kernel's step, per device, gives autodiff's loss, gradient norm and updated params."""
  calls = []
  monkeypatch.setattr(qj, '_blocks', lambda *a, f=qj._blocks: calls.append(a[0].shape) or f(*a))
  config, (autodiff, kernel) = train_step_with_and_without(monkeypatch, '_use_qkv_join_kernel',
                                                           qj.usable)
  shards = min(4, jax.device_count())
  # per device (8 windows of 32 a micro-batch over the shards), once a layer
  assert calls == [(8 * 32 // shards, config.hidden_size)] * config.num_layers
  assert_same_step(kernel, autodiff)


def test_block_variants_reach_the_kernel_module(load_script):
  ps = load_script('profile_step')
  try:
    ps.apply_variant('qkv_join+join_rows32+join_warps4')
    assert (qj.ROWS, qj.NUM_WARPS) == (32, 4)
    ps.apply_variant('qkv_autodiff')
    assert not model._use_qkv_join_kernel(jnp.zeros((2, 16, 64), jnp.bfloat16))
  finally:
    ps.apply_variant('base')
  assert (qj.ROWS, qj.NUM_WARPS) == (16, 8)
  assert model._use_qkv_join_kernel is ps.ORIGINALS['_use_qkv_join_kernel']


def test_lowers_to_one_triton_kernel_for_cuda(monkeypatch):
  """On this CPU machine: BERT-Large's shape (seq 384, batch 32) lowers through Pallas'
  Triton path into a single kernel; compiling and timing it needs a GPU."""
  monkeypatch.setattr(lnk.jax, 'default_backend', lambda: 'gpu')
  g = jax.ShapeDtypeStruct((32, 384, 16, 64), jnp.bfloat16)
  text = cuda_mlir(lambda *a: qj.join(*a), g, g, g)
  assert text.count('__gpu$xla.gpu.triton') == 1 and f'num_warps = {qj.NUM_WARPS}' in text
  rows = 32 * 384
  assert f'tensor<{rows}x3072xbf16>' in text and f'tensor<{rows // qj.ROWS}x3072xf32>' in text
