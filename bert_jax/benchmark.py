"""Timed training and inference points, as records (NVIDIA's finetune_*_benchmark.sh grids).

Each point compiles ahead of time (compile_s) and warms up (warmup_s) apart from the
timed work. Training: N steps dispatched back to back with one sync at the end give
sentences/s; N more steps, each synchronised, give the step-time percentiles. Inference:
each batch synchronised, giving latency percentiles and throughput. Inputs are real SQuAD
windows when a SQuAD file is configured and present, else synthetic windows of the same
shape (random token ids, never zeros, full-length masks); each record's `data` says which.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from bert_jax import (batches, gpu_telemetry, inference, mesh as mesh_lib, model, optim,
                      packing, records, steps, train as train_lib)
from bert_jax.loss_scale import LossScale
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.settings import MeshSettings, TrainSettings
from bert_jax.squad.features import Features

# Training windows of ../shared's reconstructed SQuAD v1.1 train set (87,599 questions) at
# these lengths with DOC_STRIDE and max_query_length 64, counted with squad_features below;
# they project 2-epoch times when the bench runs on synthetic windows.
SQUAD_V11_TRAIN_FEATURES = {128: 191597, 384: 88641}
DOC_STRIDE = {128: 64, 384: 128}  # NVIDIA's benchmark scripts' pairs


def doc_stride_for(seq_len: int) -> int:
  return DOC_STRIDE.get(seq_len, seq_len // 3)


def synthetic(rng: np.random.Generator, n: int, seq: int, vocab: int) -> dict[str, np.ndarray]:
  """SQuAD-shaped windows: random ids in [1000, vocab), question/context types, full masks."""
  ids = rng.integers(min(1000, vocab - 1), vocab, (n, seq)).astype(np.int32)
  types = (np.arange(seq)[None] > seq // 4).astype(np.int32).repeat(n, 0)
  return {'input_ids': ids, 'token_type_ids': types, 'attention_mask': np.ones((n, seq), np.int32),
          'start_positions': rng.integers(0, seq, n).astype(np.int32),
          'end_positions': rng.integers(0, seq, n).astype(np.int32)}


def _memory_gb(compiled) -> float | None:
  """XLA's buffer plan for the step: arguments + outputs + temporaries - donated aliases, or
  XLA's own peak where larger: it counts the program's constants (the weights, where
  inference.compile_bound_eval put them in the program), which the sum leaves out."""
  try:
    m = compiled.memory_analysis()
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)
    return max(total, getattr(m, 'peak_memory_in_bytes', 0)) / 2 ** 30
  except Exception:  # noqa: BLE001 - not every backend reports it
    return None


def random_train_state(mesh, config: ModelConfig, policy: PrecisionPolicy, optimizer,
                       params_key: jax.Array, rng_key: jax.Array) -> steps.TrainState:
  """A replicated train state: random weights from params_key, dropout keys from rng_key."""
  scale = LossScale.for_policy(policy)
  init = jax.jit(lambda pk, rk: steps.create_state(model.init_params(pk, config), optimizer,
                                                   rk, scale),
                 out_shardings=mesh_lib.replicated(mesh))
  return init(params_key, rng_key)


def trained_like(params, key: jax.Array, scale: float = 0.02):
  """The same params with every bias ~ N(0, scale) and every LayerNorm scale ~ 1 + N(0, scale).

  Fresh BERT weights have zero biases and unit LayerNorm scales; a fine-tuned model has
  neither. With the weights compiled into the program (inference.compile_bound_eval) XLA
  folds an add of zeros away, and then runs a program a real model never gets: on an H200
  the BERT-Large matmuls lost their bias epilogues and took the residual add instead
  (docs/performance_notes.md, 58). Benchmarks time these weights."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, leaf), k in zip(leaves, keys):
    name = getattr(path[-1], 'key', None)
    if name == 'bias':
      leaf = scale * jax.random.normal(k, leaf.shape, leaf.dtype)
    elif name == 'scale':
      leaf = 1.0 + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out)


