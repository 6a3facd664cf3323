"""What the GELU's arithmetic costs: XLA's fusions of several formulas, timed alone.

  python benchmarks/gelu_math.py --out gpu_out/gelu_math.jsonl

In BERT-Large's train step (seq 384, batch 32, H200) the GELU forward fusion took about
110 µs a layer and the backward (with the FFN-in bias gradient) about 148 µs before entry 44
of docs/performance_notes.md, for 200 and 300 MB of traffic: 1.8 and 2.0 TB/s, under half
the card's bandwidth, so they looked bound by arithmetic, not bytes (entries 32, 44; with
the formula adopted there, 93 and 125 µs). Each variant here is one
jitted function on [rows, width] bf16 (the FFN's shape by default): the forward returns
GELU(h) in bf16; the backward returns g GELU'(h) in bf16 and its column sums in float32, as the
step's fusion does. Variants:

  copy        a float32 multiply only: the pass's floor (bytes, no arithmetic)
  model       the model's GELU as it is (model._gelu: since entry 44, erfc(z) = t exp(-z^2) Q(t)
              with t as an rsqrt square; 'fit_rsqrt' in the gelu1 call's records)
  erfcc       the model's GELU before entry 44: Numerical Recipes' erfcc,
              erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2) by an IEEE divide, and a
              second exp for phi(x) in the backward ('model' in the gelu1 call's records)
  nodiv, noexp  erfcc with its divide, or its exp(s), replaced by a multiply: wrong values,
              there only to show what each costs
  tanh        jax.nn.gelu(approximate=True) (not BERT's GELU; for scale)
  rsqrt       erfcc with t as rsqrt(1 + z/2)^2 (no IEEE divide)
  fit         the model's erfc(z) = t exp(-z^2) Q(t) (model._ERFC_Q, fitted for relative
              error; Phi(x) and phi(x) share one exp) with t by the IEEE divide

One JSON line a variant and pass: microseconds a call (median of --repeats timings of
--calls calls), the bandwidth the bytes imply, and the variant's accuracy against float64 over
every finite bf16 input (see accuracy()). On CPU it runs too (a check, not a timing).
"""
import argparse
import functools
import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_jax import model, records  # noqa: E402
from gelu_sweep import timed_us  # noqa: E402  (the same timing as the Pallas tile sweep)

_SQRT_HALF, _INV_SQRT_2PI = model._SQRT_HALF, model._INV_SQRT_2PI


# Numerical Recipes' erfcc: erfc(z) ~ t exp(-z^2 + P(t)); P's coefficients, low first
# (the model's Phi before entry 44).
_NR_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
            -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def _t(z, div):
  return 1.0 / (1.0 + 0.5 * z) if div else jnp.square(jax.lax.rsqrt(1.0 + 0.5 * z))


def _fit_cdf_pdf(x):
  """model._normal_cdf_pdf with t by an IEEE divide."""
  z = jnp.abs(x) * _SQRT_HALF
  t = _t(z, True)
  q = jnp.float32(model._ERFC_Q[-1])
  for c in model._ERFC_Q[-2::-1]:
    q = q * t + np.float32(c)
  e = jnp.exp(-z * z)
  tail = 0.5 * t * q * e
  return jnp.where(x >= 0, 1.0 - tail, tail), e * _INV_SQRT_2PI


def _erfcc_cdf(x, *, div=True, exp=True, rsqrt=False):
  """Phi(x) from erfcc; with its division or its exp swapped for a multiply (cost probes),
  or its divide for an rsqrt square (a candidate)."""
  z = jnp.abs(x) * _SQRT_HALF
  t = _t(z, not rsqrt) if div else 1.0 - 0.25 * z
  p = jnp.float32(_NR_ERFC[-1])
  for c in _NR_ERFC[-2::-1]:
    p = p * t + np.float32(c)
  tail = 0.5 * t * (jnp.exp(p - z * z) if exp else (p - z * z))
  return jnp.where(x >= 0, 1.0 - tail, tail)


def _probe_slope(x, cdf, *, exp=True):
  pdf = (jnp.exp(-0.5 * x * x) if exp else 1.0 - 0.5 * x * x) * _INV_SQRT_2PI
  return cdf + x * pdf


def _erfcc_cdf_pdf(x, *, rsqrt=False):
  """erfcc's Phi(x) and phi(x) from its own exp (the model's backward before entry 44)."""
  return _erfcc_cdf(x, rsqrt=rsqrt), jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI


CANDIDATES = {   # name: fn(x) -> (Phi(x), phi(x)) in float32; profile_step's gelu_<name>
    'erfcc': _erfcc_cdf_pdf,
    'rsqrt': functools.partial(_erfcc_cdf_pdf, rsqrt=True),
    'fit': _fit_cdf_pdf,
}


def custom_gelu(cdf_pdf):
  """A GELU like model._gelu before entry 81 of docs/performance_notes.md (float32 math, h's
  dtype out, the pre-activation kept in its own dtype, Phi(x) recomputed behind a barrier in
  the backward) on another Phi/phi formula: profile_step's gelu_<candidate> variants, and
  gelu_input on the model's own formula."""
  @jax.custom_vjp
  def gelu(h):
    x = h.astype(jnp.float32)
    return (x * cdf_pdf(x)[0]).astype(h.dtype)

  def bwd(h, g):
    x = jax.lax.optimization_barrier(h).astype(jnp.float32)
    cdf, pdf = cdf_pdf(x)
    return ((g.astype(jnp.float32) * (cdf + x * pdf)).astype(h.dtype),)

  gelu.defvjp(lambda h: (gelu(h), h), bwd)
  return gelu


