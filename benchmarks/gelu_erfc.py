"""BERT's exact GELU with a cheaper erf (a profile_step.py variant, `gelu_erfc`).

Why: the GELU forward is the largest elementwise pass of the training step (3.88 ms of a
64.8 ms step, docs/performance_notes.md, 14) although it only reads and writes one bf16
[B, T, 4096] array per layer. It is bound by arithmetic, not bytes: jax lowers erf through
CHLO into two rational approximations (|x| < 1 and the erfc tail) that XLA evaluates both of
for every element, about 50 multiplies and adds, two divisions and an exp. tanh GELU, which
is cheaper to evaluate, gave +3.6 % (entry 12) but is not HF's GELU.

Here Phi(x) = 1 - erfc(x / sqrt 2) / 2 comes from one Chebyshev-fitted erfc (Numerical Recipes'
erfcc: fractional error below 1.2e-7 over the whole line): one division, nine fused
multiply-adds and one exp. Against float64, its GELU is within 1.5e-6 relative where |GELU|
is above 1e-3, as jax's own is within 1.2e-6; rounded to bf16 the two agree on all but
about 6 in 100,000 inputs (tests/test_profile_step.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# erfc(z) ~ t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), for z >= 0; P's coefficients, low first.
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
         -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def normal_cdf(x):
  """Phi(x) for float32 x."""
  z = jnp.abs(x) * np.float32(1 / np.sqrt(2))
  t = 1.0 / (1.0 + 0.5 * z)
  p = jnp.float32(_ERFC[-1])
  for c in _ERFC[-2::-1]:
    p = p * t + np.float32(c)
  tail = 0.5 * t * jnp.exp(p - z * z)                       # erfc(z) / 2
  return jnp.where(x >= 0, 1.0 - tail, tail)


@jax.custom_vjp
def gelu(h):
  """x Phi(x) in float32, returned in h's dtype; the backward keeps h in its own dtype."""
  x = h.astype(jnp.float32)
  return (x * normal_cdf(x)).astype(h.dtype)


def _fwd(h):
  return gelu(h), h


def _bwd(h, g):
  x = h.astype(jnp.float32)
  pdf = jnp.exp(-0.5 * x * x) * np.float32(1 / np.sqrt(2 * np.pi))
  return ((g.astype(jnp.float32) * (normal_cdf(x) + x * pdf)).astype(h.dtype),)


gelu.defvjp(_fwd, _bwd)
