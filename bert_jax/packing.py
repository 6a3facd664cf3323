"""Sequence packing: several SQuAD windows share one row of max_seq_length.

A padded batch spends most of its work on padding (a SQuAD v1.1 window at 384 holds 172
tokens on average). Packing lays whole windows end to end in rows; each window keeps its own
positions (from 0) and token types, attends only to itself (bert_jax.attention), and has its
own start/end cross-entropy over its own positions (bert_jax.steps.span_loss). The padding
at a row's end forms one more segment, so every position belongs to exactly one segment.

Rows per step are fixed (train.batch_size counts rows), so one compiled step serves every
batch; the windows per step vary around batch_size / share, share being the mean window
length over max_seq_length (about 0.46 on SQuAD v1.1 at 384).
"""
from __future__ import annotations

import bisect
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding

from bert_jax.batches import process_rows, to_device
from bert_jax.errors import ConfigError
from bert_jax.squad.features import Features


class Segments(NamedTuple):
  """Where each row's windows lie: what the model needs beyond the token arrays.

  ids [B, T]: 1..k for the row's k windows, 0 for the padding at its end.
  positions [B, T]: each token's position inside its window (the padding continues from 0).
  starts, lengths [B, M + 1]: first position and length of each window, then of the padding
    segment where there is one; -1 where a row has fewer (cuDNN's packed-attention layout).
  """
  ids: jax.Array
  positions: jax.Array
  starts: jax.Array
  lengths: jax.Array


SEGMENT_KEYS = ('segment_ids', 'position_ids', 'segment_starts', 'segment_lengths')


def segments_of(batch) -> Segments | None:
  """The Segments of a packed batch dict, None for an ordinary (one window a row) batch."""
  if 'segment_ids' not in batch:
    return None
  return Segments(*(batch[k] for k in SEGMENT_KEYS))


def window_lengths(features: Features) -> np.ndarray:
  """Each window's token count (its mask's ones: the padding is at the end), int64."""
  return features.attention_mask.sum(axis=1).astype(np.int64)


def pack_rows(lengths: np.ndarray, order: np.ndarray, row_length: int,
              max_windows: int) -> list[np.ndarray]:
  """Best-fit decreasing: windows (longest first; ties in `order`) each go to the open row
  with the least room that still fits them and holds fewer than max_windows windows.

  Rows come back as arrays of window indices. Windows of equal length are interchangeable,
  so the row count (and every row's lengths) depends on the lengths alone: `order` only
  decides which of equally long windows share a row.
  """
  rank = np.empty(len(order), np.int64)
  rank[order] = np.arange(len(order))
  by_length = np.lexsort((rank, -lengths))
  rows: list[list[int]] = []
  open_by_room: dict[int, list[int]] = {}     # room -> rows with that room (a stack)
  rooms: list[int] = []                         # sorted rooms that have open rows
  for w in by_length:
    need = int(lengths[w])
    at = bisect.bisect_left(rooms, need)
    if at < len(rooms):
      room = rooms[at]
      row = open_by_room[room].pop()
      if not open_by_room[room]:
        del open_by_room[room]
        rooms.pop(at)
    else:
      room, row = row_length, len(rows)
      rows.append([])
    rows[row].append(int(w))
    room -= need
    if room > 0 and len(rows[row]) < max_windows:
      if room not in open_by_room:
        open_by_room[room] = []
        bisect.insort(rooms, room)
      open_by_room[room].append(row)
  return [np.asarray(r) for r in rows]


class PackedBatches:
  """TrainBatches' interface over packed rows: step -> rows, a pure function of (seed, step).

  Epoch e packs every window (in the order permutation(seed, e) among equal lengths), shuffles
  the rows and cuts them into steps of `global_batch` rows; the last rows that do not fill a
  step are dropped, as the padded batches drop their remainder.
  """

  def __init__(self, features: Features, global_batch: int, seed: int, sharding: NamedSharding,
               max_windows: int):
    self.local, self.offset = process_rows(global_batch, sharding)
    self.features, self.global_batch, self.seed = features, global_batch, seed
    self.sharding, self.max_windows = sharding, max_windows
    self.lengths = window_lengths(features)
    self._epoch_cache: tuple[int, list[np.ndarray]] | None = None
    rows = self._rows(0)
    self.rows_per_epoch = len(rows)
    # The label and segment arrays are as wide as the most windows any row holds: the same in
    # every epoch (pack_rows), and cuDNN's packed attention runs faster the fewer segment
    # slots a row has (docs/performance_notes.md, 31).
    self.row_windows = max(len(r) for r in rows)
    if self.rows_per_epoch < global_batch:
      raise ConfigError('train.batch_size', global_batch,
                        f'more rows than the {self.rows_per_epoch} the {len(features)} training '
                        'windows pack into; lower it')
    self.steps_per_epoch = self.rows_per_epoch // global_batch

  def _rows(self, epoch: int) -> list[np.ndarray]:
    if self._epoch_cache is None or self._epoch_cache[0] != epoch:
      order = np.random.default_rng([self.seed, epoch]).permutation(len(self.features))
      rows = pack_rows(self.lengths, order, self.features.max_seq_length, self.max_windows)
      shuffle = np.random.default_rng([self.seed, epoch, 1]).permutation(len(rows))
      self._epoch_cache = (epoch, [rows[i] for i in shuffle])
    return self._epoch_cache[1]

  def step_rows(self, step: int) -> list[np.ndarray]:
    """The global batch's rows, each an array of window indices."""
    epoch, i = divmod(step, self.steps_per_epoch)
    return self._rows(epoch)[i * self.global_batch:(i + 1) * self.global_batch]

  def indices(self, step: int) -> np.ndarray:
    """Every window the step trains on."""
    return np.concatenate(self.step_rows(step))

  def windows(self, step: int) -> int:
    return sum(len(r) for r in self.step_rows(step))

  def step_width(self, step: int) -> int:
    return self.features.max_seq_length

  def token_share(self, epoch: int = 0) -> float:
    """Positions the epoch's steps hold as a share of the same windows padded one a row."""
    steps = range(epoch * self.steps_per_epoch, (epoch + 1) * self.steps_per_epoch)
    return self.steps_per_epoch * self.global_batch / sum(self.windows(s) for s in steps)

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    rows = self.step_rows(step)[self.offset:self.offset + self.local]
    return pack_host_rows(self.features, rows, self.row_windows, self.lengths)

  def device_batch(self, step: int) -> dict[str, jax.Array]:
    return to_device(self.host_batch(step), self.sharding)