def random_trained_like(mesh, config: ModelConfig, key: jax.Array):
  """Replicated random float32 weights, with biases and LayerNorm scales as a trained model
  has them (trained_like)."""
  init = jax.jit(lambda k: trained_like(model.init_params(k, config), jax.random.fold_in(k, 1)),
                 out_shardings=mesh_lib.replicated(mesh))
  return init(key)


def random_params(mesh, config: ModelConfig, policy: PrecisionPolicy, key: jax.Array,
                  scan_layers: bool = False):
  """random_trained_like's weights as inference uses them (inference.prepare_params)."""
  return inference.prepare_params(random_trained_like(mesh, config, key), policy, scan_layers)


def _train_inputs(features: Features | None, global_batch: int, seq_len: int, vocab: int,
                  data_sharding, count: int, seed: int, max_windows: int = 0):
  """(`count` distinct device batches, the windows each holds), from features when given
  (packed rows of at most max_windows windows where that is > 0), else synthetic."""
  if features is not None:
    if max_windows:
      source = packing.PackedBatches(features, global_batch, seed, data_sharding, max_windows)
    else:
      source = batches.TrainBatches(features, global_batch, seed, data_sharding)
    steps_ = [i % source.steps_per_epoch for i in range(count)]
    return ([source.device_batch(i) for i in steps_],
            [source.windows(i) if max_windows else global_batch for i in steps_])
  rng = np.random.default_rng(seed)
  n_proc = jax.process_count()
  out = []
  for _ in range(count):
    host = synthetic(rng, global_batch, seq_len, vocab)
    local = global_batch // n_proc
    mine = {k: v[jax.process_index() * local:(jax.process_index() + 1) * local]
            for k, v in host.items()}
    out.append(batches.to_device(mine, data_sharding))
  return out, [global_batch] * count


