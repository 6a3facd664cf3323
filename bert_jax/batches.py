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


def process_rows(global_batch: int, sharding: NamedSharding,
                 field: str = 'train.batch_size') -> tuple[int, int]:
  """This process's rows of each global batch: (how many, the first). ConfigError (naming
  the setting `field`) unless the global batch splits evenly over the mesh's devices."""
  if global_batch % sharding.mesh.size:
    raise ConfigError(field, global_batch,
                      f'must be a multiple of the {sharding.mesh.size} devices in the mesh')
  local = global_batch // jax.process_count()
  return local, jax.process_index() * local


def bucket_widths(features: Features, bucket_width: int) -> np.ndarray:
  """Each window's length rounded up to a multiple of bucket_width, at most max_seq_length
  (a window's tokens come first, its padding after)."""
  lengths = features.attention_mask.sum(axis=1)
  return np.minimum(-(-lengths // bucket_width) * bucket_width, features.max_seq_length)


class TrainBatches:
  """Epoch e visits the features in the order permutation(seed, e); step s is a pure function
  of (seed, s), so a resumed run sees exactly the batches an uninterrupted run would.

  With `bucket_width` > 0 each batch holds windows of similar length and is cut to the
  multiple of `bucket_width` that holds its longest window (one compiled step per width).
  An epoch's windows are grouped by that width in permuted order, each group split into
  full batches (a group's remainder joins the next wider group; the widest group's
  remainder is dropped, as without buckets), and the batches are then shuffled.
  """

  def __init__(self, features: Features, global_batch: int, seed: int, sharding: NamedSharding,
               bucket_width: int = 0):
    self.local, self.offset = process_rows(global_batch, sharding)
    if len(features) < global_batch:
      raise ConfigError('train.batch_size', global_batch,
                        f'larger than the {len(features)} training features')
    self.features, self.global_batch, self.seed = features, global_batch, seed
    self.sharding = sharding
    self.steps_per_epoch = len(features) // global_batch
    self.bucket_width = bucket_width
    if bucket_width:
      self.widths = bucket_widths(features, bucket_width)
    self._epoch_cache: tuple[int, list[np.ndarray]] | None = None

  def _bucketed_epoch(self, epoch: int) -> list[np.ndarray]:
    if self._epoch_cache is None or self._epoch_cache[0] != epoch:
      order = np.random.default_rng([self.seed, epoch]).permutation(len(self.features))
      out, carry = [], np.empty(0, np.int64)
      for width in np.unique(self.widths):
        members = np.concatenate([carry, order[self.widths[order] == width]])
        full = len(members) // self.global_batch * self.global_batch
        out += np.split(members[:full], full // self.global_batch) if full else []
        carry = members[full:]
      shuffle = np.random.default_rng([self.seed, epoch, 1]).permutation(len(out))
      self._epoch_cache = (epoch, [out[i] for i in shuffle])
    return self._epoch_cache[1]

  def indices(self, step: int) -> np.ndarray:
    epoch, i = divmod(step, self.steps_per_epoch)
    if self.bucket_width:
      return self._bucketed_epoch(epoch)[i]
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.features))
    return order[i * self.global_batch:(i + 1) * self.global_batch]

  def windows(self, step: int) -> int:
    """Sentences the step trains on: the global batch (packed rows hold more)."""
    return self.global_batch

  def step_width(self, step: int) -> int:
    """The sequence length step's batch is cut to (max_seq_length without buckets)."""
    if not self.bucket_width:
      return self.features.max_seq_length
    return int(self.widths[self.indices(step)].max())

  def token_share(self, epoch: int = 0) -> float:
    """Positions an epoch's batches hold (padding included) as a share of those of the same
    steps padded to max_seq_length: about the share of the padded run's work left (the
    matmuls scale with it; attention, a few % at 384, with the square of the width)."""
    steps = range(epoch * self.steps_per_epoch, (epoch + 1) * self.steps_per_epoch)
    return sum(self.step_width(s) for s in steps) / (
        self.steps_per_epoch * self.features.max_seq_length)

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    global_idx = self.indices(step)
    width = self.step_width(step)
    idx = np.sort(global_idx[self.offset:self.offset + self.local])
    f = self.features
    cut = lambda a: a[idx, :width]
    return {'input_ids': cut(f.input_ids), 'token_type_ids': cut(f.token_type_ids).astype(np.int32),
            'attention_mask': cut(f.attention_mask).astype(np.int32),
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


def _eval_batch(features: Features, idx: np.ndarray, global_batch: int,
                sharding: NamedSharding, widths: np.ndarray | None):
  """The batch of windows `idx` (its last row repeated up to global_batch) on the devices,
  with its real row count; cut to its longest window's width where `widths` are given."""
  local = global_batch // jax.process_count()
  count = len(idx)
  idx = np.concatenate([idx, np.full(global_batch - count, idx[-1])])
  rows = idx[jax.process_index() * local:(jax.process_index() + 1) * local]
  inputs = features.model_inputs(rows)
  if widths is not None:
    width = int(widths[idx].max())
    inputs = {k: v[:, :width] for k, v in inputs.items()}
  return to_device(inputs, sharding), count


def width_order(features: Features, bucket_width: int) -> np.ndarray:
  """The windows' indices ordered by their bucket width, narrowest first, in the features'
  order within a width (a stable sort: every process gets the same order). Batches taken in
  this order each hold windows of one width, so each is cut to its own windows' width rather
  than its widest neighbour's, and the calls of one width (one compiled program) run
  together. On the SQuAD v1.1 dev set at 384 with buckets of 64 it cuts the tokens a
  prediction computes by 1.17 x at batch 8 and 1.50 x at batch 64 over consecutive
  windows (docs/performance_notes.md, 96)."""
  return np.argsort(bucket_widths(features, bucket_width), kind='stable')


def eval_batches(features: Features, global_batch: int, sharding: NamedSharding,
                 bucket_width: int = 0, order: np.ndarray | None = None):
  """Fixed-shape batches over all features (the last one padded), with the real row count.
  order: the windows' indices in the order the batches take them (width_order), else the
  features' own. bucket_width > 0: each batch cut to the multiple of it that holds the
  batch's longest window (at most the windows' width), the same on every process."""
  widths = bucket_widths(features, bucket_width) if bucket_width else None
  order = np.arange(len(features)) if order is None else order
  for start in range(0, len(features), global_batch):
    yield _eval_batch(features, order[start:start + global_batch], global_batch, sharding,
                      widths)


def spread(total: int, count: int) -> np.ndarray:
  """`count` indices in [0, total) spread evenly from the first to the last (fewer where
  total < count: each once)."""
  if total <= 0 or count <= 0:
    return np.zeros(0, int)
  return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))


def spread_eval_batches(features: Features, global_batch: int, sharding: NamedSharding,
                        count: int, bucket_width: int = 0) -> list:
  """`count` batches of consecutive windows, as eval_batches makes them, whose starts are
  spread evenly over the features, the first at window 0 and the last ending at the last
  window: the calls a benchmark times, so that they hold the set's mix of window lengths
  rather than its first article's (the first 16 batches of 8 dev windows at 384 cut to 148
  tokens on average, the whole dev set's to 247)."""
  widths = bucket_widths(features, bucket_width) if bucket_width else None
  starts = spread(max(len(features) - global_batch, 0) + 1, count)
  return [_eval_batch(features, np.arange(s, min(s + global_batch, len(features))),
                      global_batch, sharding, widths) for s in starts]