def _fwd(cdf):
  def fn(h):
    x = h.astype(jnp.float32)
    return (x * cdf(x)).astype(h.dtype)
  return fn


def _bwd(slope):
  def fn(h, g):
    x = h.astype(jnp.float32)
    dh = (g.astype(jnp.float32) * slope(x)).astype(h.dtype)
    return dh, jnp.sum(dh.astype(jnp.float32), axis=0)
  return fn


def variants():
  """{name: (forward fn(h), backward fn(h, g))}."""
  out = {
      'copy': (_fwd(lambda x: np.float32(1.5)), _bwd(lambda x: x)),
      'model': (model._gelu, _bwd(lambda x: model._gelu_slope(x, *model._normal_cdf_pdf(x)))),
      'nodiv': (_fwd(lambda x: _erfcc_cdf(x, div=False)),
                _bwd(lambda x: _probe_slope(x, _erfcc_cdf(x, div=False)))),
      'noexp': (_fwd(lambda x: _erfcc_cdf(x, exp=False)),
                _bwd(lambda x: _probe_slope(x, _erfcc_cdf(x, exp=False), exp=False))),
      'tanh': (lambda h: jax.nn.gelu(h.astype(jnp.float32), approximate=True).astype(h.dtype),
               _tanh_bwd),
  }
  for name, cdf_pdf in CANDIDATES.items():
    out[name] = (_fwd(lambda x, f=cdf_pdf: f(x)[0]), _bwd(lambda x, f=cdf_pdf: _slope(f, x)))
  return out


def _slope(cdf_pdf, x):
  cdf, pdf = cdf_pdf(x)
  return cdf + x * pdf


def _tanh_bwd(h, g):
  x = h.astype(jnp.float32)
  dh = jax.vjp(lambda v: jax.nn.gelu(v, approximate=True), x)[1](g.astype(jnp.float32))[0]
  dh = dh.astype(h.dtype)
  return dh, jnp.sum(dh.astype(jnp.float32), axis=0)


def accuracy(fwd, bwd):
  """Against float64, over every finite bf16 input where the exact value's magnitude is over
  1e-3: the largest relative error of GELU(h) and of GELU'(h) computed in float32, and the
  share of bf16 results (g = 1 for the slope) that differ from the exact value rounded to bf16."""
  h = jnp.asarray(np.arange(1 << 16, dtype=np.uint16).view(jnp.bfloat16))
  h = h[jnp.isfinite(h)]
  x = np.asarray(h.astype(jnp.float32), np.float64)
  erfc = np.vectorize(math.erfc)(-x / math.sqrt(2))
  exact = {'gelu': 0.5 * x * erfc,
           'slope': 0.5 * erfc + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)}
  ours_f32 = {'gelu': jax.jit(fwd)(h.astype(jnp.float32)),
              'slope': jax.jit(bwd)(h.astype(jnp.float32), jnp.ones(h.shape, jnp.float32))[0]}
  ours_bf16 = {'gelu': jax.jit(fwd)(h), 'slope': jax.jit(bwd)(h, jnp.ones_like(h))[0]}
  out = {}
  for k, ref in exact.items():
    big = np.abs(ref) > 1e-3
    f32 = np.asarray(ours_f32[k], np.float64)
    rounded = np.asarray(jnp.asarray(ref, jnp.float32).astype(jnp.bfloat16))
    out[f'{k}_max_rel_err_f32'] = float(np.max(np.abs(f32 - ref)[big] / np.abs(ref[big])))
    out[f'{k}_bf16_mismatch'] = float(np.mean(np.asarray(ours_bf16[k])[big] != rounded[big]))
  return out


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument('--rows', type=int, default=12288)
  p.add_argument('--width', type=int, default=4096)
  p.add_argument('--calls', type=int, default=50)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--variants', nargs='+', default=None)
  p.add_argument('--out', required=True)
  args = p.parse_args(argv)
  n, f = args.rows, args.width
  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.normal(scale=1.5, size=(n, f)), jnp.bfloat16)
  g = jnp.asarray(rng.normal(size=(n, f)), jnp.bfloat16)
  nbytes = {'fwd': 2 * n * f * 2, 'bwd': 3 * n * f * 2}
  table = variants()
  for name in args.variants or list(table):
    fwd, bwd = table[name]
    acc = accuracy(fwd, bwd)
    for pass_, fn, fn_args in (('fwd', fwd, (h,)), ('bwd', bwd, (h, g))):
      us = timed_us(jax.jit(fn), fn_args, args.calls, args.repeats)
      rec = records.append(args.out, {'tool': 'gelu_math', 'rows': n, 'width': f, 'variant': name,
                                      'pass': pass_, 'us': us, **acc,
                                      'tb_per_s': nbytes[pass_] / us / 1e6})
      print(json.dumps(rec), flush=True)


if __name__ == '__main__':
  main()
