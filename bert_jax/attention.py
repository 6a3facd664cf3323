"""Multi-head self-attention kernels: an XLA einsum path and JAX's fused attention.

Both take q, k, v shaped [batch, time, heads, head_dim] and a boolean key mask
[batch, time] (True = real token) and agree on right-padded inputs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def xla_attention(q_BTNH, k_BSNH, v_BSNH, mask_BS, *, precision, dropout_rate=0.0,
                  dropout_rng=None):
  """Einsum attention with float32 softmax; masks any key pattern; optional prob dropout."""
  scale = q_BTNH.shape[-1] ** -0.5
  scores_BNTS = jnp.einsum('btnh,bsnh->bnts', q_BTNH, k_BSNH, precision=precision,
                           preferred_element_type=jnp.float32) * scale
  scores_BNTS = jnp.where(mask_BS[:, None, None, :], scores_BNTS,
                          jnp.finfo(jnp.float32).min)
  probs_BNTS = jax.nn.softmax(scores_BNTS, axis=-1)
  if dropout_rng is not None and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs_BNTS.shape)
    probs_BNTS = jnp.where(keep, probs_BNTS / (1.0 - dropout_rate), 0.0)
  return jnp.einsum('bnts,bsnh->btnh', probs_BNTS.astype(v_BSNH.dtype), v_BSNH,
                    precision=precision)


def fused_attention(q_BTNH, k_BSNH, v_BSNH, mask_BS, *, implementation=None):
  """jax.nn.dot_product_attention with the padding given as key lengths.

  cuDNN refuses a broadcast bias, and lengths are what its kernel wants; so the mask
  must be a prefix (padding at the end). `implementation=None` lets JAX choose.
  """
  lengths_B = jnp.sum(mask_BS, axis=-1, dtype=jnp.int32)
  return jax.nn.dot_product_attention(
      q_BTNH, k_BSNH, v_BSNH, key_value_seq_lengths=lengths_B,
      implementation=implementation)
