"""benchmarks/qkv_join_pallas.py, profile_step's qkv_join variant (the q/k/v gradients joined
with the bias gradient's sums by one Pallas kernel), in Pallas' interpret mode on CPU: against
XLA's join, per device under a mesh, in the projection's backward, and its lowering for CUDA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from bert_jax import layer_norm_kernel as lnk
from bert_jax import mesh as mesh_lib
from bert_jax.settings import MeshSettings
from helpers import cuda_mlir


@pytest.fixture(scope='module')
def qj(load_script):
  return load_script('qkv_join_pallas')


def _grads(dtype, shape=(2, 16, 4, 32)):
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  return [jax.random.normal(k, shape).astype(dtype) for k in keys]


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_join_matches_xla(qj, dtype):
  dq, dk, dv = _grads(dtype)
  assert qj.usable(dq)
  g, db = jax.jit(qj.join)(dq, dk, dv)
  g_ref, db_ref = qj.reference(dq, dk, dv)
  assert g.shape == (32, 384) and g.dtype == dtype and db.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(g_ref, np.float32))
  np.testing.assert_array_equal(np.asarray(g[:, 128:256], np.float32),
                                np.asarray(dk.reshape(32, 128), np.float32))
  np.testing.assert_allclose(db, db_ref, rtol=1e-5, atol=1e-5)


def test_rows_that_do_not_split_are_not_taken(qj):
  assert not qj.usable(jnp.zeros((3, 5, 4, 32)))            # 15 rows, blocks of 16
  assert qj.usable(jnp.zeros((1, 16, 4, 32)))


def test_join_runs_per_device_under_the_data_mesh(qj, monkeypatch):
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


def test_qkv_join_variant_takes_the_kernel_and_gives_the_projections_gradients(qj, load_script,
                                                                               monkeypatch):
  ps = load_script('profile_step')
  calls = []
  monkeypatch.setattr(ps.qkv_join_pallas, '_blocks',
                      lambda *a, f=ps.qkv_join_pallas._blocks: calls.append(a[0].shape) or f(*a))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 64))
  w = jax.random.normal(jax.random.PRNGKey(1), (64, 192)) * 0.1
  b = jnp.linspace(-1, 1, 192)
  probe = [jax.random.normal(jax.random.PRNGKey(i), (2, 16, 4, 16)) for i in (5, 6, 7)]

  def loss(proj, x, w, b):
    q, k, v = proj(x, w, b, 4, jax.lax.Precision.HIGHEST)
    return sum(jnp.sum(t * p) for t, p in zip((q, k, v), probe))

  ours = jax.grad(lambda *a: loss(ps._qkv_proj_join, *a), argnums=(0, 1, 2))(x, w, b)
  ref = jax.grad(lambda *a: loss(ps._qkv_proj_math, *a), argnums=(0, 1, 2))(x, w, b)
  assert calls == [(32, 64)]
  for a, r in zip(ours, ref):
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


def test_block_variants_reach_the_kernel_module(load_script):
  ps = load_script('profile_step')
  try:
    ps.apply_variant('qkv_join+join_rows32+join_warps4')
    assert (ps.qkv_join_pallas.ROWS, ps.qkv_join_pallas.NUM_WARPS) == (32, 4)
  finally:
    ps.apply_variant('base')
  assert (ps.qkv_join_pallas.ROWS, ps.qkv_join_pallas.NUM_WARPS) == (16, 8)


def test_lowers_to_one_triton_kernel_for_cuda(qj, monkeypatch):
  """On this CPU machine: BERT-Large's shape (seq 384, batch 32) lowers through Pallas'
  Triton path into a single kernel; compiling and timing it needs a GPU."""
  monkeypatch.setattr(lnk.jax, 'default_backend', lambda: 'gpu')
  g = jax.ShapeDtypeStruct((32, 384, 16, 64), jnp.bfloat16)
  text = cuda_mlir(lambda *a: qj.join(*a), g, g, g)
  assert text.count('__gpu$xla.gpu.triton') == 1 and f'num_warps = {qj.NUM_WARPS}' in text
  rows = 32 * 384
  assert f'tensor<{rows}x3072xbf16>' in text and f'tensor<{rows // qj.ROWS}x3072xf32>' in text
