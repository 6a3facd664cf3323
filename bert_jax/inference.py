"""Logits over a whole feature set, batch by batch, with per-batch latency."""
from __future__ import annotations

import contextlib
import functools
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from bert_jax import batches, mesh as mesh_lib, model, packing, steps
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.squad.features import Features

try:   # jax_embedded_constants_max_bytes has no public context manager
  from jax._src import config as _jax_config
except ImportError:  # pragma: no cover - a JAX that moved it
  _jax_config = None


# On GPU inference's matmuls come from cuBLAS only, as training's (train.py). With XLA's Triton
# gemm fusions the unrolled, stacked layers' 96 gemm fusions each read their own slice of the
# stack and were autotuned one by one: 35-37 s to compile a BERT-Large shape. With cuBLAS:
# 2.5-3.3 s, batch 1 the same (2.097 against 2.085 ms), batch 8 3 % and batch 64 2 % faster,
# logits within 3.5e-3 (seq 384 fp16, H200; docs/performance_notes.md, 52).
GPU_EVAL_COMPILER_OPTIONS = {'xla_gpu_enable_triton_gemm': False}


def default_compiler_options(mesh: Mesh) -> dict:
  """The XLA options make_eval_fn compiles with unless told otherwise (records carry them)."""
  return mesh_lib.gpu_options(mesh, GPU_EVAL_COMPILER_OPTIONS)


def make_eval_fn(mesh: Mesh, config: ModelConfig, policy: PrecisionPolicy,
                 scan_layers: bool = False, compiler_options: dict | None = None):
  """The jitted eval_step (`fn(params, batch)`: [batch, time, 2] logits): params replicated
  on every device; the batch split over the data axis; logits likewise. scan_layers:
  model.encode's (one compiled layer: faster to compile, slower at batch 1). compiler_options
  (XLA's) replace the default, GPU_EVAL_COMPILER_OPTIONS on GPU and none elsewhere; {}
  compiles with XLA's own defaults."""
  step = functools.partial(steps.eval_step, config=config, policy=policy,
                           scan_layers=scan_layers)
  return _jit_eval(mesh, step, (mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)),
                   compiler_options)


def _jit_eval(mesh: Mesh, fn, in_shardings, compiler_options: dict | None):
  """fn jitted as make_eval_fn's and compile_bound_eval's eval_step: traced under the mesh,
  so the LayerNorm kernel runs per device (layer_norm_kernel.py); logits split over the data
  axis; compiler_options None meaning default_compiler_options(mesh)."""
  if compiler_options is None:
    compiler_options = default_compiler_options(mesh)
  return jax.jit(mesh_lib.traced_under(mesh, fn, 'eval_step'), in_shardings=in_shardings,
                 out_shardings=mesh_lib.batch_sharding(mesh),
                 compiler_options=compiler_options or None)


# Weights past this many bytes stay arguments: XLA's HLO proto, which carries constants, tops
# out at 2 GB (BERT-Large: 0.67 GB in fp16/bf16, 1.34 GB in fp32).
BOUND_PARAMS_MAX_BYTES = 1_800_000_000


def can_bind(params) -> bool:
  """Whether compile_bound_eval can put these params into the program: one process (each
  array whole here) and under BOUND_PARAMS_MAX_BYTES."""
  leaves = jax.tree.leaves(params)
  return (jax.process_count() == 1
          and all(getattr(x, 'is_fully_addressable', True) for x in leaves)
          and sum(getattr(x, 'nbytes', 0) for x in leaves) <= BOUND_PARAMS_MAX_BYTES)


