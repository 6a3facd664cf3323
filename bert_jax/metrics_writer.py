"""Scalars to a JSON-lines file (always) and TensorBoard (when it is installed)."""
from __future__ import annotations

import importlib.util
import json
import logging
import os

import jax


def tensorboard_installed() -> bool:
  """Whether flax's TensorBoard writer can work: it needs both tensorflow and tensorboard.
  Asked of the import system without importing either, because importing TensorFlow takes
  seconds (6.6 s of a 25 s tiny job on 2 cores), and tensorflow-cpu alone (the `tf` extra)
  does not bring tensorboard, so the import used to be paid for a writer that then failed."""
  return all(importlib.util.find_spec(name) is not None for name in ('tensorflow', 'tensorboard'))


class MetricsWriter:

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard_installed():
        try:
          from flax.metrics import tensorboard
          self._tb = tensorboard.SummaryWriter(os.path.join(workdir, 'tensorboard'))
        except Exception as e:  # a broken install: JSON lines only, and say why
          logging.warning('TensorBoard writer not started (%s): metrics go to %s only',
                          e, self.path)

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
