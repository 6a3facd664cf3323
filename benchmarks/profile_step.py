"""Where a BERT step's GPU time goes: variants timed side by side, then a kernel breakdown.

  python benchmarks/profile_step.py --kind train --seq 384 --batch 32 --precision bf16 \
      --variants bern base rbg nodrop --profile base --out prof
  python benchmarks/profile_step.py --kind infer --seq 384 --batch 1 --precision fp16

Variants (train): base = the code as it is; bern = dropout masks from one float draw
per element (jax.random.bernoulli, the code before byte masks); nodrop = dropout off
(the ceiling dropout allows); rbg = the train state's key uses JAX's 'rbg' PRNG (XLA
RngBitGenerator); qkv3 = q, k, v from three matmuls instead of slicing one fused output;
qkv_bwd3 = the fused projection forward, but its backward as three matmuls each for dx and dW
on dq, dk, dv (no concatenation of the three); qkv_bwd3b = the same with x kept from XLA's dot
merger (which joined the three dW matmuls again); qkv_cat = that backward with dq, dk, dv
joined by one concatenation (autodiff's form is pads and adds, into which XLA fuses the bias
gradient's sums); qkv_catbar = the same with the joined gradient written out before the bias
sum reads it; qkv_join = the join and the bias gradient's sums as one Pallas kernel
(bert_jax/qkv_join_kernel.py; the model's on GPU since entry 84, so base; join_rows8 /
join_rows32 / join_warps4 set its rows a program, 16, and its warps, 8); qkv_autodiff = the
projection's backward left to autodiff (the product before entry 84; since then biasmm
and dwstream, which patch _dense, no longer reach the q/k/v projection);
gelu_tanh = the model's tanh GELU (model.activation='gelu_tanh': written so that XLA folds it
into the FFN-in matmul's cuBLASLt epilogue; train and infer); gelu_tanh_autodiff = jax.nn.gelu's
tanh form left to autodiff (what gelu_tanh meant before entry 58 of docs/performance_notes.md);
biasmm = bias gradients as [1, N] x [N, E] matmuls (custom VJP) instead of reductions;
dwstream = every dense layer's weight and bias gradients computed on a second GPU stream
(compute_on 'gpu_stream:1', custom VJP), beside the main stream's backward pass (with lhs,
XLA's latency-hiding scheduler, to start them early and wait late; annot = XLA's stream
annotation flag set explicitly); dwstream_w = only the weight gradients there;
gelu_autodiff / ln_autodiff = the exact GELU / LayerNorm left to autodiff, which keeps
float32 copies of their inputs for the backward pass (the model's custom VJPs keep the input
in the compute dtype plus float32 row statistics). Parts combine with '+', e.g.
gelu_autodiff+ln_autodiff (the step before the custom VJPs). ln_xla = XLA's LayerNorm
backward instead of the model's Pallas kernel (bert_jax/layer_norm_kernel.py); ln_fwd_xla (infer)
= XLA's two or three kernels for each LayerNorm where no gradient is taken, not the model's
Pallas forward (the product before entry 56 of docs/performance_notes.md); gelu_lax_erf =
the GELU with jax's erf instead of the model's erfc fit (train and infer); gelu_shared = the
erfc GELU without the backward's optimization barrier (XLA then stores Phi(x) in float32);
gelu_slope = the erfc GELU keeping its derivative in the compute dtype (bf16) for the backward
pass instead of its input (one more array written forward, no erfc recomputed backward);
gelu_slope_bar = the same with the forward's outputs pinned by an optimization barrier (the
model's since entry 81); gelu_input = the model's GELU before it (the input kept, the slope
recomputed in the backward);
ln_joint = the LayerNorm kernel's two partial gradient sums added in one reduction
(layer_norm_kernel.JOINT_SUMS; the model's since entry 81); ln_apart = in two (before it);
ln_twopass = LayerNorm's variance as E[(x - mean)^2], a second pass over x (the model's
before entry 50 of docs/performance_notes.md, which takes E[x^2] - E[x]^2 in one; train and
infer; ln_fastvar was that change as a variant, in the grid2 calls);
triton_gemm = the train step compiled with XLA's Triton gemm fusions on (the model's GPU
default turns them off, bert_jax/train.py); cublaslt = the same with XLA's cuBLASLt path on
(which can fold bias adds into the matmul epilogue); cudnn_gemm (with triton_gemm) = the
Triton gemm fusions autotuned against cuDNN's GEMM fusion plans as well
(xla_gpu_cudnn_gemm_fusion_level 3); lhs = XLA's latency-hiding scheduler on
(with --devices: gradient all-reduces may overlap the backward pass); ar8mb = all-reduces
combined only up to 8 MiB each (more, smaller ones that can start earlier); coll8mb /
coll64mb = all-gathers and reduce-scatters (the split state's, with zero) combined up to 8 /
64 MiB each; layersplit = each layer's slice of a stacked weight cut by jnp.split (the
product before entry 70 of docs/performance_notes.md: XLA then casts the whole stack and
copies each layer's slice out; the product cuts at indices XLA cannot fold, sink3's
layercast); noslicesink = XLA's slice sinker off (each layer's cast of a stacked float32
weight reads its slice in place, not a slice copied out of one cast of the stack: no
change, entry 68); noconvertmover = XLA's convert mover off (the same aim); ln_blocks4 /
ln_blocks8 = the LayerNorm kernel with 4 / 8 blocks of rows per program (fewer partial sums;
layer_norm_kernel.BLOCKS); ln_fwd_rows1 / 2 / 8 / 16 and ln_fwd_warps8 (infer) = the LayerNorm
forward kernel with that many rows per program (4 in the model) or 8 warps (4);
gelu_kernel = the FFN's bias + GELU backward as one Pallas kernel
with the bias gradient (benchmarks/gelu_pallas.py); gelu_kernel_fwd = the same with the bias +
GELU forward as a kernel too; packed (train and infer) = packed rows (bert_jax.packing) of synthetic windows
averaging 0.45 of --seq (as SQuAD v1.1 at 384), the fullest rows of a pack, at most 8 windows
a row (packed4: 4, so cuDNN's packed attention gets 5 segments a row, not 9); pos_onehot = the
packed rows' position embeddings as a one-hot matmul (its gradient a matmul, not a scatter-add);
zero = the train state's layer matrices and Adam moments split over the --devices GPUs
(mesh.sharded_state, as ZeRO-3 / FSDP): each GPU gathers the weights in bf16 before use, gets
its share of the gradients and updates only that share;
hashdrop = dropout masks from a hash of each element's index (benchmarks/hash_dropout.py), computed in
the kernels that use them instead of threefry bits written out and read back; layer_list = the
train state's layers as a list of per-layer dicts, as before steps.create_state stacked them
(892 state arrays for BERT-Large instead of 64); gelu_erfcc / gelu_rsqrt / gelu_fit = the GELU
on another formula for Phi (benchmarks/gelu_math.py's candidates; gelu_erfcc is the model's
before entry 44 of docs/performance_notes.md; train and infer).
Variants (infer): base (cuDNN attention under bf16/fp16, params as inference.prepare_params
makes them), xla, qkv3, gelu_tanh, unstacked (params as one list entry per layer, as before
prepare_params stacked them), stacked_kernels (the kernels stacked too, as prepare_params made
them before entry 53: cuBLAS then copies each layer's slice; inf1 named today's layout
kernels_apart), scan / noscan (the layers run as one lax.scan, or unrolled as the bench does:
model.encode's scan_layers; scan2: two layers a loop trip), noautotune (XLA's autotuning off,
to see its share of compile time), notriton (cuBLAS for every matmul, the product's inference
default since entry 52 of docs/performance_notes.md) / triton_gemm (XLA's Triton gemm
fusions, the default before), dsf (XLA's dynamic slice fusion: cuBLAS reads a dynamic slice
in place; XLA matches only legacy cuBLAS gemms, and nolt, cuBLASLt off, left every gemm on
cuBLASLt on jax 0.11.2). Inference records carry compile_only_s (lower and compile alone)
and logits_max_abs_diff, the largest difference of the variant's logits from the run's first
variant's (same weights, same batch). Every record carries gemm_epilogues: how many of the
optimised program's matmuls have each cuBLASLt epilogue (BIAS, BIAS_GELU, BIAS_GELU_AUX, ...)
and gemm_backends how many run on each backend (cublaslt, cublas, triton, cudnn).
nocmdbuf (train and infer) = XLA's command buffers (CUDA
graphs) off, the thunks launching each kernel themselves; cmdbuf_all = every command type in
them, graphs of any size; cmdbuf_serial / cmdbuf_concurrent = XLA's CUDA graphs with each node
waiting on the one before (a straight line) / on nothing but its inputs, instead of XLA's
default (LHS); fresh_inputs (infer) = each call's batch another of 16 arrays, as the bench's
real windows are, rather than one array every call; bound (infer) = the weights compiled
into the program as constants, a call passing the batch alone (inference.compile_bound_eval);
two_outputs (infer) = the call returns start and end logits as two arrays, as eval_step did
before entry 60 of docs/performance_notes.md (rep1 measured the other way round: one_output,
the one [B, T, 2] array the product now returns, as a variant).
squadlen (train and infer) = windows padded at the end to SQuAD-like lengths (0.45 of --seq
on average, as packed's) instead of full ones: the bench's real windows' padding, which the
fused attention skips; kv_lengths (train and infer) = the fused attention given the key
lengths only, as before entry 64 of docs/performance_notes.md (cuDNN then runs the padded
queries' tiles too), e.g. --variants squadlen squadlen+kv_lengths.
Inference records also carry 'host': the time a call takes to return before the GPU is
done, that of a one-kernel call taking the same params (the per-call argument cost), and a
synchronous call's time with each way of waiting for its output (wait_probe: block_until_ready,
a spin on is_ready(), copies to host memory one by one, of the first output alone, or by
jax.device_get).
Train records carry 'host' too: the median time a step call takes to return (each call
synchronised before the next) and the number of state arrays it passes.
Each variant is built and compiled apart (compile_s, which includes building the state;
inference variants share the random weights the first one built; warm-up excluded) and
times --steps steps with one sync.
With --profile (one or more variants), a jax.profiler trace of 5 steps is summarised per
kernel and per class (collective / matmul / attention / elementwise+reduction / copy / other)
from its Perfetto JSON, with the collective time no other kernel overlapped, the GPU's span of
each executable run (kernels plus the gaps between them; None where the trace has no 'XLA
Modules' line, as jax 0.11.2's had not), the host's events by name (the jitted call, XLA's
thunks, CUDA's launches and graph updates) and call_phases, a traced call's wall time split
into the host's way to the launch, the launch's to the first kernel, the GPU's span and the
host's wait after the last kernel (medians; summarise also reads a saved
perfetto_trace.json.gz, e.g. one in docs/measurements/); the record also
counts the optimised HLO's collectives and their bytes. With --devices N (train) the step runs
data-parallel on N GPUs, --batch each, and the summary is per GPU (the average over the GPUs
that ran kernels).
"""
import argparse
import bisect
import collections
import functools
import glob
import gzip
import json
import os
import re
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax import (benchmark, batches, inference, mesh as mesh_lib, model, optim, packing,
                      records, steps, train)
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.settings import MeshSettings, TrainSettings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gelu_math  # noqa: E402  (benchmarks/gelu_math.py: the gelu_<candidate> variants)
import gelu_pallas  # noqa: E402  (benchmarks/gelu_pallas.py: the gelu_kernel variant)
import hash_dropout  # noqa: E402  (benchmarks/hash_dropout.py: the hashdrop variant)