def time_train(config: ModelConfig, policy: PrecisionPolicy, num_devices: int,
               batch_per_device: int, seq_len: int, *, steps_timed: int = 20,
               warmup_steps: int = 3, seed: int = 0, features: Features | None = None,
               shard_state: bool = False, packing_windows: int = 0) -> dict:
  """Sentences/s and step-time percentiles of the real train_step (AdamW, clipping, dropout).
  shard_state: the state split over the devices (mesh.shard_state) rather than replicated.
  packing_windows > 0: the features' windows packed into rows of at most that many
  (bert_jax.packing, as data.packing trains): batch_per_device counts rows, sentences/s
  counts the windows the timed steps held, and MFU the rows' work."""
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=num_devices))
  global_batch = batch_per_device * mesh.size
  optimizer = optim.make_optimizer(TrainSettings(), 10_000)
  data = mesh_lib.batch_sharding(mesh)
  key = jax.random.PRNGKey(seed)
  state = random_train_state(mesh, config, policy, optimizer, key, key)
  shardings = mesh_lib.state_shardings(mesh, state, shard_state)
  state = jax.device_put(state, shardings)
  if packing_windows and features is None:
    raise ValueError('time_train: packed rows need real windows (features)')
  inputs, windows = _train_inputs(features, global_batch, seq_len, config.vocab_size, data,
                                  min(steps_timed, 4), seed, packing_windows)
  fn = train_lib.jit_train_step(mesh, config, policy, optimizer, state_sharding=shardings)
  t0 = time.perf_counter()
  compiled = fn.lower(state, inputs[0]).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for i in range(warmup_steps):
    state, metrics = compiled(state, inputs[i % len(inputs)])
  jax.block_until_ready(state)
  warmup_s = time.perf_counter() - t0
  with gpu_telemetry.sample(min(mesh.size, jax.local_device_count())) as telemetry:
    t0 = time.perf_counter()
    for i in range(steps_timed):
      state, metrics = compiled(state, inputs[i % len(inputs)])
    jax.block_until_ready(state)
    total = time.perf_counter() - t0
  step_ms, call_ms = [], []
  for i in range(steps_timed):
    t = time.perf_counter()
    state, metrics = compiled(state, inputs[i % len(inputs)])
    call_ms.append((time.perf_counter() - t) * 1e3)   # the host's work before the GPU runs it
    jax.block_until_ready(state)
    step_ms.append((time.perf_counter() - t) * 1e3)
  rate = sum(windows[i % len(inputs)] for i in range(steps_timed)) / total
  row_rate = steps_timed * global_batch / total
  flops = records.train_flops_per_sequence(config.num_layers, config.hidden_size,
                                           config.intermediate_size, seq_len)
  n_feat = len(features) if features is not None else SQUAD_V11_TRAIN_FEATURES.get(seq_len)
  packed = {'packing': True, 'max_windows_per_row': packing_windows, 'rows_per_s': row_rate,
            'windows_per_step_mean': float(np.mean(windows))} if packing_windows else {}
  return {'kind': 'train', 'precision': policy.name, 'seq_len': seq_len,
          'batch_size': global_batch, 'batch_size_per_device': batch_per_device,
          'num_devices': mesh.size, 'data': 'squad' if features is not None else 'synthetic',
          'shard_state': mesh_lib.splits_state(mesh, shard_state),
          'xla_compiler_options': train_lib.default_compiler_options(mesh),
          'compile_s': compile_s, 'warmup_s': warmup_s, 'timed_steps': steps_timed,
          'step_time_ms_mean': total / steps_timed * 1e3,
          'step_time_ms': records.percentiles(step_ms),
          # how long a step call takes to return (the state's arrays handled and, on GPU, XLA
          # updating the step's CUDA graph): where it nears the step time, the host sets the pace
          'call_return_ms_p50': float(np.median(call_ms)),
          'state_arrays': len(jax.tree.leaves(state)),
          'sentences_per_s': rate, 'sentences_per_s_per_device': rate / mesh.size,
          'mfu': records.mfu(flops, row_rate / mesh.size), 'flops_per_sequence': flops,
          'peak_memory_gb': _memory_gb(compiled), 'final_loss': float(metrics['loss']),
          'train_features_2_epochs': 2 * n_feat if n_feat else None,
          'projected_2_epochs_s': 2 * n_feat / rate if n_feat else None,
          'model_layers': config.num_layers, 'model_hidden': config.hidden_size,
          'attention': config.attention, 'activation': config.activation,
          'hidden_dropout': config.hidden_dropout, **telemetry.fields(), **packed}


def wait_until_ready(tree) -> None:
  """Returns once every array in tree is ready, polling is_ready() rather than sleeping in
  jax.block_until_ready until woken: what torch.cuda.synchronize does by default (CUDA's
  scheduling 'auto' spins while a process has fewer contexts than cores), so both sides of a
  latency comparison wait alike. At batch 1 (BERT-Large, seq 384, fp16, H200) it returned
  0.04-0.07 ms a call sooner than block_until_ready (docs/performance_notes.md, 59). Once all
  are ready, block_until_ready returns at once (about 3 us) and raises if the call failed,
  so a failed call is never timed as a fast one."""
  leaves = jax.tree.leaves(tree)
  while not all(leaf.is_ready() for leaf in leaves):
    pass
  jax.block_until_ready(tree)


def warmup_inputs(inputs: list, warmup: int, width) -> list:
  """The calls warm-up makes: the first `warmup` of the inputs cycled, then the first input
  of each width those missed, so that no program's first run (module load, cuDNN plans:
  about 250 ms an H200, trim1) falls in the timed calls."""
  chosen = [inputs[i % len(inputs)] for i in range(warmup)]
  seen = {width(example) for example in chosen}
  for example in inputs:
    if width(example) not in seen:
      seen.add(width(example))
      chosen.append(example)
  return chosen


