"""Deterministic, resumable batches: step -> examples, each process feeding its own slice."""
from __future__ import annotations

import collections
from typing import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding

from bert_jax.squad.features import Features
from bert_jax.errors import ConfigError

TRAIN_KEYS = ('input_ids', 'token_type_ids', 'attention_mask', 'start_positions',
              'end_positions')


class TrainBatches:
  """Epoch e visits the features in the order permutation(seed, e); step s is a pure function
  of (seed, s), so a resumed run sees exactly the batches an uninterrupted run would."""

  def __init__(self, features: Features, global_batch: int, seed: int, sharding: NamedSharding):
    n_proc = jax.process_count()
    if global_batch % sharding.mesh.size:
      raise ConfigError('train.batch_size', global_batch,
                        f'must be a multiple of the {sharding.mesh.size} devices in the mesh')
    if len(features) < global_batch:
      raise ConfigError('train.batch_size', global_batch,
                        f'larger than the {len(features)} training features')
    self.features, self.global_batch, self.seed = features, global_batch, seed
    self.sharding = sharding
    self.local = global_batch // n_proc
    self.offset = jax.process_index() * self.local
    self.steps_per_epoch = len(features) // global_batch

  def indices(self, step: int) -> np.ndarray:
    epoch, i = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.features))
    return order[i * self.global_batch:(i + 1) * self.global_batch]

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    idx = np.sort(self.indices(step)[self.offset:self.offset + self.local])
    f = self.features
    return {'input_ids': f.input_ids[idx], 'token_type_ids': f.token_type_ids[idx].astype(np.int32),
            'attention_mask': f.attention_mask[idx].astype(np.int32),
            'start_positions': f.start_positions[idx], 'end_positions': f.end_positions[idx]}

  def device_batch(self, step: int) -> dict[str, jax.Array]:
    return to_device(self.host_batch(step), self.sharding)


def to_device(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """This process's rows -> one global array per key, split over the data axis."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def prefetch(make, steps, depth: int = 2) -> Iterator:
  """Yields make(step) for each step, keeping `depth` batches in flight on the devices."""
  queue = collections.deque()
  steps = iter(steps)
  for step in steps:
    queue.append(make(step))
    if len(queue) >= depth:
      break
  for step in steps:
    yield queue.popleft()
    queue.append(make(step))
  while queue:
    yield queue.popleft()


def eval_batches(features: Features, global_batch: int, sharding: NamedSharding):
  """Fixed-shape batches over all features (the last one padded), with the real row count."""
  n_proc, pid = jax.process_count(), jax.process_index()
  local = global_batch // n_proc
  for start in range(0, len(features), global_batch):
    idx = np.arange(start, min(start + global_batch, len(features)))
    count = len(idx)
    idx = np.concatenate([idx, np.full(global_batch - count, idx[-1])])
    rows = idx[pid * local:(pid + 1) * local]
    yield to_device(features.model_inputs(rows), sharding), count
