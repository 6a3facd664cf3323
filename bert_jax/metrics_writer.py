"""Scalars to a JSON-lines file (always) and TensorBoard (when it is installed)."""
from __future__ import annotations

import json
import os

import jax


class MetricsWriter:

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      try:
        from flax.metrics import tensorboard
        self._tb = tensorboard.SummaryWriter(os.path.join(workdir, 'tensorboard'))
      except Exception:  # TensorFlow absent: JSON lines only
        self._tb = None

  def write(self, step: int, scalars: dict) -> None:
    if not self.active:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': step, **clean}) + '\n')
    if self._tb is not None:
      for k, v in clean.items():
        self._tb.scalar(k, v, step)
      self._tb.flush()