def time_infer(config: ModelConfig, policy: PrecisionPolicy, num_devices: int, batch: int,
               seq_len: int, *, iterations: int = 100, warmup: int = 5, seed: int = 0,
               features: Features | None = None, scan_layers: bool = False,
               bind_params: bool = True, packing_windows: int = 0,
               bucket_width: int = 0) -> dict:
  """Latency percentiles (each batch synchronised: wait_until_ready) and throughput of
  eval_step. With real windows (features) the calls cycle over at most 16 batches spread over
  the set (batches.spread_eval_batches), so they hold its mix of window lengths.
  packing_windows > 0: the features' windows packed into rows of at most that many
  (packing.PackedEval, as eval.packing predicts): `batch` counts rows a call, sentences/s the
  windows the timed calls held, and MFU the rows' work.
  bucket_width > 0: each call's batch of real windows cut to the multiple of it that holds
  its longest window (batches.eval_batches), one program compiled a width; compile_s adds
  them up, MFU counts the widths called.
  bind_params: the weights compiled into the program (inference.compile_bound_eval), so a
  call passes the batch alone; where they cannot be (inference.can_bind), passed as before.
  The record's params_bound says which."""
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=num_devices))
  data = mesh_lib.batch_sharding(mesh)
  params = random_params(mesh, config, policy, jax.random.PRNGKey(seed), scan_layers)
  if (packing_windows or bucket_width) and features is None:
    raise ValueError('time_infer: packed rows and buckets need real windows (features)')
  if packing_windows:
    source = packing.PackedEval(features, batch, data, packing_windows)
    calls = batches.spread(len(source), min(iterations, 16))
    inputs, windows = [source.device_batch(i) for i in calls], [source.windows(i) for i in calls]
  elif features is not None:
    inputs = [b for b, _ in batches.spread_eval_batches(features, batch, data,
                                                        min(iterations, 16), bucket_width)]
  else:
    host = synthetic(np.random.default_rng(seed), batch, seq_len, config.vocab_size)
    inputs = [batches.to_device({k: host[k] for k in steps.INPUT_KEYS}, data)]
  bound = bind_params and inference.can_bind(params)
  width = lambda inputs: inputs['input_ids'].shape[1]
  fn = None if bound else inference.make_eval_fn(mesh, config, policy, scan_layers)
  t0 = time.perf_counter()
  compiled, programs = {}, {}   # one a width: more than one only with buckets
  for example in inputs:
    w = width(example)
    if w in compiled:
      continue
    if bound:
      compiled[w] = programs[w] = inference.compile_bound_eval(mesh, config, policy, params,
                                                               example, scan_layers)
    else:
      compiled[w] = fn.lower(params, example).compile()
      programs[w] = functools.partial(compiled[w], params)
  call = (programs[width(inputs[0])] if len(programs) == 1
          else lambda inputs: programs[width(inputs)](inputs))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for example in warmup_inputs(inputs, warmup, width):
    wait_until_ready(call(example))
  warmup_s = time.perf_counter() - t0
  lat = []
  with gpu_telemetry.sample(min(mesh.size, jax.local_device_count())) as telemetry:
    for i in range(iterations):
      t = time.perf_counter()
      wait_until_ready(call(inputs[i % len(inputs)]))
      lat.append((time.perf_counter() - t) * 1e3)
  total_s = sum(lat) / 1e3
  sentences = (sum(windows[i % len(inputs)] for i in range(iterations)) if packing_windows
               else iterations * batch)
  rate, row_rate = sentences / total_s, iterations * batch / total_s
  widths = [width(inputs[i % len(inputs)]) for i in range(iterations)]
  flops = np.mean([records.infer_flops_per_sequence(config.num_layers, config.hidden_size,
                                                    config.intermediate_size, w)
                   for w in widths])
  packed = {'packing': True, 'max_windows_per_row': packing_windows, 'rows_per_s': row_rate,
            'windows_per_call_mean': sentences / iterations} if packing_windows else {}
  memory = [m for m in map(_memory_gb, compiled.values()) if m is not None]
  bucketed = {'bucket_width': bucket_width, 'widths': sorted(compiled),
              'width_mean': float(np.mean(widths))} if bucket_width else {}
  real = {'timed_windows': 'spread'} if packing_windows else {}   # rows batches.spread picks
  if features is not None and not packing_windows:   # the windows the timed calls held
    masks = [_local_rows(x['attention_mask']) for x in inputs]
    real = {'timed_windows': 'spread', 'real_tokens_mean': records.real_tokens_mean(
        [masks[i % len(inputs)] for i in range(iterations)])}
  return {'kind': 'infer', 'precision': policy.name, 'seq_len': seq_len, 'batch_size': batch,
          'num_devices': mesh.size, 'data': 'squad' if features is not None else 'synthetic',
          'compile_s': compile_s, 'warmup_s': warmup_s, 'sentences': sentences,
          'total_inference_s': total_s, 'latency_ms': records.percentiles(lat),
          'sentences_per_s': rate, 'mfu': records.mfu(flops, row_rate / mesh.size),
          'peak_memory_gb': max(memory, default=None),   # the widest program's
          'model_layers': config.num_layers, 'model_hidden': config.hidden_size,
          'attention': config.attention, 'activation': config.activation,
          'scan_layers': scan_layers, 'params_bound': bound, 'wait': 'spin',
          'xla_compiler_options': inference.default_compiler_options(mesh),
          **telemetry.fields(), **packed, **bucketed, **real}