def _bernoulli_dropout(x, rate, rng):
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


def _qkv_three_dots(x_BTD, p, config, policy):
  """q, k and v from three [D, D] slices of the fused kernel: no activation slicing."""
  b, t, d = x_BTD.shape
  kernel, bias = p['kernel'].reshape(d, 3, d), p['bias'].reshape(3, d)
  return tuple(model._dense(x_BTD, {'kernel': kernel[:, i], 'bias': bias[i]}, policy)
               .reshape(b, t, config.num_heads, config.head_dim) for i in range(3))


def _qkv_proj_fwd(x, w, b, num_heads, precision):
  return model._qkv_math(x, w, b, num_heads, precision), (x, w)


def _qkv_proj_bwd(num_heads, precision, res, grads, apart=False):
  """Three matmuls each for dx and dW on dq, dk, dv as cuDNN writes them: no [B, T, 3, N, H]
  concatenation of the three (2.1 ms a step at batch 32, the stack2 profile). XLA's dot
  merger joins the three dW matmuls (they share x) and so concatenates after all (gelu2);
  apart: x reaches each through its own optimization barrier, which that pass cannot see
  through."""
  x, w = res
  d = x.shape[-1]
  gs = [g.reshape(-1, g.shape[-2] * g.shape[-1]) for g in grads]          # [B*T, D] each
  ws = jnp.split(w, 3, axis=1)
  dx = sum(jnp.einsum('ne,de->nd', g, wi, precision=precision) for g, wi in zip(gs, ws))
  x2 = x.reshape(-1, d)
  pairs = [jax.lax.optimization_barrier((x2, g)) if apart else (x2, g) for g in gs]
  dw = jnp.concatenate([jnp.einsum('nd,ne->de', xi, g, precision=precision) for xi, g in pairs],
                       axis=1)
  db = jnp.concatenate([jnp.sum(g.astype(jnp.float32), axis=0) for g in gs])
  return dx.reshape(x.shape), dw, db.astype(w.dtype)


def _qkv_proj_concat_bwd(num_heads, precision, res, grads, barrier=False):
  """The fused projection's backward on dq, dk, dv joined by one concatenation into its
  [B T, 3D] gradient, as autodiff joins them, but without autodiff's form: it pads each of
  the three to [B, T, 3, N, H] and adds them, and XLA fuses the bias gradient's column sums
  into that pass (84 us a layer at seq 384 batch 32 on an H200, 1.8 TB/s, where the
  forward's slices of the same bytes take 37 us; sink3's profile). barrier: the joined
  gradient is written out before the bias sum reads it (an optimization barrier), so XLA
  cannot fuse the two."""
  x, w = res
  g = jnp.stack(grads, axis=2).reshape(-1, w.shape[1])                    # [B*T, 3D]
  if barrier:
    g = jax.lax.optimization_barrier(g)
  dx = jnp.einsum('ne,de->nd', g, w, precision=precision)
  return (dx.reshape(x.shape), _weight_grad(x.reshape(-1, x.shape[-1]), g, precision),
          _bias_grad(g))


def _qkv_proj_with(bwd):
  proj = jax.custom_vjp(model._qkv_math, nondiff_argnums=(3, 4))
  proj.defvjp(_qkv_proj_fwd, bwd)
  return proj


_qkv_proj = _qkv_proj_with(_qkv_proj_bwd)
_qkv_proj_apart = _qkv_proj_with(functools.partial(_qkv_proj_bwd, apart=True))
_qkv_proj_concat = _qkv_proj_with(_qkv_proj_concat_bwd)
_qkv_proj_concat_barrier = _qkv_proj_with(functools.partial(_qkv_proj_concat_bwd, barrier=True))


def _qkv_bwd3(x_BTD, p, config, policy, proj=_qkv_proj):
  dtype = policy.compute_dtype
  return proj(x_BTD, p['kernel'].astype(dtype), p['bias'].astype(dtype), config.num_heads,
              policy.matmul_precision)