def compile_bound_eval(mesh: Mesh, config: ModelConfig, policy: PrecisionPolicy, params,
                       example_batch, scan_layers: bool = False,
                       compiler_options: dict | None = None):
  """eval_step compiled with `params` inside the program as constants (as an inference
  engine holds its weights), so that a call passes the batch alone: `fn(batch)`, which
  returns the float32 [batch, time, 2] logits (start, end).

  Each argument array costs the host a few microseconds a call (JAX's signature checks,
  PJRT's buffer handling; prepare_params makes 111 for BERT-Large): bound, a BERT-Large call
  on an H200 (fp16, seq 384) took 13 % less at batch 1 and 2.3 % at batch 8, with the same
  logits (docs/performance_notes.md, 58: weights with non-zero biases; entry 57's first
  figures, -5.4 % and -4.0 %, ran on zero biases, which XLA folds out of a bound program).
  The price: a compile for each set of weights (13-23 s a BERT-Large shape there, against
  make_eval_fn's 3-4 s for any weights), and the program's own copy of them on each device.
  example_batch (arrays or ShapeDtypeStructs) gives the shapes; params as prepare_params
  makes them. ValueError where can_bind is False."""
  if not can_bind(params):
    raise ValueError('compile_bound_eval: these params cannot be constants of the program '
                     f'(more than {BOUND_PARAMS_MAX_BYTES} bytes, or split over processes); '
                     'use make_eval_fn and pass them to each call')
  step = functools.partial(steps.eval_step, params, config=config, policy=policy,
                           scan_layers=scan_layers)
  fn = _jit_eval(mesh, step, (mesh_lib.batch_sharding(mesh),), compiler_options)
  # JAX embeds closed-over arrays in the program, unless its newer constant handling
  # (jax_use_simplified_jaxpr_constants) is on: that hoists any over
  # jax_embedded_constants_max_bytes back into arguments, so the limit is lifted for this
  # lowering (tests/test_inference.py checks the program takes the batch alone).
  with _embedded_constants_max_bytes(BOUND_PARAMS_MAX_BYTES):
    return fn.lower(example_batch).compile()


def _embedded_constants_max_bytes(n: int):
  """jax_embedded_constants_max_bytes raised to n for a `with` block: JAX's own context
  manager (thread-local) where jax._src still has it, else the public setting, set and put
  back (process-wide), else nothing (a JAX without the option embeds every constant)."""
  state = getattr(_jax_config, 'embedded_constants_max_bytes', None)
  if state is not None:
    return state(n)
  if hasattr(jax.config, 'jax_embedded_constants_max_bytes'):
    return _public_setting('jax_embedded_constants_max_bytes', n)
  return contextlib.nullcontext()


@contextlib.contextmanager
def _public_setting(name: str, value):
  old = getattr(jax.config, name)
  jax.config.update(name, value)
  try:
    yield
  finally:
    jax.config.update(name, old)


def prepare_params(params, policy: PrecisionPolicy, scan_layers: bool = False):
  """Params as inference calls want them, made once, with the same logits as the params as
  given: the matmul kernels cast to the compute dtype (eval_step would otherwise cast them
  on every call) and few arrays, since each argument array costs 2-3 us a call on an H200
  host (0.5-0.9 ms of a 2.5 ms BERT-Large batch-1 call with the layers as a list of 12 L + 7;
  docs/performance_notes.md, 15). For the unrolled layers (scan_layers False) each layer's
  kernels stay arrays of their own beside the stack of the rest (model.split_kernels, 8 + 4 L
  + 7 arrays): cuBLAS copies a slice of a stack before its matmul, which cost 0.1-0.2 ms more
  a batch-1 call than the 96 extra arguments (entry 53). For the scanned layers, all stacked
  (model.stack_layers, 19 arrays)."""
  dtype = policy.compute_dtype

  def prepare(p):
    stacked = model.stack_layers(p)
    layers = {name: {k: v.astype(dtype) if k == 'kernel' else v for k, v in leaf.items()}
              for name, leaf in stacked['layers'].items()}
    stacked = {**stacked, 'layers': layers}
    return stacked if scan_layers else model.split_kernels(stacked)
  return jax.jit(prepare)(params)


