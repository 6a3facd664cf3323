"""The model's Phi/phi formula (model._normal_cdf_pdf) and benchmarks/gelu_math.py, whose
accuracy check over every bf16 input is what the formula was adopted on."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import model


def test_normal_cdf_and_pdf_match_float64():
  x = np.linspace(-8, 8, 200_001, dtype=np.float32)
  cdf, pdf = jax.jit(model._normal_cdf_pdf)(x)
  x64 = x.astype(np.float64)
  cdf_ref = 0.5 * np.vectorize(math.erfc)(-x64 / math.sqrt(2))
  pdf_ref = np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
  rel = np.abs(np.asarray(cdf, np.float64) - cdf_ref) / cdf_ref
  # float32 rounding of x^2 / 2 grows with x^2 in the tail's exp: 4.8e-6 at -8 (erfcc: 5.6e-6)
  assert np.max(rel) < 6e-6 and np.max(rel[x > -4]) < 1.5e-6
  assert np.max(np.abs(np.asarray(pdf, np.float64) - pdf_ref) / pdf_ref) < 5e-6
  slope = np.asarray(model._gelu_slope(x, cdf, pdf), np.float64)
  assert np.max(np.abs(slope - (cdf_ref + x64 * pdf_ref))) < 1e-6
  assert np.all(np.diff(np.asarray(cdf)) >= 0)              # monotone, as Phi is


@pytest.fixture(scope='module')
def gm(load_script):
  return load_script('gelu_math')


def test_gelu_math_reports_time_and_accuracy_per_variant(gm, tmp_path):
  out = tmp_path / 'gm.jsonl'
  gm.main(['--rows', '16', '--width', '128', '--calls', '1', '--repeats', '1', '--out', str(out),
           '--variants', 'model', 'erfcc', 'nodiv', 'tanh'])
  recs = {(r['variant'], r['pass']): r for r in map(json.loads, out.read_text().splitlines())}
  assert sorted(recs) == sorted((v, p) for v in ('model', 'erfcc', 'nodiv', 'tanh')
                                for p in ('fwd', 'bwd'))
  assert all(r['us'] > 0 and r['tb_per_s'] > 0 for r in recs.values())
  for name in ('model', 'erfcc'):        # exact to bf16 on every bf16 input, float32 near 1e-6
    r = recs[name, 'fwd']
    assert r['gelu_bf16_mismatch'] == 0 and r['slope_bf16_mismatch'] == 0
    assert r['gelu_max_rel_err_f32'] < 2e-6 and r['slope_max_rel_err_f32'] < 1e-4
  # the check can fail: a wrong formula (a probe) and the tanh GELU show as such
  assert recs['nodiv', 'fwd']['gelu_bf16_mismatch'] > 0.01
  assert recs['tanh', 'fwd']['gelu_max_rel_err_f32'] > 1e-3


def test_gelu_math_candidates_train_like_the_model(gm):
  """profile_step's gelu_<candidate> GELUs: the model's values and gradient within 2e-6."""
  x = jnp.linspace(-6, 6, 1001, dtype=jnp.float32)
  ref_y, ref_dx = model._gelu(x), jax.grad(lambda v: jnp.sum(model._gelu(v)))(x)
  for name, cdf_pdf in gm.CANDIDATES.items():
    gelu = gm.custom_gelu(cdf_pdf)
    np.testing.assert_allclose(gelu(x), ref_y, atol=2e-6, err_msg=name)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(gelu(v)))(x), ref_dx, atol=2e-6,
                               err_msg=name)