def _gelu_tanh_autodiff(h):
  return jax.nn.gelu(h, approximate=True)  # autodiff reuses its steps: no epilogue match


def _gelu_autodiff(h):
  """The exact GELU as autodiff sees it (before commit 'custom VJPs'): float32 residual."""
  return jax.nn.gelu(h.astype(jnp.float32), approximate=False).astype(h.dtype)


@jax.custom_vjp
def _gelu_lax_erf(h):
  """The GELU before the erfc fit: jax's erf; the same bf16 residual and float32 backward."""
  return _gelu_autodiff(h)


def _gelu_lax_erf_bwd(h, g):
  x = h.astype(jnp.float32)
  cdf = 0.5 * (1.0 + jax.lax.erf(x * model._SQRT_HALF))
  pdf = jnp.exp(-0.5 * x * x) * model._INV_SQRT_2PI
  return ((g.astype(jnp.float32) * model._gelu_slope(x, cdf, pdf)).astype(h.dtype),)


_gelu_lax_erf.defvjp(lambda h: (_gelu_lax_erf(h), h), _gelu_lax_erf_bwd)


@jax.custom_vjp
def _gelu_shared(h):
  """The model's erfc GELU with no barrier in the backward: XLA may share Phi(x)."""
  return ORIGINALS['_gelu'](h)


def _gelu_shared_bwd(h, g):
  x = h.astype(jnp.float32)
  slope = model._gelu_slope(x, *model._normal_cdf_pdf(x))
  return ((g.astype(jnp.float32) * slope).astype(h.dtype),)


_gelu_shared.defvjp(lambda h: (_gelu_shared(h), h), _gelu_shared_bwd)


@jax.custom_vjp
def _gelu_slope_kept(h):
  """The model's erfc GELU, keeping its derivative (in h's dtype) for the backward pass
  instead of h (the model before entry 81 kept h): the forward pass writes one more array
  where it has Phi and phi at hand, and the backward only multiplies the incoming gradient
  by it (no erfc to recompute)."""
  return ORIGINALS['_gelu'](h)


# the model's forward without its optimization barrier: unpinned, XLA wrote a float32
# intermediate in the forward pass and finished the slope in the backward (slope1, entry 81)
_gelu_slope_kept.defvjp(model._gelu_and_slope, model._gelu_bwd)


def _ln_stats_twopass(x32, eps):
  """LayerNorm's row statistics as the model took them before entry 50: the mean, then
  E[(x - mean)^2] in a second pass over x."""
  mean = jnp.mean(x32, axis=-1, keepdims=True)
  return mean, jax.lax.rsqrt(jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True) + eps)


def _layer_norm_autodiff(x, p, eps, dtype):
  """LayerNorm left to autodiff (before the custom VJP): float32 [B, T, D] residuals."""
  x32 = x.astype(jnp.float32)
  mean, rstd = _ln_stats_twopass(x32, eps)
  return ((x32 - mean) * rstd * p['scale'] + p['bias']).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _linear(x, w, b, precision, weight_grads):
  """x w + b, whose backward pass takes dx itself and (dW, db) from weight_grads(x2, dy2,
  precision) over the [N, D] inputs and [N, E] gradients."""
  return jnp.einsum('...d,de->...e', x, w, precision=precision) + b


def _linear_fwd(x, w, b, precision, weight_grads):
  return _linear(x, w, b, precision, weight_grads), (x, w)


def _linear_bwd(precision, weight_grads, res, dy):
  x, w = res
  dx = jnp.einsum('...e,de->...d', dy, w, precision=precision)
  dw, db = weight_grads(x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1]), precision)
  return dx, dw, db


_linear.defvjp(_linear_fwd, _linear_bwd)


def _weight_grad(x2, dy2, precision):
  return jnp.einsum('nd,ne->de', x2, dy2, precision=precision)


def _bias_grad(dy2):
  return jnp.sum(dy2, axis=0, dtype=jnp.float32).astype(dy2.dtype)


def _grads_biasmm(x2, dy2, precision):
  # The bias gradient as a [1, N] x [N, E] matmul (float32 accumulation), not a reduction.
  db = jnp.einsum('n,ne->e', jnp.ones(x2.shape[:1], dy2.dtype), dy2, precision=precision,
                  preferred_element_type=jnp.float32)
  return _weight_grad(x2, dy2, precision), db.astype(dy2.dtype)


def _on_side_stream(fn, *args):
  """fn(*args) as a computation XLA runs on a second GPU stream (jax's compute_on with
  'gpu_stream:1': a call XLA wraps as call-start / call-done); elsewhere the attribute is
  ignored. jax 0.10 names the function form compute_on2, jax 0.11 compute_on."""
  from jax.experimental import compute_on as co
  wrap = getattr(co, 'compute_on2', None) or co.compute_on
  spaces = jax.tree.map(lambda _: jax.memory.Space.Device, jax.eval_shape(fn, *args))
  return wrap(fn, compute_type='gpu_stream:1', out_memory_spaces=spaces)(*args)


def _grads_side(x2, dy2, precision, bias_on_side=True):
  """dW (and, with bias_on_side, db) on the second stream, which nothing in the backward
  pass waits for until the optimizer: what it may overlap is the memory-bound passes
  between the main stream's matmuls."""
  if bias_on_side:
    return _on_side_stream(lambda a, g: (_weight_grad(a, g, precision), _bias_grad(g)),
                           x2, dy2)
  return _on_side_stream(lambda a, g: _weight_grad(a, g, precision), x2, dy2), _bias_grad(dy2)


def _dense_with(weight_grads):
  """A model._dense whose backward pass takes its weight gradients from weight_grads."""
  def dense(x, p, policy):
    dtype = policy.compute_dtype
    return _linear(x, p['kernel'].astype(dtype), p['bias'].astype(dtype),
                   policy.matmul_precision, weight_grads)
  return dense


def _position_onehot(table_PD, positions_BT, policy):
  # one-hot [B, T, P] x table in the compute dtype: its gradient is a matmul, not a scatter-add
  # of B T rows into the P rows of the table
  onehot = jax.nn.one_hot(positions_BT, table_PD.shape[0], dtype=policy.compute_dtype)
  return jnp.einsum('btp,pd->btd', onehot, table_PD.astype(policy.compute_dtype))


def _span_logits_apart(*args, **kwargs):
  """The logits as start and end apart: eval_step's two outputs before entry 60 of
  docs/performance_notes.md (infer only: model.qa_logits, which training calls, splits them)."""
  logits_BT2 = ORIGINALS['span_logits'](*args, **kwargs)
  return logits_BT2[..., 0], logits_BT2[..., 1]


def _fused_attention_kv_lengths(q_BTNH, k_BSNH, v_BSNH, mask_BS, *, implementation=None):
  """JAX's fused attention given the key lengths only, as the product before entry 64 of
  docs/performance_notes.md: JAX then passes every query as real, so cuDNN runs the padded
  queries' tiles (whose outputs the loss leaves out)."""
  lengths_B = jnp.sum(mask_BS, axis=-1, dtype=jnp.int32)
  return jax.nn.dot_product_attention(q_BTNH, k_BSNH, v_BSNH, key_value_seq_lengths=lengths_B,
                                      implementation=implementation)


