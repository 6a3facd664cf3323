"""Multi-head self-attention kernels: an XLA einsum path and JAX's fused attention.

Both take q, k, v shaped [batch, time, heads, head_dim] and a boolean key mask
[batch, time] (True = real token) and agree on right-padded inputs at the real positions
(the fused path gives zeros at padded queries). Packed rows (several
windows a row, bert_jax.packing) take segment_mask on the XLA path and packed_fused_attention
on GPU.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

try:  # cuDNN's packed layout is reachable only through JAX's internal module (jax 0.10, 0.11)
  from jax._src.cudnn import fused_attention_stablehlo as _cudnn
except ImportError:  # pragma: no cover - a JAX without it
  _cudnn = None


def xla_attention(q_BTNH, k_BSNH, v_BSNH, mask_BS, *, precision, dropout_rate=0.0,
                  dropout_rng=None):
  """Einsum attention with float32 softmax; optional prob dropout.

  mask: [B, S] (keys every query may see) or [B, T, S] (per query, e.g. segment_mask)."""
  scale = q_BTNH.shape[-1] ** -0.5
  scores_BNTS = jnp.einsum('btnh,bsnh->bnts', q_BTNH, k_BSNH, precision=precision,
                           preferred_element_type=jnp.float32) * scale
  mask_B1TS = mask_BS[:, None, None, :] if mask_BS.ndim == 2 else mask_BS[:, None]
  scores_BNTS = jnp.where(mask_B1TS, scores_BNTS,
                          jnp.finfo(jnp.float32).min)
  probs_BNTS = jax.nn.softmax(scores_BNTS, axis=-1)
  if dropout_rng is not None and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs_BNTS.shape)
    probs_BNTS = jnp.where(keep, probs_BNTS / (1.0 - dropout_rate), 0.0)
  return jnp.einsum('bnts,bsnh->btnh', probs_BNTS.astype(v_BSNH.dtype), v_BSNH,
                    precision=precision)


def fused_attention(q_BTNH, k_BSNH, v_BSNH, mask_BS, *, implementation=None):
  """jax.nn.dot_product_attention with the padding given as query and key lengths.

  cuDNN refuses a broadcast bias, and lengths are what its kernel wants; so the mask
  must be a prefix (padding at the end). With the query lengths cuDNN skips the padded
  queries' tiles too (a SQuAD window at 384 holds 172 tokens on average), and both of JAX's
  paths return zeros at padded queries: the real positions' outputs are xla_attention's,
  the padded ones are not (training's loss leaves them out, bert_jax.steps.span_loss).
  `implementation=None` lets JAX choose.
  """
  lengths_B = jnp.sum(mask_BS, axis=-1, dtype=jnp.int32)
  return jax.nn.dot_product_attention(
      q_BTNH, k_BSNH, v_BSNH, query_seq_lengths=lengths_B, key_value_seq_lengths=lengths_B,
      implementation=implementation)


def segment_mask(segment_ids_BT):
  """[B, T, S]: query t sees key s where both lie in the same segment (bert_jax.packing)."""
  return segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]


def packed_fused_attention(q_BTNH, k_BSNH, v_BSNH, starts_BM, lengths_BM):
  """cuDNN flash attention over packed rows: each segment (first position starts_BM, length
  lengths_BM, -1 where a row has fewer) attends only to itself. Needs a Hopper GPU and
  cuDNN; bert_jax.packing.Segments gives the arrays."""
  if _cudnn is None:
    raise RuntimeError('this JAX has no jax._src.cudnn.fused_attention_stablehlo: packed rows '
                       "need model.attention='xla' (or a JAX >= 0.10)")
  pad = jnp.full((starts_BM.shape[0], 1), -1, jnp.int32)
  offsets = jnp.concatenate([starts_BM.astype(jnp.int32), pad], axis=1)   # [B, M + 1]
  lengths = lengths_BM.astype(jnp.int32)
  return _cudnn.dot_product_attention(
      q_BTNH, k_BSNH, v_BSNH, q_seqlen=lengths, kv_seqlen=lengths, q_offsets=offsets,
      kv_offsets=offsets, scale=q_BTNH.shape[-1] ** -0.5,
      mask_type=_cudnn.MaskType.PADDING, qkv_layout='BTNH')