def _local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded array (another host's are not addressable)."""
  return np.concatenate([np.asarray(s.data) for s in x.addressable_shards])


def is_out_of_memory(error: Exception) -> bool:
  text = str(error)
  return 'RESOURCE_EXHAUSTED' in text or 'Out of memory' in text or 'out of memory' in text


def sweep(points, measure, record_path: str, common: dict, bar=None) -> list[dict]:
  """Measures each point; an out-of-memory point is recorded as such and the sweep goes on.

  Each record is appended as soon as its point is done, so a sweep that dies keeps every
  finished point. `bar` (a tqdm bar) advances once per point.
  """
  out = []
  for point in points:
    if bar is not None:
      bar.set_description(_label(point))
    try:
      rec = measure(**point)
    except Exception as e:  # noqa: BLE001 - only OOM is swallowed, the rest re-raised
      if not is_out_of_memory(e):
        raise
      logging.warning('out of memory at %s', _describe(point))
      rec = {**_describe(point), 'status': 'oom', 'error': str(e).splitlines()[0][:300]}
    rec.setdefault('status', 'ok')
    out.append(records.append(record_path, {**common, **rec}))
    if bar is not None:
      bar.update(1)
      if rec['status'] == 'ok':
        bar.set_postfix(sent_s=f"{rec['sentences_per_s']:.1f}")
    jax.clear_caches()
  return out


def _label(point: dict) -> str:
  d = _describe(point)
  batch = d.get('batch_size_per_device', d.get('batch'))
  return f"{d.get('precision')} seq {d.get('seq_len')} batch {batch} x{d.get('num_devices')}"


def _describe(point: dict) -> dict:
  """A point's plain fields for its record (no dataclasses, no feature arrays)."""
  out = {k: v for k, v in point.items()
         if not dataclasses.is_dataclass(v) and not isinstance(v, Features)}
  if 'batch_per_device' in out:
    out['batch_size_per_device'] = out.pop('batch_per_device')
  if 'policy' in point:
    out['precision'] = point['policy'].name
  return out


def squad_features(data, kind: str, seq_len: int, vocab_dir: str) -> Features | None:
  """Windows of the configured SQuAD file at `seq_len` (NVIDIA's stride), or None when the
  file is not configured or absent (the sweep then uses synthetic windows and says so)."""
  from bert_jax.squad import features as features_lib, sources
  from bert_jax.squad.reader import SAMPLE_DIR
  from bert_jax.tokenizer import load_tokenizer, vocab_fingerprint
  spec = data.train_file if kind == 'train' else data.dev_file
  if spec != 'sample' and not os.path.exists(spec):
    logging.info('bench: %s file %r not present; synthetic windows', kind, spec)
    return None
  tokenizer = load_tokenizer(vocab_dir or SAMPLE_DIR)
  cache_dir = data.cache_dir or sources.default_cache_dir()
  examples, _, identity = sources.read(spec, 'train' if kind == 'train' else 'dev',
                                       is_training=kind == 'train', version_2=data.version_2,
                                       cache_dir=cache_dir)
  return features_lib.cached_featurize(
      examples, tokenizer, data_identity=identity, vocab_fingerprint=vocab_fingerprint(tokenizer),
      cache_dir=cache_dir, is_training=kind == 'train', max_seq_length=seq_len,
      doc_stride=doc_stride_for(seq_len), max_query_length=min(data.max_query_length, seq_len // 2))


def run(config, workdir: str) -> list[dict]:
  """A sweep from a bench config (configs/bench_train.py, configs/bench_infer.py)."""
  from bert_jax import settings as settings_lib
  s = settings_lib.from_config(config)
  mesh_lib.use_compilation_cache(s.train.compilation_cache_dir)
  b = s.bench
  if b is None:
    raise settings_lib.ConfigError('bench', None, 'this config has no bench section; use '
                                   'configs/bench_train.py or configs/bench_infer.py')
  shape = s.model_config(ModelConfig.preset(s.source.preset))
  present = jax.device_count()
  path = os.path.join(workdir, 'records.jsonl')
  common = {'config': s.name, 'source': 'bench'}
  out = []
  feats = {seq: squad_features(s.data, b.kind, seq, s.source.vocab_dir) for seq in b.seq_lens}
  spec = s.data.train_file if b.kind == 'train' else s.data.dev_file
  for field, value, what in (('packing', b.packing, 'packs'), ('bucket_width', b.bucket_width,
                                                                'cuts')):
    if value and any(f is None for f in feats.values()):
      raise settings_lib.ConfigError(
          f'bench.{field}', value, f'{what} real SQuAD windows, and the {b.kind} file {spec!r} '
          f"is not there: give data.{'train' if b.kind == 'train' else 'dev'}_file, or drop "
          f'bench.{field}')
  top_id = max((int(f.input_ids.max()) for f in feats.values() if f is not None), default=-1)
  if top_id >= shape.vocab_size:  # a small preset with a bigger real vocabulary
    logging.info('bench: vocab_size %d -> %d to hold the tokenizer ids', shape.vocab_size,
                 top_id + 1)
    shape = shape.replace(vocab_size=top_id + 1)
  measure = time_train if b.kind == 'train' else time_infer
  todo = []
  for n in b.num_devices:
    if n > present:
      out.append(records.append(path, {**common, 'kind': b.kind, 'num_devices': n,
                                       'status': f'skipped: only {present} device(s)'}))
      continue
    for prec in b.precisions:
      policy = PrecisionPolicy(prec, s.precision.fp32_matmul)
      cfg = shape if prec != 'fp32' or shape.attention != 'cudnn' else shape.replace(
          attention='fused')
      for seq in b.seq_lens:
        for bs in b.batch_sizes:
          point = dict(config=cfg, policy=policy, num_devices=n, seq_len=seq,
                       features=feats[seq],
                       packing_windows=s.data.max_windows_per_row if b.packing else 0)
          if b.kind == 'train':
            point.update(batch_per_device=bs, steps_timed=b.steps,
                         shard_state=s.mesh.shard_state)
          else:
            point.update(batch=bs, iterations=b.steps, scan_layers=b.scan_layers,
                         bind_params=b.bind_params, bucket_width=b.bucket_width)
          todo.append(point)
  with tqdm(total=len(todo), unit='point', disable=jax.process_index() != 0) as bar:
    out += sweep(todo, measure, path, common, bar)
  return out