PATCHES = {'bern': {'_dropout': _bernoulli_dropout}, 'hashdrop': {'_dropout': hash_dropout.dropout},
           'qkv3': {'_qkv': _qkv_three_dots}, 'qkv_bwd3': {'_qkv': _qkv_bwd3},
           'qkv_bwd3b': {'_qkv': functools.partial(_qkv_bwd3, proj=_qkv_proj_apart)},
           'qkv_cat': {'_qkv': functools.partial(_qkv_bwd3, proj=_qkv_proj_concat)},
           'qkv_catbar': {'_qkv': functools.partial(_qkv_bwd3, proj=_qkv_proj_concat_barrier)},
           # join1's variant, the model's own since entry 84; qkv_autodiff: the product before
           'qkv_join': {'_use_qkv_join_kernel': model._use_qkv_join_kernel},
           'qkv_autodiff': {'_use_qkv_join_kernel': lambda x: False},
           # its blocks: rows a program (16) and warps (8), e.g. qkv_join+join_rows32+join_warps4
           **{f'join_rows{n}': {'qkv_join_kernel.ROWS': n} for n in (8, 32)},
           'join_warps4': {'qkv_join_kernel.NUM_WARPS': 4},
           'gelu_tanh_autodiff': {'_gelu': _gelu_tanh_autodiff},
           'biasmm': {'_dense': _dense_with(_grads_biasmm)},
           'dwstream': {'_dense': _dense_with(_grads_side)},
           'dwstream_w': {'_dense': _dense_with(functools.partial(_grads_side,
                                                                  bias_on_side=False))},
           'gelu_autodiff': {'_gelu': _gelu_autodiff}, 'gelu_lax_erf': {'_gelu': _gelu_lax_erf},
           'gelu_shared': {'_gelu': _gelu_shared},
           'gelu_slope': {'_gelu': _gelu_slope_kept},
           'gelu_slope_bar': {'_gelu': model._gelu},  # slope2's variant: the model's since 81
           'gelu_input': {'_gelu': gelu_math.custom_gelu(model._normal_cdf_pdf)},
           'ln_joint': {'layer_norm_kernel.JOINT_SUMS': True},
           'ln_apart': {'layer_norm_kernel.JOINT_SUMS': False},
           'ln_autodiff': {'_layer_norm': _layer_norm_autodiff},
           'ln_xla': {'_use_ln_kernel': lambda x: False},
           'ln_fwd_xla': {'_use_ln_fwd_kernel': lambda x: False},
           'ln_twopass': {'_ln_stats': _ln_stats_twopass},
           'scan2': {'SCAN_UNROLL': 2},
           'ln_blocks4': {'layer_norm_kernel.BLOCKS': 4},
           'ln_blocks8': {'layer_norm_kernel.BLOCKS': 8},
           **{f'ln_fwd_rows{n}': {'layer_norm_kernel.FWD_ROWS': n} for n in (1, 2, 8, 16)},
           'ln_fwd_warps8': {'layer_norm_kernel.FWD_NUM_WARPS': 8},
           'gelu_kernel': {'_ffn_block': gelu_pallas.ffn_block},
           'gelu_kernel_fwd': {'_ffn_block': gelu_pallas.ffn_block,
                               'gelu_pallas.FORWARD_KERNEL': True},
           'pos_onehot': {'_position_embeddings': _position_onehot},
           # each layer's slice of a stacked weight by jnp.split: the product before entry 70
           'layersplit': {'_split_stack': model._split_static},
           'two_outputs': {'span_logits': _span_logits_apart},
           'kv_lengths': {'attn.fused_attention': _fused_attention_kv_lengths},
           **{f'gelu_{name}': {'_gelu': gelu_math.custom_gelu(fn)}
              for name, fn in gelu_math.CANDIDATES.items()}}
# parts that are XLA compiler options (train: on top of train.default_compiler_options)
OPTION_PARTS = {
    'triton_gemm': {'xla_gpu_enable_triton_gemm': True},
    'noautotune': {'xla_gpu_autotune_level': 0},
    'notriton': {'xla_gpu_enable_triton_gemm': False},
    # cuBLAS gemms read dynamic slices (scan's per-layer weights) in place instead of copies
    'dsf': {'xla_gpu_enable_dynamic_slice_fusion': True},
    'cublaslt': {'xla_gpu_enable_cublaslt': True},
    # GEMM fusions autotuned against cuDNN's graph plans too (Hopper, cuDNN 9; XLA makes
    # those fusions only with its Triton gemms on, so this goes with triton_gemm)
    'cudnn_gemm': {'xla_gpu_cudnn_gemm_fusion_level': 3},
    'nolt': {'xla_gpu_enable_cublaslt': False},
    # XLA's slice sinker off, then its convert mover: each suspected of turning the 24
    # per-layer casts of a stacked float32 weight into one cast of the whole stack whose
    # slices are then copied out (96 memcpy128 a BERT-Large step, 0.43 ms). Neither was it:
    # the copies stayed (entries 68, 69); model._split_stack removes them (entry 70)
    'noslicesink': {'xla_disable_hlo_passes': 'slice-sinker'},
    'noconvertmover': {'xla_disable_hlo_passes': 'convert-mover'},
    'lhs': {'xla_gpu_enable_latency_hiding_scheduler': True},
    # XLA honours jax's compute_on('gpu_stream:N') calls (dwstream); XLA's flag list gives
    # true as the default, set here to leave no doubt
    'annot': {'xla_gpu_experimental_stream_annotation': True},
    'ar8mb': {'xla_gpu_all_reduce_combine_threshold_bytes': 8 << 20},
    # with the state split (zero): all-gathers and reduce-scatters combined up to 8 / 64 MiB
    # (64 MiB is the GPU default since scale6, train.GPU_TRAIN_COMPILER_OPTIONS)
    'coll8mb': {'xla_gpu_all_gather_combine_threshold_bytes': 8 << 20,
                'xla_gpu_reduce_scatter_combine_threshold_bytes': 8 << 20},
    'coll64mb': {'xla_gpu_all_gather_combine_threshold_bytes': 64 << 20,
                 'xla_gpu_reduce_scatter_combine_threshold_bytes': 64 << 20},
    # no CUDA graphs: the thunks launch each kernel themselves. The stack1 trace showed the
    # step's one command buffer updated on every call (15.7 ms of host time at batch 1)
    'nocmdbuf': {'xla_gpu_enable_command_buffer': ''},
    # every command type XLA can put in a CUDA graph, and graphs of any size
    'cmdbuf_all': {'xla_gpu_enable_command_buffer': 'FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL',
                   'xla_gpu_graph_min_graph_size': 1},
    # the graph's nodes each waiting on the one before (a straight line, which recent CUDA
    # drivers launch in constant time) or on what they read (XLA's default, LHS: a DAG)
    'cmdbuf_serial': {'xla_gpu_command_buffer_scheduling_mode': 'SERIALIZE'},
    'cmdbuf_concurrent': {'xla_gpu_command_buffer_scheduling_mode': 'CONCURRENT'},
}
# parts the builders read themselves rather than patching the model
BUILD_PARTS = ('base', 'gelu_tanh', 'scan', 'noscan', 'nodrop', 'rbg', 'xla', 'unstacked',
               'stacked_kernels', 'packed', 'packed4', 'zero', 'layer_list', 'fresh_inputs',
               'bound', 'squadlen', *OPTION_PARTS)


def _target(name):
  """(object, attribute) a patch name refers to: 'x' is bert_jax.model.x, 'mod.x' is x in the
  module bert_jax.model imports as mod, 'gelu_pallas.x' is x in benchmarks/gelu_pallas.py."""
  owner, _, attr = name.rpartition('.')
  if owner == 'gelu_pallas':
    return gelu_pallas, attr
  return (getattr(model, owner) if owner else model), attr


ORIGINALS = {name: getattr(*_target(name)) for patch in PATCHES.values() for name in patch}


# parts that break the other kind's build, and the one kind they are for
ONE_KIND_PARTS = {'two_outputs': 'infer'}


