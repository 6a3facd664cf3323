"""Timed training and inference points on synthetic SQuAD-shaped batches, as records.

Each point compiles and warms up apart, then times N steps with one block_until_ready at
the end (training) or one per batch (inference latency). Inputs are random token ids
(never zeros) with full-length attention masks, so every point does the full work.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time

import jax
import numpy as np

from bert_jax import batches, mesh as mesh_lib, model, optim, records, steps
from bert_jax.loss_scale import LossScale
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.settings import MeshSettings, TrainSettings

SQUAD_V11_TRAIN_FEATURES = {128: 0, 384: 88641}  # seq 384/stride 128 (measured here)


def _synthetic(rng, n, seq, vocab):
  ids = rng.integers(1000, vocab, (n, seq)).astype(np.int32)
  return {'input_ids': ids, 'token_type_ids': (np.arange(seq)[None] > seq // 4).astype(np.int32)
          .repeat(n, 0), 'attention_mask': np.ones((n, seq), np.int32),
          'start_positions': rng.integers(0, seq, n).astype(np.int32),
          'end_positions': rng.integers(0, seq, n).astype(np.int32)}


def _peak_memory_gb(mesh) -> float:
  try:
    stats = mesh.devices.flat[0].memory_stats() or {}
    return stats.get('peak_bytes_in_use', 0) / 2 ** 30
  except Exception:
    return 0.0


def time_train(config: ModelConfig, policy: PrecisionPolicy, num_devices: int,
               batch_per_device: int, seq_len: int, *, steps_timed: int = 20,
               warmup_steps: int = 3, seed: int = 0) -> dict:
  """Sentences/s of the real train_step (AdamW, clipping, dropout) at one shape."""
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=num_devices))
  global_batch = batch_per_device * mesh.size
  optimizer = optim.make_optimizer(TrainSettings(), 10_000)
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  scale = LossScale.create(2.0 ** 15, 2000) if policy.needs_loss_scaling else LossScale.disabled()
  init = jax.jit(lambda k: steps.create_state(model.init_params(k, config), optimizer, k, scale),
                 out_shardings=rep)
  state = init(jax.random.PRNGKey(seed))
  fn = jax.jit(functools.partial(steps.train_step, config=config, policy=policy,
                                 optimizer=optimizer),
               in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)
  rng = np.random.default_rng(seed)
  inputs = [batches.to_device(_synthetic(rng, global_batch, seq_len, config.vocab_size), data)
            for _ in range(2)]
  t0 = time.perf_counter()
  for i in range(warmup_steps):
    state, metrics = fn(state, inputs[i % 2])
  jax.block_until_ready(state)
  warmup_s = time.perf_counter() - t0
  t_start = time.perf_counter()
  for i in range(steps_timed):
    state, metrics = fn(state, inputs[i % 2])
  jax.block_until_ready(state)
  total = time.perf_counter() - t_start
  rate = steps_timed * global_batch / total
  flops = records.train_flops_per_sequence(config.num_layers, config.hidden_size,
                                           config.intermediate_size, seq_len)
  n_feat = SQUAD_V11_TRAIN_FEATURES.get(seq_len) or 0
  return {'kind': 'train', 'precision': policy.name, 'seq_len': seq_len,
          'batch_size': global_batch, 'batch_size_per_device': batch_per_device,
          'num_devices': mesh.size, 'data': 'synthetic', 'warmup_s': warmup_s,
          'timed_steps': steps_timed, 'step_time_ms_mean': total / steps_timed * 1e3,
          'sentences_per_s': rate, 'sentences_per_s_per_device': rate / mesh.size,
          'mfu': records.mfu(flops, rate / mesh.size), 'peak_memory_gb': _peak_memory_gb(mesh),
          'final_loss': float(metrics['loss']),
          'projected_2_epochs_s': 2 * n_feat / rate if n_feat else None,
          'model_layers': config.num_layers, 'model_hidden': config.hidden_size,
          'attention': config.attention}


def time_infer(config: ModelConfig, policy: PrecisionPolicy, num_devices: int, batch: int,
               seq_len: int, *, iterations: int = 100, warmup: int = 5, seed: int = 0) -> dict:
  """Latency percentiles (each batch synchronised) and throughput of eval_step."""
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=num_devices))
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  params = jax.jit(lambda k: jax.tree.map(lambda x: x.astype(policy.compute_dtype),
                                          model.init_params(k, config)),
                   out_shardings=rep)(jax.random.PRNGKey(seed))
  fn = jax.jit(functools.partial(steps.eval_step, config=config, policy=policy),
               in_shardings=(rep, data), out_shardings=data)
  rng = np.random.default_rng(seed)
  host = _synthetic(rng, batch, seq_len, config.vocab_size)
  inputs = batches.to_device({k: host[k] for k in steps.INPUT_KEYS}, data)
  t0 = time.perf_counter()
  for _ in range(warmup):
    jax.block_until_ready(fn(params, inputs))
  warmup_s = time.perf_counter() - t0
  lat = []
  for _ in range(iterations):
    t = time.perf_counter()
    jax.block_until_ready(fn(params, inputs))
    lat.append((time.perf_counter() - t) * 1e3)
  total_s = sum(lat) / 1e3
  return {'kind': 'infer', 'precision': policy.name, 'seq_len': seq_len, 'batch_size': batch,
          'num_devices': mesh.size, 'data': 'synthetic', 'warmup_s': warmup_s,
          'sentences': iterations * batch, 'total_inference_s': total_s,
          'latency_ms': records.percentiles(lat), 'sentences_per_s': iterations * batch / total_s,
          'model_layers': config.num_layers, 'model_hidden': config.hidden_size,
          'attention': config.attention}


def is_out_of_memory(error: Exception) -> bool:
  text = str(error)
  return 'RESOURCE_EXHAUSTED' in text or 'Out of memory' in text or 'out of memory' in text


def sweep(points, measure, record_path: str, common: dict) -> list[dict]:
  """Measures each point; an out-of-memory point is recorded as such and the sweep goes on."""
  out = []
  for point in points:
    try:
      rec = measure(**point)
    except Exception as e:  # noqa: BLE001 - only OOM is swallowed, the rest re-raised
      if not is_out_of_memory(e):
        raise
      logging.warning('out of memory at %s', point)
      rec = {**{k: v for k, v in point.items() if not dataclasses.is_dataclass(v)},
             'status': 'oom', 'error': str(e).splitlines()[0][:300]}
    rec.setdefault('status', 'ok')
    out.append(records.append(record_path, {**common, **rec}))
    jax.clear_caches()
  return out


def run(config, workdir: str) -> list[dict]:
  """A sweep from a bench config (configs/bench_train.py, configs/bench_infer.py)."""
  import os
  from bert_jax import settings as settings_lib
  s = settings_lib.from_config(config)
  b = config.bench
  shape = s.model_config(ModelConfig.preset(s.source.preset))
  present = jax.device_count()
  path = os.path.join(workdir, 'records.jsonl')
  common = {'config': s.name, 'source': 'bench'}
  out = []
  for n in b.num_devices:
    if n > present:
      out.append(records.append(path, {**common, 'kind': b.kind, 'num_devices': n,
                                       'status': f'skipped: only {present} device(s)'}))
      continue
    for prec in b.precisions:
      policy = PrecisionPolicy(prec)
      cfg = shape if prec != 'fp32' or shape.attention != 'cudnn' else shape.replace(
          attention='fused')
      for seq in b.seq_lens:
        if b.kind == 'train':
          points = [dict(config=cfg, policy=policy, num_devices=n, batch_per_device=bs,
                         seq_len=seq, steps_timed=b.steps) for bs in b.batch_sizes]
          out += sweep(points, time_train, path, common)
        else:
          points = [dict(config=cfg, policy=policy, num_devices=n, batch=bs, seq_len=seq,
                         iterations=b.steps) for bs in b.batch_sizes]
          out += sweep(points, time_infer, path, common)
  return out
