"""BERT encoder and SQuAD span head as pure functions over an explicit params pytree.

Params (all float32):
  embeddings: word [V, D], position [P, D], token_type [T, D], ln {scale, bias} [D]
  layers: one dict of [L, ...] arrays (stack_layers; the train state holds them so), a
    list of L dicts (as weight import builds them) or, for unrolled inference, the stack
    without its matmul kernels beside a list of each layer's kernels (split_kernels), each
    qkv      {kernel [D, 3D], bias [3D]}   fused query|key|value, heads major inside each
    attn_out {kernel [D, D],  bias [D]}
    attn_ln  {scale [D], bias [D]}
    ffn_in   {kernel [D, F],  bias [F]}
    ffn_out  {kernel [F, D],  bias [D]}
    ffn_ln   {scale [D], bias [D]}
  qa: {kernel [D, 2], bias [2]}  start and end logits

Post-LayerNorm, exact (erf) GELU (or its tanh form: ModelConfig.activation), dropout after
the embeddings, the attention output and the feed-forward output (plus attention-probability
dropout on the 'xla' path).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax import attention as attn
from bert_jax import layer_norm_kernel
from bert_jax import qkv_join_kernel
from bert_jax.model_config import ModelConfig
from bert_jax.packing import Segments
from bert_jax.precision import PrecisionPolicy

Params = dict[str, Any]


@functools.partial(jax.jit, static_argnums=1)
def init_params(rng: jax.Array, config: ModelConfig) -> Params:
  """Random float32 parameters: truncated normal(initializer_range) kernels, zero biases.
  Jitted: one program instead of a compile per weight shape (a tiny model's init on 2 CPU
  cores 3.9 -> 2.8 s); the values are those of the op-by-op function to float32 rounding."""
  d, f = config.hidden_size, config.intermediate_size
  keys = iter(jax.random.split(rng, 4 + 4 * config.num_layers))

  def normal(shape):
    return config.initializer_range * jax.random.truncated_normal(
        next(keys), -2.0, 2.0, shape, jnp.float32)

  def dense(n_in, n_out):
    return {'kernel': normal((n_in, n_out)), 'bias': jnp.zeros((n_out,), jnp.float32)}

  def layer_norm():
    return {'scale': jnp.ones((d,), jnp.float32), 'bias': jnp.zeros((d,), jnp.float32)}

  embeddings = {
      'word': normal((config.vocab_size, d)),
      'position': normal((config.max_position_embeddings, d)),
      'token_type': normal((config.type_vocab_size, d)),
      'ln': layer_norm(),
  }
  layers = [{
      'qkv': dense(d, 3 * d), 'attn_out': dense(d, d), 'attn_ln': layer_norm(),
      'ffn_in': dense(d, f), 'ffn_out': dense(f, d), 'ffn_ln': layer_norm(),
  } for _ in range(config.num_layers)]
  return {'embeddings': embeddings, 'layers': layers, 'qa': init_qa_head(next(keys), config)}


def init_qa_head(rng: jax.Array, config: ModelConfig) -> Params:
  """A fresh span head: kernel [D, 2] ~ truncated normal(initializer_range), zero bias."""
  kernel = config.initializer_range * jax.random.truncated_normal(
      rng, -2.0, 2.0, (config.hidden_size, 2), jnp.float32)
  return {'kernel': kernel, 'bias': jnp.zeros((2,), jnp.float32)}


def _layer_norm(x, p, eps, dtype):
  """LayerNorm over the last axis in float32, returned in dtype.

  A custom VJP saves the input in its own dtype and two float32 numbers per row; autodiff
  kept float32 [B, T, D] intermediates for the backward pass (docs/performance_notes.md, 14).
  On GPU the backward is one Pallas kernel where the shape suits it (layer_norm_kernel.py;
  entry 20), else XLA's. Gradients agree with autodiff's within float32 rounding (bf16
  input: one bf16 step). Where no gradient is taken (inference), the forward on GPU is one
  Pallas kernel too (entry 56). p['rows'], where encode sets it for split_kernels' layers, is
  (the stack of LayerNorm params, this layer's index): the kernel reads its row in place.
  """
  if 'rows' in p and _use_ln_fwd_kernel(x):
    stack, row = p['rows']
    return layer_norm_kernel.layer_norm_fwd(x, stack['scale'], stack['bias'], eps, dtype,
                                            row=row)
  return _ln(x, p['scale'], p['bias'], eps, dtype)


def _ln_stats(x32, eps):
  """Row mean and 1 / sqrt(var + eps) of float32 x from one pass: var = E[x^2] - E[x]^2 (flax's
  use_fast_variance), so XLA takes both sums in the fusion that forms x (the residual add and
  dropout) instead of reading x again for E[(x - mean)^2] (one pass of 48 a BERT-Large step
  fewer, 0.34 ms on an H200; docs/performance_notes.md, 50). The subtraction costs precision
  only where a row's |mean| is far above its spread: var's error is about 2^-24 (mean / std)^2
  relative, 6e-4 at a ratio of 100 (tests). Inputs here are a LayerNorm output plus a
  sublayer's output, or the embeddings' sum: ratios near 1."""
  mean = jnp.mean(x32, axis=-1, keepdims=True)
  var = jnp.maximum(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
  return mean, jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _ln(x, scale, bias, eps, dtype):
  # no gradient taken (inference): on GPU one Pallas kernel, not XLA's two or three (entry 56)
  if _use_ln_fwd_kernel(x):
    return layer_norm_kernel.layer_norm_fwd(x, scale, bias, eps, dtype)
  return _ln_fwd(x, scale, bias, eps, dtype)[0]


def _ln_fwd(x, scale, bias, eps, dtype):
  x32 = x.astype(jnp.float32)
  mean, rstd = _ln_stats(x32, eps)
  y = ((x32 - mean) * rstd * scale + bias).astype(dtype)
  return y, (x, mean, rstd, scale)


def _use_ln_kernel(x) -> bool:
  return jax.default_backend() == 'gpu' and layer_norm_kernel.usable(x)


def _use_ln_fwd_kernel(x) -> bool:
  return jax.default_backend() == 'gpu' and layer_norm_kernel.usable_fwd(x)


def _ln_bwd(eps, dtype, res, g):
  x, mean, rstd, scale = res
  if _use_ln_kernel(x):
    dx, dscale, dbias = layer_norm_kernel.layer_norm_bwd(x, g, mean, rstd, scale)
    return dx, dscale.astype(scale.dtype), dbias.astype(scale.dtype)
  return _ln_bwd_xla(eps, dtype, res, g)


def _ln_bwd_xla(eps, dtype, res, g):
  x, mean, rstd, scale = res
  dx, dscale, dbias = layer_norm_kernel.grads(x.astype(jnp.float32), g.astype(jnp.float32),
                                              mean, rstd, scale)
  return (dx.astype(x.dtype), dscale.reshape(scale.shape).astype(scale.dtype),
          dbias.reshape(scale.shape).astype(scale.dtype))


_ln.defvjp(_ln_fwd, _ln_bwd)


def _dense(x, p, policy: PrecisionPolicy):
  dtype = policy.compute_dtype
  y = jnp.einsum('...d,de->...e', x, p['kernel'].astype(dtype),
                 precision=policy.matmul_precision)
  return y + p['bias'].astype(dtype)


def _dropout(x, rate, rng):
  """Inverted dropout; where it can, from one random byte per element.

  One 32-bit draw feeds four elements, a quarter of the PRNG work of one float draw
  per element. An element is dropped when its byte is below q = round(256 * rate), so
  the rate becomes q / 256 (0.1 -> 0.1016). Where that is more than 2 % off the asked
  rate, or the last axis does not split in fours, a float draw per element is used.
  Kept values are scaled by the exact inverse keep probability.
  """
  if rng is None or rate == 0.0:
    return x
  q = round(256 * rate)
  if q > 0 and abs(q / 256 - rate) <= 0.02 * rate and x.shape[-1] % 4 == 0:
    words = jax.random.bits(rng, (*x.shape[:-1], x.shape[-1] // 4), jnp.uint32)
    keep = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(x.shape) >= q
    rate = q / 256
  else:
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - rate), x.dtype), jnp.zeros_like(x))


def _rng(rng, *path):
  if rng is None:
    return None
  for index in path:
    rng = jax.random.fold_in(rng, index)
  return rng


def _cudnn_suits(dtype) -> bool:
  # JAX's own choice (implementation=None) took its XLA path for BERT-Large on an H200:
  # 353 seq/s against 446 with cuDNN (docs/performance_notes.md). Pick cuDNN ourselves.
  return jax.default_backend() == 'gpu' and dtype in (jnp.bfloat16, jnp.float16)


def _qkv(x_BTD, p, config, policy):
  """Queries, keys and values [B, T, N, H] from one fused [D, 3D] projection.

  On GPU in bf16 or fp16, where the shape suits it, a custom VJP joins the three gradients
  into the projection's [B T, 3D] gradient, with the bias gradient's column sums, in one
  Pallas kernel (qkv_join_kernel.py): the train step 2.0 % faster than autodiff's join at
  seq 384 on an H200 (docs/performance_notes.md, 83 and 84). Elsewhere autodiff's. The forward
  pass is the same arithmetic either way."""
  dtype = policy.compute_dtype
  args = (x_BTD, p['kernel'].astype(dtype), p['bias'].astype(dtype), config.num_heads,
          policy.matmul_precision)
  return (_qkv_joined if _use_qkv_join_kernel(x_BTD) else _qkv_math)(*args)


def _qkv_math(x_BTD, w_DE, b_E, num_heads, precision):
  qkv = jnp.einsum('...d,de->...e', x_BTD, w_DE, precision=precision) + b_E
  qkv = qkv.reshape(*x_BTD.shape[:2], 3, num_heads, -1)
  return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]


def _use_qkv_join_kernel(x_BTD) -> bool:
  # q, k, v and so their gradients have x's [B T] rows of width D and x's compute dtype
  return (jax.default_backend() == 'gpu' and x_BTD.dtype in (jnp.bfloat16, jnp.float16)
          and qkv_join_kernel.usable(x_BTD))


_qkv_joined = jax.custom_vjp(_qkv_math, nondiff_argnums=(3, 4))


def _qkv_joined_bwd(num_heads, precision, res, grads):
  x_BTD, w_DE = res
  g_NE, db_E = qkv_join_kernel.join(*grads)                # N = B T rows, E = 3D
  x_ND = x_BTD.reshape(-1, x_BTD.shape[-1])
  dx_ND = jnp.einsum('ne,de->nd', g_NE, w_DE, precision=precision)
  dw_DE = jnp.einsum('nd,ne->de', x_ND, g_NE, precision=precision)
  return dx_ND.reshape(x_BTD.shape), dw_DE, db_E.astype(w_DE.dtype)


_qkv_joined.defvjp(lambda x, w, b, n, prec: (_qkv_math(x, w, b, n, prec), (x, w)),
                   _qkv_joined_bwd)


# erfc(z) ~ t exp(-z^2) Q(t), t = 1 / (1 + z / 2), z >= 0: the form of Numerical Recipes' erfcc
# with the polynomial outside the exp, Q of degree 9 fitted for relative error (least squares
# reweighted toward minimax; 9.9e-8 in float64 over z in [0, 9.5]); Q's coefficients, low first.
_ERFC_Q = (0.28209324, 0.28216551, 0.24560293, 0.18711313, 0.03038243, 0.14915129,
           -0.30510589, 0.12826691, 0.01546225, -0.0151319)
_SQRT_HALF = np.float32(1 / np.sqrt(2))
_INV_SQRT_2PI = np.float32(1 / np.sqrt(2 * np.pi))


def _normal_cdf_pdf(x):
  """Phi(x) and phi(x) for float32 x, sharing one exp: with z = |x| / sqrt 2, exp(-z^2) is
  both erfc's factor and sqrt(2 pi) phi(x). t comes as an rsqrt squared, not an IEEE divide.

  The GELU passes are bound by this arithmetic more than by their bytes. Against Numerical
  Recipes' fit (exp(-z^2 + P(t)), a divide, and a second exp for phi) BERT-Large's batch-32
  train step ran +1.4 % on an H200, its GELU kernels 0.9 ms a step shorter
  (docs/performance_notes.md, 44). Within 8.4e-7 of float64 where |GELU| > 1e-3, and the same
  bf16 results as the float64 GELU rounded to bf16, on every bf16 input
  (benchmarks/gelu_math.py; on the H200, where the rsqrt is approximate, and on CPU)."""
  z = jnp.abs(x) * _SQRT_HALF
  t = jnp.square(jax.lax.rsqrt(1.0 + 0.5 * z))
  q = jnp.float32(_ERFC_Q[-1])
  for c in _ERFC_Q[-2::-1]:
    q = q * t + np.float32(c)
  e = jnp.exp(-z * z)
  tail = 0.5 * t * q * e                                    # erfc(z) / 2
  return jnp.where(x >= 0, 1.0 - tail, tail), e * _INV_SQRT_2PI


def _normal_cdf(x):
  """Phi(x) for float32 x (see _normal_cdf_pdf)."""
  return _normal_cdf_pdf(x)[0]


@jax.custom_vjp
def _gelu(h):
  """BERT's exact (erf) GELU, x Phi(x), computed in float32, returned in h's dtype.

  Within 1.5e-6 (relative, where |GELU| > 1e-3) of the float64 value, as jax.nn.gelu's erf
  is within 1.2e-6 (tests). A custom VJP keeps the derivative, computed in float32 where the
  forward pass has Phi(x) and phi(x) at hand, in h's dtype for the backward pass, which then
  only multiplies: no erfc recomputed there (autodiff kept a float32 copy of h). Under bf16
  that is one more bf16 rounding of the gradient (tests: within two bf16 steps of the
  derivative recomputed in float32; the same bits under float32). On an H200 the step ran
  +2.0 % (docs/performance_notes.md, 81).
  """
  x = h.astype(jnp.float32)
  return (x * _normal_cdf(x)).astype(h.dtype)


def _gelu_slope(x, cdf, pdf):
  """d/dx of x Phi(x) for float32 x, given Phi(x) and phi(x)."""
  return cdf + x * pdf


def _gelu_and_slope(h):
  """(GELU(h), its derivative), both in h's dtype, from one float32 Phi(x) and phi(x)."""
  x = h.astype(jnp.float32)
  cdf, pdf = _normal_cdf_pdf(x)
  return (x * cdf).astype(h.dtype), _gelu_slope(x, cdf, pdf).astype(h.dtype)


def _gelu_fwd(h):
  # The barrier keeps the slope as computed here, in h's dtype: without it XLA wrote a
  # float32 intermediate [B, T, F] and finished the slope in the backward pass (entry 81).
  return jax.lax.optimization_barrier(_gelu_and_slope(h))


def _gelu_bwd(slope, g):
  return ((g.astype(jnp.float32) * slope.astype(jnp.float32)).astype(slope.dtype),)


_gelu.defvjp(_gelu_fwd, _gelu_bwd)

_TANH_GELU_C = float(np.sqrt(2 / np.pi))
_TANH_GELU_A = 0.044715


@jax.custom_vjp
def _gelu_tanh(h):
  """The tanh GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in h's own dtype.

  Written in exactly the form XLA's GPU gemm rewriter matches (x * (0.5 * (1 + tanh(c * (x +
  a * (x * (x * x))))))) on the output of a matmul with its bias, each step used once, so that
  on GPU the FFN-in matmul applies it in its cuBLASLt epilogue (in float32 there) instead of a
  pass of its own. The custom VJP keeps that forward intact under autodiff (which would reuse
  its intermediates and break the match); training then keeps the pre-activation as the
  matmul's second (aux) output, and the derivative is taken in float32. Where no such fusion
  happens (CPU, a matmul off cuBLASLt) XLA computes the same steps in h's dtype."""
  cdf = 0.5 * (1.0 + jnp.tanh(_TANH_GELU_C * (h + _TANH_GELU_A * (h * (h * h)))))
  return h * cdf


def _gelu_tanh_bwd(h, g):
  x = h.astype(jnp.float32)
  t = jnp.tanh(_TANH_GELU_C * (x + _TANH_GELU_A * x * x * x))
  slope = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _TANH_GELU_C * (
      1.0 + 3 * _TANH_GELU_A * x * x)
  return ((g.astype(jnp.float32) * slope).astype(h.dtype),)


_gelu_tanh.defvjp(lambda h: (_gelu_tanh(h), h), _gelu_tanh_bwd)


def _attention_block(x_BTD, mask_BT, p, config, policy, rng, segments=None):
  b, t, _ = x_BTD.shape
  q_BTNH, k_BTNH, v_BTNH = _qkv(x_BTD, p['qkv'], config, policy)
  cudnn = config.attention == 'cudnn' or (config.attention == 'fused'
                                          and _cudnn_suits(x_BTD.dtype))
  if segments is not None and cudnn:
    out_BTNH = attn.packed_fused_attention(q_BTNH, k_BTNH, v_BTNH, segments.starts,
                                           segments.lengths)
  elif config.attention == 'xla' or segments is not None:
    # Packed rows off cuDNN take the einsum path; the fused paths have no probability dropout.
    mask = mask_BT if segments is None else attn.segment_mask(segments.ids)
    out_BTNH = attn.xla_attention(
        q_BTNH, k_BTNH, v_BTNH, mask, precision=policy.matmul_precision,
        dropout_rate=config.attention_dropout if config.attention == 'xla' else 0.0,
        dropout_rng=_rng(rng, 0))
  else:
    out_BTNH = attn.fused_attention(q_BTNH, k_BTNH, v_BTNH, mask_BT,
                                    implementation='cudnn' if cudnn else None)
  out_BTD = _dense(out_BTNH.reshape(b, t, -1), p['attn_out'], policy)
  out_BTD = _dropout(out_BTD, config.hidden_dropout, _rng(rng, 1))
  return _layer_norm(out_BTD + x_BTD, p['attn_ln'], config.layer_norm_eps, x_BTD.dtype)


def _ffn_block(x_BTD, p, config, policy, rng):
  h_BTF = _dense(x_BTD, p['ffn_in'], policy)
  h_BTF = (_gelu_tanh if config.activation == 'gelu_tanh' else _gelu)(h_BTF)
  out_BTD = _dense(h_BTF, p['ffn_out'], policy)
  out_BTD = _dropout(out_BTD, config.hidden_dropout, _rng(rng, 2))
  return _layer_norm(out_BTD + x_BTD, p['ffn_ln'], config.layer_norm_eps, x_BTD.dtype)


def _position_embeddings(table_PD, positions_BT, policy: PrecisionPolicy):
  """Packed rows' position embeddings [B, T, D]: rows of the table picked by position.
  (policy: for benchmarks/profile_step.py's one-hot variant, which replaces this.)"""
  return jnp.take(table_PD, positions_BT, axis=0)


def stack_layers(params: Params) -> Params:
  """The same params with 'layers' as one dict of [L, ...] arrays instead of a list of L
  dicts: 12 arrays instead of 12 L, for calls where the per-argument cost matters
  (docs/performance_notes.md, 15 and 42: a BERT-Large train step passes 64 state arrays, not
  892). encode and qa_logits take either form (and split_kernels')."""
  layers = params['layers']
  if _is_split(layers):
    kernels = jax.tree.map(lambda *xs: jnp.stack(xs), *layers['kernels'])
    return {**params, 'layers': _with_kernels(layers['stacked'], kernels)}
  if isinstance(layers, dict):
    return params
  return {**params, 'layers': jax.tree.map(lambda *xs: jnp.stack(xs), *layers)}


def split_kernels(params: Params) -> Params:
  """The same params with 'layers' as {'stacked': the layers' biases and LayerNorm params
  stacked, 'kernels': a list of L dicts of their matmul kernels}: 8 + 4 L arrays. For the
  unrolled layers at inference: cuBLAS reads a kernel array in place, but a layer's slice of
  a stack only after copying it (0.4 ms of a 2.1 ms BERT-Large batch-1 call on an H200,
  docs/performance_notes.md, 53). encode and qa_logits take this form too. It is a layout for
  inference: on GPU its LayerNorms run a forward-only kernel that reads the stacks in place
  (entry 56), so take gradients with the stacked or list form."""
  layers = stack_layers(params)['layers']
  n = len(jax.tree.leaves(layers)[0])
  kernels = [{name: leaf['kernel'][i] for name, leaf in layers.items() if 'kernel' in leaf}
             for i in range(n)]
  rest = {name: {k: v for k, v in leaf.items() if k != 'kernel'} for name, leaf in layers.items()}
  return {**params, 'layers': {'stacked': rest, 'kernels': kernels}}


def _is_split(layers) -> bool:
  return isinstance(layers, dict) and set(layers) == {'stacked', 'kernels'}


def _with_kernels(layer: Params, kernels: Params) -> Params:
  """A layer's (or a stack's) params without kernels, given its kernels by sublayer name."""
  return {name: {**leaf, **({'kernel': kernels[name]} if name in kernels else {})}
          for name, leaf in layer.items()}


def unstack_layers(params: Params) -> Params:
  """The inverse of stack_layers: 'layers' as a list of L dicts (numpy or jax arrays)."""
  if not isinstance(params['layers'], dict):
    return params
  layers = stack_layers(params)['layers']
  n = len(jax.tree.leaves(layers)[0])
  return {**params, 'layers': [jax.tree.map(lambda x, i=i: x[i], layers) for i in range(n)]}


def layer_params(layers) -> list[Params]:
  """The per-layer dicts of a list, of a stacked dict (see stack_layers) or of split_kernels'
  form. A stack is cut by _split_stack, whose gradient is one concatenate of the layers'
  gradients (x[i]'s is a pad per layer, summed: 2 ms more a BERT-Large step on an H200,
  docs/performance_notes.md, 42)."""
  if _is_split(layers):
    return [_with_kernels(rest, kernels)
            for rest, kernels in zip(layer_params(layers['stacked']), layers['kernels'])]
  if not isinstance(layers, dict):
    return list(layers)
  leaves, treedef = jax.tree.flatten(layers)
  n = len(leaves[0])
  split = [_split_stack(x, n) for x in leaves]
  return [treedef.unflatten([s[i] for s in split]) for i in range(n)]


def _split_stack(x, n: int) -> list:
  """The n [...] slices of a stacked [n, ...] array.

  A traced stack of matrices (a jitted step's argument) is cut at indices XLA cannot fold,
  so each layer's cast to the compute dtype reads its slice of the float32 stack in place:
  cut by static slices, XLA cast the whole stack and then copied each layer's slice out (96
  copies, 0.43 ms a BERT-Large train step; 1.1 % faster at seq 384 on an H200,
  docs/performance_notes.md, 68-70). Vectors, and concrete stacks (weights compiled into an
  inference program, whose static slices XLA folds into constants), are cut by jnp.split."""
  if isinstance(x, jax.core.Tracer) and x.ndim >= 3:
    return _slices_in_place(x, n)
  return _split_static(x, n)


def _split_static(x, n: int) -> list:
  return [y[0] for y in jnp.split(x, n)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _slices_in_place(x, n: int) -> list:
  index = jax.lax.optimization_barrier(jnp.arange(n, dtype=jnp.int32))
  return [jax.lax.dynamic_index_in_dim(x, index[i], keepdims=False) for i in range(n)]


def _slices_in_place_fwd(x, n):
  return _slices_in_place(x, n), None


def _slices_in_place_bwd(n, _, grads):
  return (jnp.stack(grads),)   # one concatenate, as jnp.split's transpose is


_slices_in_place.defvjp(_slices_in_place_fwd, _slices_in_place_bwd)


def encode(params: Params, input_ids, token_type_ids, attention_mask, *,
           config: ModelConfig, policy: PrecisionPolicy, dropout_rng=None,
           segments: Segments | None = None, scan_layers: bool = False):
  """Final hidden states [batch, time, hidden] in the policy's compute dtype.

  Args:
    input_ids, token_type_ids, attention_mask: int arrays [batch, time]; mask 1 = token.
    dropout_rng: a PRNG key turns dropout on (training); None means deterministic.
    segments: packed rows (bert_jax.packing): each window gets its own positions and sees
      only itself. None: one sequence a row, positions 0..time-1.
    scan_layers: run the layers as one lax.scan over their stack (a list or split_kernels'
      form is stacked first) instead of unrolled. Same numbers. XLA then compiles one layer,
      not L: with XLA's Triton gemms BERT-Large inference compiled in about 1-3 s a shape
      instead of 32-38 s on an H200, because the unrolled layers' gemm fusions each read
      their own slice of the stack and are autotuned one by one (with cuBLAS gemms, the
      inference default, unrolled takes 2.5-5.6 s too). The loop copies each layer's weights
      before its gemms (0.45 ms a call on an H200), so small-batch latency is better
      unrolled (docs/performance_notes.md, 51-53).
  """
  emb = params['embeddings']
  t = input_ids.shape[-1]
  positions = (emb['position'][None, :t] if segments is None
               else _position_embeddings(emb['position'], segments.positions, policy))
  x_BTD = (jnp.take(emb['word'], input_ids, axis=0)
           + positions
           + jnp.take(emb['token_type'], token_type_ids, axis=0))
  x_BTD = _layer_norm(x_BTD, emb['ln'], config.layer_norm_eps, policy.compute_dtype)
  x_BTD = _dropout(x_BTD, config.hidden_dropout, _rng(dropout_rng, 0))
  mask_BT = attention_mask.astype(bool)
  if scan_layers:
    layers = stack_layers(params)['layers']
    return _scan_layers(x_BTD, mask_BT, layers, config, policy, dropout_rng, segments)
  layers = params['layers']
  for i, layer in enumerate(layer_params(layers)):
    if _is_split(layers):   # the LayerNorm kernel reads its row of the stacks in place
      layer = {**layer, **{name: {**layer[name], 'rows': (layers['stacked'][name], i)}
                           for name in ('attn_ln', 'ffn_ln')}}
    x_BTD = _layer(x_BTD, mask_BT, layer, config, policy, dropout_rng, i, segments)
  return x_BTD


def _layer(x_BTD, mask_BT, p, config, policy, dropout_rng, i, segments):
  """Encoder layer i (its dropout key folded from i), unrolled or inside the scan."""
  layer_rng = _rng(dropout_rng, 1, i)
  x_BTD = _attention_block(x_BTD, mask_BT, p, config, policy, layer_rng, segments)
  return _ffn_block(x_BTD, p, config, policy, layer_rng)


SCAN_UNROLL = 1   # layers a loop trip (benchmarks/profile_step.py's scan2 sets 2)


def _scan_layers(x_BTD, mask_BT, layers, config, policy, dropout_rng, segments):
  """encode's layer loop as one lax.scan over the stacked layers; layer i takes the same
  dropout key as in the unrolled loop."""
  def layer(x, p_and_i):
    p, i = p_and_i
    return _layer(x, mask_BT, p, config, policy, dropout_rng, i, segments), None
  n = jax.tree.leaves(layers)[0].shape[0]
  return jax.lax.scan(layer, x_BTD, (layers, jnp.arange(n)), unroll=SCAN_UNROLL)[0]


def qa_logits(params: Params, input_ids, token_type_ids, attention_mask, *,
              config: ModelConfig, policy: PrecisionPolicy, dropout_rng=None,
              segments: Segments | None = None, scan_layers: bool = False):
  """SQuAD start and end logits, each float32 [batch, time] (arguments as encode's)."""
  logits_BT2 = span_logits(params, input_ids, token_type_ids, attention_mask, config=config,
                           policy=policy, dropout_rng=dropout_rng, segments=segments,
                           scan_layers=scan_layers)
  return logits_BT2[..., 0], logits_BT2[..., 1]


def span_logits(params: Params, input_ids, token_type_ids, attention_mask, *,
                config: ModelConfig, policy: PrecisionPolicy, dropout_rng=None,
                segments: Segments | None = None, scan_layers: bool = False):
  """qa_logits' start and end as one float32 [batch, time, 2] array ([..., 0] start)."""
  x_BTD = encode(params, input_ids, token_type_ids, attention_mask, config=config,
                 policy=policy, dropout_rng=dropout_rng, segments=segments,
                 scan_layers=scan_layers)
  return jnp.einsum('btd,dk->btk', x_BTD.astype(jnp.float32), params['qa']['kernel'],
                    precision=policy.matmul_precision) + params['qa']['bias']