def check_variant(variant, kind=None):
  """The variant's parts; SystemExit naming any unknown one and the choices, or (given the
  --kind) any part that only the other kind takes."""
  parts = variant.split('+')
  unknown = [p for p in parts if p not in PATCHES and p not in BUILD_PARTS]
  if unknown:
    raise SystemExit(f'--variants: unknown part(s) {unknown} in {variant!r}; choose from '
                     f'{sorted([*PATCHES, *BUILD_PARTS])}, joined with "+"')
  wrong = [p for p in parts if kind and ONE_KIND_PARTS.get(p, kind) != kind]
  if wrong:
    raise SystemExit(f'--variants: {wrong} in {variant!r} only run with --kind '
                     f'{ONE_KIND_PARTS[wrong[0]]}, not --kind {kind}')
  return parts


def apply_variant(variant):
  """Puts bert_jax.model (and the modules it uses) back as they are, then swaps in the
  variant's functions and settings.

  A variant may combine parts with '+', e.g. 'qkv3+biasmm'."""
  parts = check_variant(variant)
  for name, value in ORIGINALS.items():
    setattr(*_target(name), value)
  for part in parts:
    for name, value in PATCHES.get(part, {}).items():
      setattr(*_target(name), value)
  return parts


def _activation(config, parts):
  return config.replace(activation='gelu_tanh') if 'gelu_tanh' in parts else config


def gemm_epilogues(hlo_text):
  """{epilogue: count} over the optimised HLO's cuBLAS(Lt) matmuls, e.g. {'BIAS': 72,
  'BIAS_GELU_AUX': 24}; 'DEFAULT' where a matmul has none. Empty off GPU."""
  return dict(collections.Counter(re.findall(r'"epilogue":"(\w+)"', hlo_text)))


GEMM_BACKENDS = {'cublaslt': r'custom_call_target="__cublas\$lt\$matmul"',
                 'cublas': r'custom_call_target="__cublas\$gemm"',
                 # __triton_gemm, and __triton_nested_gemm_fusion in newer XLA
                 'triton': r'"kind":"__triton\w*gemm\w*"', 'cudnn': r'"kind":"__cudnn\$fusion"'}


def gemm_backends(hlo_text):
  """{backend: count} of the optimised HLO's matmuls by what runs them (cuBLASLt, legacy
  cuBLAS, a Triton gemm fusion, a cuDNN gemm fusion); backends with none left out. (cudnn1's
  records, before the Triton pattern took __triton_nested_gemm_fusion, left 25 of BERT-Large's
  97 out where the Triton gemms were on.)"""
  counts = {name: len(re.findall(pattern, hlo_text)) for name, pattern in GEMM_BACKENDS.items()}
  return {name: n for name, n in counts.items() if n}


def build_train(variant, seq, batch, policy, preset, devices=1):
  """The train step on `devices` GPUs (data parallel), `batch` sequences per GPU."""
  parts = apply_variant(variant)
  config = _activation(ModelConfig.preset(preset).replace(attention='fused'), parts)
  if 'nodrop' in parts:
    config = config.replace(hidden_dropout=0.0, attention_dropout=0.0)
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=devices))
  data = mesh_lib.batch_sharding(mesh)
  optimizer = optim.make_optimizer(TrainSettings(), 10_000)
  key = jax.random.key(0, impl='rbg') if 'rbg' in parts else jax.random.PRNGKey(0)
  state = benchmark.random_train_state(mesh, config, policy, optimizer, jax.random.PRNGKey(1),
                                       key)
  if 'layer_list' in parts:
    state = jax.jit(lambda s: steps.map_params_like(model.unstack_layers, s),
                    out_shardings=mesh_lib.replicated(mesh))(state)
  options = train.default_compiler_options(mesh)
  for part in parts:
    options.update(OPTION_PARTS.get(part, {}))
  shardings = mesh_lib.state_shardings(mesh, state, 'zero' in parts)
  state = jax.device_put(state, shardings)
  fn = train.jit_train_step(mesh, config, policy, optimizer, compiler_options=options,
                            state_sharding=shardings)
  rng = np.random.default_rng(0)
  make = windows_maker(parts)
  inputs = [batches.to_device(make(rng, batch * devices, seq, config.vocab_size), data)
            for _ in range(2)]
  compiled = fn.lower(state, inputs[0]).compile()
  holder = {'state': state}

  def run(n):
    for i in range(n):
      holder['state'], metrics = compiled(holder['state'], inputs[i % 2])
    jax.block_until_ready(holder['state'])

  def call_return_probe(n=20):
    # how long a step call takes to return, each call synchronised before the next: the
    # host's per-call work (the state's arrays handled and, on GPU, XLA updating the step's
    # CUDA graph: entry 42), which bounds small batches where the GPU step is shorter
    times = []
    for i in range(n):
      t = time.perf_counter()
      holder['state'], _ = compiled(holder['state'], inputs[i % 2])
      times.append(time.perf_counter() - t)
      jax.block_until_ready(holder['state'])
    return {'train_call_return_ms_p50': float(np.median(times) * 1e3),
            'state_arrays': len(jax.tree.leaves(holder['state']))}
  run.compiler_options = options
  run.host_probe = call_return_probe
  run.state = lambda: holder['state']
  if _is_packed(parts):
    run.windows_per_step = windows_per_batch(inputs)
  return run, config, compiled


def _is_packed(parts) -> bool:
  return 'packed' in parts or 'packed4' in parts


def windows_maker(parts):
  """The variant's windows, `make(rng, n, seq, vocab)`: packed rows (packed, packed4: at most 4
  windows a row), SQuAD-like padded windows (squadlen), else synthetic full ones."""
  if _is_packed(parts):
    return functools.partial(packed_synthetic, max_windows=4 if 'packed4' in parts else 8)
  return squad_like if 'squadlen' in parts else benchmark.synthetic


def windows_per_batch(device_batches) -> int:
  """The mean windows packed batches hold (segment ids run 1..k in a row of k windows)."""
  return int(np.mean([np.asarray(b['segment_ids']).max(axis=1).sum() for b in device_batches]))


