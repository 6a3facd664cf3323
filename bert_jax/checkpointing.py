"""orbax checkpoints: periodic, keep N, restore the latest into a sharded abstract state."""
from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Synchronous saves, so a kill -9 at any moment leaves the last finished step intact."""

  def __init__(self, directory: str, keep: int):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(state))
    self.manager.wait_until_finished()

  def restore(self, abstract_state, step: int | None = None):
    step = self.latest_step() if step is None else step
    logging.info('resuming from checkpoint step %d', step)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def close(self):
    self.manager.close()


def abstract_like(state, shardings):
  """ShapeDtypeStructs carrying the target shardings, for restoring straight onto devices."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)
