"""Hash dropout (benchmarks/hash_dropout.py, profile_step's hashdrop): rate, scale,
independence, gradient, sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals
from jax.sharding import NamedSharding, PartitionSpec as P


@pytest.fixture(scope='module')
def dropout(load_script):
  return load_script('hash_dropout')


def _sigma(p, n):
  return (p * (1 - p) / n) ** 0.5


@pytest.mark.parametrize('rate', [0.1, 0.25, 0.5, 0.001, 0.9])
def test_rate_and_unbiased_scale(dropout, rate):
  x = jnp.ones((64, 96, 128), jnp.float32)
  y = np.asarray(dropout.dropout(x, rate, jax.random.PRNGKey(3)))
  dropped = (y == 0).mean()
  assert abs(dropped - rate) < 5 * _sigma(rate, y.size)
  np.testing.assert_allclose(np.unique(y[y != 0]), [1 / (1 - rate)], rtol=1e-6)


def test_no_pattern_along_any_axis_and_keys_independent(dropout):
  rate, shape = 0.1, (32, 128, 256)
  x = jnp.ones(shape, jnp.float32)
  drop = np.asarray(dropout.dropout(x, rate, jax.random.PRNGKey(0))) == 0
  other = np.asarray(dropout.dropout(x, rate, jax.random.PRNGKey(1))) == 0
  n = drop.size
  # neighbours along each axis, and the same element under another key: p^2 both dropped
  for a, b in [(drop[1:], drop[:-1]), (drop[:, 1:], drop[:, :-1]),
               (drop[..., 1:], drop[..., :-1]), (drop, other)]:
    both = (a & b).mean()
    assert abs(both - rate ** 2) < 5 * _sigma(rate ** 2, a.size), both
  # the drop rate does not depend on the index modulo small powers of two (chi-square)
  flat = drop.reshape(-1)
  for m in (4, 64, 1024):
    counts = flat.reshape(-1, m).sum(0)
    expected = n / m * rate
    chi2 = (((counts - expected) ** 2) / (expected * (1 - rate))).sum()
    assert chi2 < m + 6 * (2 * m) ** 0.5, (m, chi2)


def test_deterministic_and_off_without_key_or_rate(dropout):
  x = jnp.arange(4 * 8 * 16, dtype=jnp.float32).reshape(4, 8, 16)
  k = jax.random.PRNGKey(5)
  np.testing.assert_array_equal(dropout.dropout(x, 0.3, k), dropout.dropout(x, 0.3, k))
  assert dropout.dropout(x, 0.3, None) is x
  assert dropout.dropout(x, 0.0, k) is x
  with pytest.raises(ValueError, match='hidden_dropout'):
    dropout.dropout(x, 1.0, k)


def test_gradient_is_the_same_mask_and_nothing_big_is_saved(dropout, capsys):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 32)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
  k = jax.random.PRNGKey(7)
  f = lambda x: jnp.sum(dropout.dropout(x, 0.2, k) * w)
  keep = np.asarray(dropout.keep_mask(dropout.seed_of(k), x.shape, 0.2))
  np.testing.assert_allclose(jax.grad(f)(x), np.where(keep, np.asarray(w) / 0.8, 0), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(dropout.dropout(x, 0.2, k)) != 0, keep)
  print_saved_residuals(lambda x: dropout.dropout(x, 0.2, k), x)
  saved = capsys.readouterr().out
  assert len(saved.strip().splitlines()) == 1 and saved.startswith('u32[2]'), saved  # seeds only


def test_same_mask_on_eight_devices(dropout):
  mesh = jax.make_mesh((8,), ('data',))
  x = jnp.ones((16, 24, 32), jnp.bfloat16)
  k = jax.random.PRNGKey(11)
  f = jax.jit(lambda x: dropout.dropout(x, 0.1, k))
  sharded = f(jax.device_put(x, NamedSharding(mesh, P('data'))))
  np.testing.assert_array_equal(np.asarray(sharded), np.asarray(f(x)))
  assert sharded.dtype == jnp.bfloat16