def squad_like(rng, n, seq, vocab, mean_share=0.45):
  """`n` synthetic windows padded at the end to lengths that average about mean_share of seq
  (SQuAD v1.1's train windows at 384: 0.448), their labels on real tokens."""
  windows = benchmark.synthetic(rng, n, seq, vocab)
  lengths = np.clip(rng.normal(mean_share * seq, 0.45 * mean_share * seq, n),
                    min(16, seq // 2), seq).astype(int)
  windows['attention_mask'] = (np.arange(seq)[None] < lengths[:, None]).astype(np.int32)
  windows['start_positions'] = windows['end_positions'] = (lengths // 2).astype(np.int32)
  return windows


def packed_synthetic(rng, rows, seq, vocab, mean_share=0.45, max_windows=8):
  """`rows` packed rows (bert_jax.packing, at most max_windows windows a row) of squad_like
  windows."""
  n = 4 * rows * int(1 / mean_share)
  windows = squad_like(rng, n, seq, vocab, mean_share)
  lengths = windows['attention_mask'].sum(axis=1)
  feats = types.SimpleNamespace(**windows, max_seq_length=seq)
  packed = packing.pack_rows(lengths, np.arange(n), seq, max_windows)
  packed.sort(key=lambda r: -lengths[r].sum())                 # the fullest rows
  return packing.pack_host_rows(feats, packed[:rows], max_windows)


_INFER_PARAMS = {}


def build_infer(variant, seq, batch, policy, preset):
  parts = apply_variant(variant)
  config = _activation(ModelConfig.preset(preset), parts).replace(
      attention='xla' if 'xla' in parts else 'fused')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=1))
  key = (preset, policy)   # the same random weights for every variant of a run, built once
  if key not in _INFER_PARAMS:
    _INFER_PARAMS.clear()
    _INFER_PARAMS[key] = benchmark.random_params(mesh, config, policy, jax.random.PRNGKey(1),
                                                 scan_layers=True)   # all stacked
  params = _INFER_PARAMS[key]
  scan = 'scan' in parts or 'scan2' in parts
  if 'unstacked' in parts:
    params = {**params, 'layers': model.layer_params(params['layers'])}
  elif not scan and 'stacked_kernels' not in parts:   # as inference.prepare_params has them
    params = jax.jit(model.split_kernels)(params)
  options = inference.default_compiler_options(mesh)   # the product's; triton_gemm: XLA's
  for part in parts:
    options.update(OPTION_PARTS.get(part, {}))
  fn = inference.make_eval_fn(mesh, config, policy, scan_layers=scan, compiler_options=options)
  xs = []
  make = windows_maker(parts)
  # eval.packing's rows: eval_step reads the segments from the batch
  keys = (*steps.INPUT_KEYS, *packing.SEGMENT_KEYS) if _is_packed(parts) else steps.INPUT_KEYS
  for i in range(16 if 'fresh_inputs' in parts else 1):
    host = make(np.random.default_rng(i), batch, seq, config.vocab_size)
    xs.append(batches.to_device({k: host[k] for k in keys}, mesh_lib.batch_sharding(mesh)))
  x = xs[0]
  jax.block_until_ready(params)
  t0 = time.perf_counter()
  if 'bound' in parts:   # the weights inside the program: a call passes the batch alone
    compiled = inference.compile_bound_eval(mesh, config, policy, params, x, scan, options)
    args = ()
  else:
    compiled = fn.lower(params, x).compile()
    args = (params,)
  compile_only_s = time.perf_counter() - t0

  def run(n):   # fresh_inputs: a call's inputs at another address than the last call's,
    # as in the bench, so XLA updates its CUDA graph's nodes that read them
    for i in range(n):
      jax.block_until_ready(compiled(*args, xs[i % len(xs)]))
  run.host_probe = lambda: host_probe(compiled, args, x)
  run.compile_only_s = compile_only_s
  run.compiler_options = options
  run.outputs = lambda: _start_end(compiled(*args, x))
  if _is_packed(parts):
    run.windows_per_step = windows_per_batch(xs)
  return run, config, compiled


def _start_end(out):
  """Start and end logits as float32 host arrays, from the eval step's [B, T, 2] array or
  two_outputs' pair alike."""
  leaves = [np.asarray(y, np.float32) for y in jax.tree.leaves(out)]
  return [leaves[0][..., 0], leaves[0][..., 1]] if len(leaves) == 1 else leaves


def host_probe(compiled, args, x, n=50):
  """Host-side costs of one inference call (ms, medians of n): 'enqueue', the time until
  the call returns (before the GPU is done); 'args', a synchronised call of a one-kernel
  executable that takes the same arguments (args: the params, or () where they are inside
  the program), i.e. the per-call cost of the arguments."""
  trivial = jax.jit(lambda *a: a[-1]['input_ids'][:1, :1] + 1, keep_unused=True)
  trivial = trivial.lower(*args, x).compile()
  out = {'param_leaves': len(jax.tree.leaves(args))}
  out.update(wait_probe(compiled, args, x))
  for name, fn, sync_in_timing in (('enqueue', compiled, False), ('args', trivial, True)):
    jax.block_until_ready(fn(*args, x))
    times = []
    for _ in range(n):
      t = time.perf_counter()
      y = fn(*args, x)
      if sync_in_timing:
        jax.block_until_ready(y)
      times.append((time.perf_counter() - t) * 1e3)
      jax.block_until_ready(y)
    out[f'{name}_ms'] = float(np.median(times))
  return out


WAITS = {'block': jax.block_until_ready,   # the thread sleeps until woken (the bench's wait
         # before entry 59 of docs/performance_notes.md)
         'spin': benchmark.wait_until_ready,   # polls the output's ready flag (the bench's now)
         'fetch': lambda y: [np.asarray(leaf) for leaf in jax.tree.leaves(y)],  # + copy home
         'fetch1': lambda y: np.asarray(jax.tree.leaves(y)[0]),   # the first output only
         'device_get': jax.device_get}   # every copy started before the first is waited for


def wait_probe(compiled, args, x, n=200):
  """A synchronous call's time (ms, medians of n each, untraced) with each way of waiting for
  its output: wait_block_ms (jax.block_until_ready), wait_spin_ms (a loop on is_ready(), as
  the bench waits: benchmark.wait_until_ready), wait_fetch_ms (each output array copied to
  host memory in turn with np.asarray, which a caller needs anyway), wait_fetch1_ms (the first
  array alone) and wait_device_get_ms (jax.device_get, which starts every copy before
  waiting). The ways alternate call by call, so drift on the machine touches each alike."""
  times = {name: [] for name in WAITS}
  for name, wait in WAITS.items():
    wait(compiled(*args, x))
  names = list(WAITS)
  for i in range(n * len(names)):
    name = names[i % len(names)]
    t = time.perf_counter()
    WAITS[name](compiled(*args, x))
    times[name].append((time.perf_counter() - t) * 1e3)
  return {f'wait_{name}_ms': float(np.median(v)) for name, v in times.items()}


CLASSES = (('collective', ('nccl', 'allreduce', 'all_reduce', 'all-reduce', 'reducescatter',
                            'allgather')),
           ('attention', ('fmha', 'flash', 'cudnn', 'attn', 'sdpa')),
           ('matmul', ('gemm', 'cutlass', 'xmma', 'nvjet', 'sm90', 'cublas', 'wgmma', 'dot')),
           ('copy', ('memcpy', 'memset', 'copy', 'transpose')),
           ('elementwise+reduction', ('fusion', 'loop_', 'input_', 'reduce', 'convert',
                                      'multiply', 'add', 'rng', 'threefry', 'select')))


def classify(name):
  low = name.lower()
  for cls, keys in CLASSES:
    if any(k in low for k in keys):
      return cls
  return 'other'


_FUSION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = (\(.*?\)|\S+) fusion\((.*?)\), kind=(\w+)'
                     r'.*?calls=%?([\w.\-]+)')
_OP = re.compile(r'= (?:\(.*?\)|\S+) ([a-z][\w\-]*)\(')


def _kernel_name(hlo_name):
  return re.sub(r'[.\-]', '_', hlo_name)