def pack_host_rows(f: Features, rows: list[np.ndarray], max_windows: int,
                   lengths: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """The arrays of rows holding the given windows: token arrays [R, T], segment arrays and
  start/end labels [R, max_windows] (positions in the row; -1 where a row has fewer).
  lengths: every window's token count, where the caller has them (else summed here)."""
  if lengths is None:
    lengths = window_lengths(f)
  n, t = len(rows), f.max_seq_length
  out = {'input_ids': np.zeros((n, t), np.int32), 'token_type_ids': np.zeros((n, t), np.int32),
         'attention_mask': np.zeros((n, t), np.int32),
         'start_positions': np.full((n, max_windows), -1, np.int32),
         'end_positions': np.full((n, max_windows), -1, np.int32),
         'segment_ids': np.zeros((n, t), np.int32), 'position_ids': np.zeros((n, t), np.int32),
         'segment_starts': np.full((n, max_windows + 1), -1, np.int32),
         'segment_lengths': np.full((n, max_windows + 1), -1, np.int32)}
  for r, windows in enumerate(rows):
    at = 0
    for k, w in enumerate(windows):
      length = int(lengths[w])
      span = slice(at, at + length)
      out['input_ids'][r, span] = f.input_ids[w, :length]
      out['token_type_ids'][r, span] = f.token_type_ids[w, :length]
      out['attention_mask'][r, span] = 1
      out['segment_ids'][r, span] = k + 1
      out['position_ids'][r, span] = np.arange(length)
      out['segment_starts'][r, k], out['segment_lengths'][r, k] = at, length
      out['start_positions'][r, k] = at + f.start_positions[w]
      out['end_positions'][r, k] = at + f.end_positions[w]
      at += length
    if at < t:                                  # the padding: one more segment
      out['position_ids'][r, at:] = np.arange(t - at)
      out['segment_starts'][r, len(windows)] = at
      out['segment_lengths'][r, len(windows)] = t - at
  return out


# A window's logit past its length, where PackedEval.unpack writes a window's logits: below
# any real logit, so never among postprocess's n-best starts or ends, and finite.
OUTSIDE_LOGIT = -1e9


class PackedEval:
  """Every window of a feature set packed into rows for prediction, the rows shuffled (seed)
  so that each call holds windows of all lengths, and cut into calls of `rows_per_call` rows
  (the last call filled with empty rows). Same logits at each window's positions as padded
  batches (tests/test_packing.py); about half the positions to compute on SQuAD at 384."""

  def __init__(self, features: Features, rows_per_call: int, sharding: NamedSharding,
               max_windows: int, seed: int = 0):
    self.local, self.offset = process_rows(rows_per_call, sharding, 'eval.batch_size')
    self.features, self.rows_per_call, self.sharding = features, rows_per_call, sharding
    self.lengths = lengths = window_lengths(features)
    rows = pack_rows(lengths, np.arange(len(features)), features.max_seq_length, max_windows)
    rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    self.row_windows = max(len(r) for r in rows)   # segment slots: the fullest row's windows
    empty = np.zeros(0, np.int64)
    self.calls = [rows[i:i + rows_per_call] + [empty] * max(0, i + rows_per_call - len(rows))
                  for i in range(0, len(rows), rows_per_call)]

  def __len__(self) -> int:
    return len(self.calls)

  def windows(self, call: int) -> int:
    return sum(len(r) for r in self.calls[call])

  def device_batch(self, call: int) -> dict[str, jax.Array]:
    """The call's rows on the devices: this process's share of them, as batches.to_device."""
    mine = self.calls[call][self.offset:self.offset + self.local]
    return to_device(pack_host_rows(self.features, mine, self.row_windows, self.lengths),
                     self.sharding)

  def unpack(self, call: int, logits_RT2: np.ndarray, out_NT2: np.ndarray) -> None:
    """Writes each window's logits (the call's every row's, [rows_per_call, T, k]) into
    out_NT2[window, :length]; the rest of a window's row in out stays as it was
    (OUTSIDE_LOGIT, where out comes from outside_logits)."""
    for r, windows in enumerate(self.calls[call]):
      at = 0
      for w in windows:
        n = self.lengths[w]
        out_NT2[w, :n] = logits_RT2[r, at:at + n]
        at += n

  def outside_logits(self, k: int = 2) -> np.ndarray:
    """[windows, T, k] float32 of OUTSIDE_LOGIT, for unpack to fill."""
    return np.full((len(self.features), self.features.max_seq_length, k), OUTSIDE_LOGIT,
                   np.float32)