def predict_logits(params, features: Features, mesh: Mesh, config: ModelConfig,
                   policy: PrecisionPolicy, batch_size: int, scan_layers: bool = True,
                   packed: bool = False, max_windows: int = 8, bucket_width: int = 0,
                   group_by_width: bool = True):
  """Returns (start [N, L], end [N, L], timing) where timing holds the compile/warm-up time
  of the first batch, the latency of each later batch (ms, from its dispatch until its logits
  are ready; the next batch is made on the host meanwhile) and the windows each of those
  held.
  params may be split over the mesh (mesh.shard_state): they are gathered first.
  scan_layers (model.encode's): on by default here, since a whole dev set runs at one large
  batch, where the scanned layers ran within 1-4 % of unrolled (BERT-Large, batch 64, H200)
  and compile in about a second (unrolled: 2.5-5.6 s; docs/performance_notes.md, 51-53).
  packed: the windows packed into rows (packing.PackedEval; at most max_windows a row),
  batch_size then counting rows; each window's logits are those of the padded batches, and
  the positions past its length packing.OUTSIDE_LOGIT.
  bucket_width > 0: each call's batch cut to the multiple of it that holds its longest
  window (batches.eval_batches), one compiled program a width; each width's first call is
  left out of the latencies, as the first call is (warmup_s sums them); the positions past
  a call's width packing.OUTSIDE_LOGIT. group_by_width (with bucket_width > 0): the windows
  taken in order of their bucket width (batches.width_order), so each call holds windows of
  one width and the calls of a width run together; the logits come back in the features'
  order either way (False: consecutive windows a call, as the bench's calls take them)."""
  fn = make_eval_fn(mesh, config, policy, scan_layers)
  params = prepare_params(mesh_lib.gathered(mesh, params), policy, scan_layers)
  sharding = mesh_lib.batch_sharding(mesh)
  order = None   # the windows' order when grouped by width
  if packed:
    source = packing.PackedEval(features, batch_size, sharding, max_windows)
    calls = ((source.device_batch(i), source.windows(i)) for i in range(len(source)))
    total, out = len(source), source.outside_logits()
  else:
    if bucket_width and group_by_width:
      order = batches.width_order(features, bucket_width)
    calls = batches.eval_batches(features, batch_size, sharding, bucket_width, order)
    total, chunks = -(-len(features) // batch_size), []
  latencies, windows, warmup_s, widths = [], [], 0.0, set()
  calls = iter(calls)
  upcoming = next(calls, None)
  for i in tqdm(range(total), desc='predicting', leave=False):
    batch, count = upcoming
    t0 = time.perf_counter()
    logits = fn(params, batch)
    upcoming = next(calls, None)   # the next call's batch, made while this one runs
    logits = jax.block_until_ready(logits)
    dt = time.perf_counter() - t0
    width = batch['input_ids'].shape[1]
    if width not in widths:   # this width's first call compiles its program
      widths.add(width)
      warmup_s += dt
    else:
      latencies.append(dt * 1e3)
      windows.append(count)
    logits = _to_host(logits)
    if packed:
      source.unpack(i, logits, out)
    else:
      chunks.append(_full_width(logits[:count], features.max_seq_length))
  if packed:
    logits = out
  else:
    logits = np.concatenate(chunks)
    if order is not None:   # back in the features' order
      logits = logits[np.argsort(order)]
  timing = {'warmup_s': warmup_s, 'latencies_ms': latencies, 'windows_per_call': windows,
            'batch_size': batch_size, 'sentences': len(features), 'scan_layers': scan_layers,
            'packed': packed, 'bucket_width': bucket_width, 'widths': sorted(widths),
            'group_by_width': order is not None}
  return logits[..., 0], logits[..., 1], timing


def _full_width(logits: np.ndarray, width: int) -> np.ndarray:
  """[n, w, k] logits of a call cut to w positions, as [n, width, k]: packing.OUTSIDE_LOGIT
  past w (positions a window does not hold, as packed prediction leaves them)."""
  if logits.shape[1] == width:
    return logits
  out = np.full((logits.shape[0], width) + logits.shape[2:], packing.OUTSIDE_LOGIT,
                logits.dtype)
  out[:, :logits.shape[1]] = logits
  return out


def _to_host(logits: jax.Array) -> np.ndarray:
  """The eval step's one logits array in host memory, every process's rows where there are
  several: one copy and one wait (docs/performance_notes.md, 59 and 60)."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(logits, tiled=True))
  return np.asarray(jax.device_get(logits))