def hlo_fusions(hlo_text):
  """Per fusion of the optimised HLO (by its kernel name): result shape, kind, operand
  shapes and the ops inside, so a kernel in the trace says what it computes."""
  bodies, current = {}, None
  for line in hlo_text.splitlines():
    head = re.match(r'^%?([\w.\-]+) [^=]*\{\s*$', line) or re.match(r'^%?([\w.\-]+) \(', line)
    if head and not line.startswith(' '):
      current = head.group(1)
      bodies[current] = collections.Counter()
    elif current and line.startswith('}'):
      current = None
    elif current:
      op = _OP.search(line)
      if op and op.group(1) not in ('parameter', 'constant'):
        bodies[current][op.group(1)] += 1
  shapes = dict(re.findall(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = (\(.*?\)|[^\s{]+)', hlo_text, re.M))
  out = {}
  for line in hlo_text.splitlines():
    m = _FUSION.match(line)
    if m:
      name, shape, operands, kind, calls = m.groups()
      op_name = re.search(r'op_name="([^"]*)"', line)
      out.setdefault(_kernel_name(name), {
          'hlo': name, 'shape': re.sub(r'\{[\d,]*\}', '', shape), 'kind': kind,
          'operands': [shapes.get(o, o) for o in re.findall(r'%?([\w.\-]+)', operands)][:6],
          'ops': dict(bodies.get(calls, collections.Counter()).most_common(8)),
          'op_name': op_name.group(1)[-160:] if op_name else ''})
  return out


def annotate(summary, fusions):
  """Adds the HLO description to each top kernel whose name is a fusion's."""
  for k in summary.get('top_kernels', []):
    info = fusions.get(k['name'])
    if info:
      k['hlo'] = info
  return summary


def _union(intervals):
  """Sorted, disjoint (start, end) intervals covering the same time as `intervals`."""
  out = []
  for a, b in sorted(intervals):
    if out and a <= out[-1][1]:
      out[-1][1] = max(out[-1][1], b)
    else:
      out.append([a, b])
  return out


def _length(disjoint):
  return sum(b - a for a, b in disjoint)


def _overlap(xs, ys):
  """Time in both of two disjoint sorted interval lists."""
  total, j = 0, 0
  for a, b in xs:
    while j < len(ys) and ys[j][1] <= a:
      j += 1
    k = j
    while k < len(ys) and ys[k][0] < b:
      total += min(b, ys[k][1]) - max(a, ys[k][0])
      k += 1
  return total


_DTYPE_BYTES = {'f32': 4, 'bf16': 2, 'f16': 2, 's32': 4, 'u32': 4, 'f64': 8, 'pred': 1}


def hlo_collectives(hlo_text):
  """Per collective op of the optimised HLO (all-reduce, reduce-scatter, ...): how many there
  are and the bytes each device contributes, by element type. An async pair counts once: the
  start (whose result also holds the operands) for the count, the done for the bytes."""
  out = {}
  op = re.compile(r'= (\(.*?\)|\S+) (all-reduce|reduce-scatter|all-gather)(-start|-done)?\(')
  for line in hlo_text.splitlines():
    m = op.search(line)
    if not m:
      continue
    shape, name, phase = m.groups()
    entry = out.setdefault(name, {'count': 0, 'bytes': {}})
    if phase != '-done':
      entry['count'] += 1
    if phase == '-start':
      continue
    for dtype, dims in re.findall(r'\b([a-z]+\d*)\[([\d,]*)\]', shape):
      n = int(np.prod([int(d) for d in dims.split(',') if d])) if dims else 1
      entry['bytes'][dtype] = entry['bytes'].get(dtype, 0) + n * _DTYPE_BYTES.get(dtype, 4)
  return out


def summarise(trace_dir, steps_profiled, top=30):
  """Per-GPU, per-step figures of a jax.profiler trace: a folder holding a
  perfetto_trace.json.gz (the newest, where a variant was traced more than once), or that
  file itself."""
  files = ([trace_dir] if os.path.isfile(trace_dir) else
           glob.glob(os.path.join(trace_dir, '**', 'perfetto_trace.json.gz'), recursive=True))
  if not files:
    return {'error': f'no perfetto_trace.json.gz under {trace_dir}'}
  with gzip.open(max(files, key=os.path.getmtime)) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  names = {e['pid']: e['args'].get('name', '') for e in events
           if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  gpu_pids = {pid for pid, n in names.items() if 'gpu' in n.lower() and 'host' not in n.lower()}
  threads = {(e['pid'], e['tid']): e['args'].get('name', '') for e in events
             if e.get('ph') == 'M' and e.get('name') == 'thread_name' and e['pid'] in gpu_pids}
  per_thread = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and e.get('pid') in gpu_pids:
      per_thread[threads.get((e['pid'], e.get('tid')), '?')] += e.get('dur', 0)
  # Kernels live on the 'Stream #..' lines; 'XLA Ops'/'XLA Modules' lines overlap them.
  kernel_lines = {k for k, n in threads.items() if 'stream' in n.lower()} or \
                 {k for k, n in threads.items() if n == 'XLA Ops'}
  per_kernel = collections.Counter()
  counts = collections.Counter()
  busy = set()
  collective_spans = collections.defaultdict(list)   # pid -> [(start, end)]
  other_kernels = collections.defaultdict(list)      # pid -> [(name, start, end)]
  for e in events:
    if e.get('ph') == 'X' and (e.get('pid'), e.get('tid')) in kernel_lines and 'dur' in e:
      per_kernel[e['name']] += e['dur']
      counts[e['name']] += 1
      busy.add(e['pid'])
      if 'ts' in e and classify(e['name']) == 'collective':
        collective_spans[e['pid']].append((e['ts'], e['ts'] + e['dur']))
      elif 'ts' in e:
        other_kernels[e['pid']].append((e['name'], e['ts'], e['ts'] + e['dur']))
  exposed, beside, alone = 0, collections.defaultdict(list), collections.defaultdict(list)
  for pid, spans in collective_spans.items():
    spans = _union(spans)
    others = other_kernels.get(pid, [])
    exposed += _length(spans) - _overlap(spans, _union([(a, b) for _, a, b in others]))
    starts = [a for a, _ in spans]
    for name, a, b in others:       # the last collective starting before the kernel ends
      i = bisect.bisect_left(starts, b) - 1
      (beside if i >= 0 and spans[i][1] > a else alone)[name].append(b - a)
  # how much longer kernels ran beside a collective than the same kernels without one
  excess = collections.Counter()
  for k, v in beside.items():
    if alone.get(k):
      excess[classify(k)] += sum(v) - len(v) * np.mean(alone[k])
  # Per GPU: with several GPUs in the step, every figure is the average over those that ran.
  steps_profiled *= max(1, len(busy))
  per_class = collections.Counter()
  for k, us in per_kernel.items():
    per_class[classify(k)] += us
  total = sum(per_kernel.values())
  # the time at least one kernel ran, per GPU: under the sum where kernels overlap (streams)
  union = sum(_length(_union([(a, b) for _, a, b in other_kernels.get(pid, [])]
                             + collective_spans.get(pid, [])))
              for pid in set(other_kernels) | set(collective_spans))
  # the GPU's span of each executable run ('XLA Modules' line): minus the kernels, the gaps;
  # None where the trace has no such line (jax 0.11.2's GPU traces on the H200 had none)
  module_lines = {k for k, n in threads.items() if n == 'XLA Modules'}
  module_us = sum(e.get('dur', 0) for e in events
                  if e.get('ph') == 'X' and (e.get('pid'), e.get('tid')) in module_lines)
  return {
      'gpu_processes': sorted(names[p] for p in gpu_pids), 'gpus_with_kernels': len(busy),
      'line_ms_per_step': {k: v / 1e3 / steps_profiled for k, v in per_thread.most_common(8)},
      'kernel_ms_per_step': total / 1e3 / steps_profiled,
      'kernel_busy_ms_per_step': union / 1e3 / steps_profiled,
      'module_span_ms_per_step': module_us / 1e3 / steps_profiled if module_lines else None,
      'class_ms_per_step': {k: v / 1e3 / steps_profiled for k, v in per_class.most_common()},
      # collective kernel time with no other kernel running on that GPU: what overlap would hide
      'exposed_collective_ms_per_step': exposed / 1e3 / steps_profiled,
      # other kernels' time while a collective ran, and what it cost them: the time above the
      # mean of the same kernel's runs with no collective beside it
      'beside_collective_ms_per_step': sum(map(sum, beside.values())) / 1e3 / steps_profiled,
      'beside_collective_excess_ms_per_step': sum(excess.values()) / 1e3 / steps_profiled,
      'beside_collective_excess_by_class': {k: float(v) / 1e3 / steps_profiled
                                            for k, v in excess.most_common()},
      'top_kernels': [{'name': k[:120], 'class': classify(k), 'calls_per_step':
                       counts[k] / steps_profiled, 'ms_per_step': us / 1e3 / steps_profiled}
                      for k, us in per_kernel.most_common(top)],
      'host': host_events(events, gpu_pids, steps_profiled / max(1, len(busy)), top),
      'call_phases': call_phases(events, gpu_pids, kernel_lines),
  }


def call_phases(events, gpu_pids, kernel_lines):
  """Where a traced call's wall time goes, from the host's and the GPU's timestamps (as the
  trace aligns their clocks), the median over the calls (µs): from the jitted call's start to
  the first graph or kernel launch, from there to the GPU's first kernel, the GPU's span
  (first kernel start to last kernel end), and from the last kernel's end to the host's
  block_until_ready returning (None where the trace has no such event). Each call's window
  runs to the next call's start; nested events of one call count once. Meant for calls each
  synchronised before the next on one GPU (inference's latency loop): where calls queue
  (training) a call's kernels fall in the next one's window. Empty without calls."""
  host = sorted((e for e in events if e.get('ph') == 'X' and e.get('pid') not in gpu_pids
                 and 'ts' in e and 'dur' in e), key=lambda e: e['ts'])
  kernels = sorted((e['ts'], e['ts'] + e['dur']) for e in events if e.get('ph') == 'X'
                   and (e.get('pid'), e.get('tid')) in kernel_lines and 'ts' in e and 'dur' in e)
  starts = sorted({e['ts'] for e in host if e['name'].startswith('PjitFunction(')})
  phases = collections.defaultdict(list)
  for i, t0 in enumerate(starts):
    t1 = starts[i + 1] if i + 1 < len(starts) else float('inf')
    window = [e for e in host if t0 <= e['ts'] < t1]
    launch = next((e['ts'] for e in window if e['name'].startswith(('cuGraphLaunch',
                                                                   'cuLaunchKernel'))), None)
    mine = [k for k in kernels if t0 <= k[0] < t1]
    if launch is None or not mine:
      continue
    last = max(b for _, b in mine)
    phases['call_to_launch_us'].append(launch - t0)
    phases['launch_to_first_kernel_us'].append(mine[0][0] - launch)
    phases['gpu_span_us'].append(last - mine[0][0])
    wait = [e['ts'] + e['dur'] for e in window if 'block_until_ready' in e['name']]
    if wait:
      phases['last_kernel_to_return_us'].append(max(wait) - last)
      phases['call_to_return_us'].append(max(wait) - t0)
  if not phases:
    return {}
  waits = phases.get('last_kernel_to_return_us', [])
  return {'calls': len(phases['gpu_span_us']), 'last_kernel_to_return_us': None,
          'call_to_return_us': None, **{k: float(np.median(v)) for k, v in phases.items()},
          'last_kernel_to_return_us_range': [float(min(waits)), float(max(waits))] if waits
                                            else None}


def host_events(events, gpu_pids, steps, top=30):
  """The host's side of a trace, per step: each event name's time and count on the host's
  lines (the jitted call, XLA's thunks and command buffers, CUDA driver calls such as
  cuLaunchKernel or cuGraphLaunch), the largest first. Nested events each count in full."""
  time, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and e.get('pid') not in gpu_pids and 'dur' in e:
      time[e['name']] += e['dur']
      count[e['name']] += 1
  return [{'name': k[:120], 'calls_per_step': count[k] / steps, 'ms_per_step': us / 1e3 / steps}
          for k, us in time.most_common(top)]


def _emit(out, rec):
  """One record: printed, and appended to out/profile.jsonl."""
  print(json.dumps(rec), flush=True)
  with open(os.path.join(out, 'profile.jsonl'), 'a') as f:
    f.write(json.dumps(rec) + '\n')


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--kind', choices=('train', 'infer'), default='train')
  p.add_argument('--seq', type=int, default=384)
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--precision', default='bf16')
  p.add_argument('--variants', nargs='*', default=['base'])
  p.add_argument('--profile', nargs='*', default=[], help='variants to trace')
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--out', default='prof')
  p.add_argument('--preset', default='large', help='tiny|mini|base|large')
  p.add_argument('--devices', type=int, default=1,
                 help='train only: GPUs in the data-parallel step, --batch sequences each')
  p.add_argument('--summarise', metavar='TRACE',
                 help='only summarise a trace this script took (a perfetto_trace.json.gz or a '
                      'folder holding one; 5 steps) and print it')
  args = p.parse_args()
  if args.summarise:
    print(json.dumps(summarise(args.summarise, 5), indent=1))
    return
  if args.devices > 1 and args.kind != 'train':
    p.error('--devices > 1 is for --kind train')
  for variant in args.variants + args.profile:  # every name checked before anything compiles
    check_variant(variant, args.kind)
  os.makedirs(args.out, exist_ok=True)
  policy = PrecisionPolicy(args.precision)
  build = build_train if args.kind == 'train' else build_infer
  env = records.environment()
  reference = {}   # inference: the first variant's logits, each later variant's compared
  for variant in args.variants:
    t0 = time.perf_counter()
    extra = {'devices': args.devices} if args.kind == 'train' else {}
    try:
      run, config, compiled = build(variant, args.seq, args.batch, policy, args.preset, **extra)
    except SystemExit:
      raise
    except Exception as e:  # one variant that does not compile (e.g. an XLA option this
      # jaxlib lacks) is reported and skipped; the others still run
      _emit(args.out, {'tool': 'profile_step', 'kind': args.kind, 'variant': variant,
                       'error': f'{type(e).__name__}: {str(e)[:400]}'})
      jax.clear_caches()
      continue
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(3)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(args.steps)
    dt = (time.perf_counter() - t0) / args.steps
    rec = {'tool': 'profile_step', 'kind': args.kind, 'variant': variant, 'seq_len': args.seq,
           'batch_size': args.batch, 'precision': args.precision, 'compile_s': compile_s,
           'warmup_s': warm,
           'num_devices': args.devices,
           'step_ms': dt * 1e3, 'sentences_per_s': args.batch * args.devices / dt,
           'device': env['device'], 'jax': env['jax'], 'xla_flags': env['xla_flags'],
           'code_fingerprint': env['code_fingerprint']}
    if hasattr(run, 'compile_only_s'):   # lower + compile alone, without building params
      rec['compile_only_s'] = run.compile_only_s
    if hasattr(run, 'host_probe'):
      rec['host'] = run.host_probe()
    if hasattr(run, 'outputs'):   # the same weights and inputs for every variant of a run
      outputs = run.outputs()
      reference.setdefault('variant', variant)
      reference.setdefault('outputs', outputs)
      rec['logits_max_abs_diff'] = {
          'against': reference['variant'],
          'value': max(float(np.max(np.abs(a - b))) for a, b in zip(outputs,
                                                                    reference['outputs']))}
    if hasattr(run, 'compiler_options'):
      rec['xla_compiler_options'] = run.compiler_options
    hlo = compiled.as_text()
    rec['gemm_epilogues'] = gemm_epilogues(hlo)
    rec['gemm_backends'] = gemm_backends(hlo)
    rec['async_calls'] = hlo.count(' call-start(')   # computations put on another stream
    if getattr(run, 'windows_per_step', None):   # packed rows: sentences_per_s counts rows
      rec['windows_per_s'] = run.windows_per_step / dt
    if args.kind == 'train':
      flops = records.train_flops_per_sequence(config.num_layers, config.hidden_size,
                                               config.intermediate_size, args.seq)
      rec['mfu'] = records.mfu(flops, args.batch / dt)
    if variant in args.profile:
      trace_dir = os.path.join(args.out, f'trace_{args.kind}_{variant}')
      with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        run(5)
      with gzip.open(os.path.join(args.out, f'hlo_{args.kind}_{variant}.txt.gz'), 'wt') as f:
        f.write(hlo)
      rec['profile'] = annotate(summarise(trace_dir, 5), hlo_fusions(hlo))
      rec['collectives'] = hlo_collectives(hlo)
    _emit(args.out, rec)
    jax.clear_caches()


if __name__ == '__main__':
  main()
