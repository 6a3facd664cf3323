"""orbax checkpoints: periodic, keep N, restore the latest into a sharded abstract state."""
from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec

from bert_jax import model, steps


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


def restore_state(ckpt: Checkpointer, target, step: int | None = None):
  """The state saved at `step` (default: the latest), restored onto target's shardings
  (target: abstract_like's). Checkpoints written before the train state stacked its layers
  (steps.create_state) hold them as a list of per-layer dicts: those are restored
  replicated and stacked, with a log line saying so."""
  try:
    return ckpt.restore(target, step)
  except Exception as stacked_error:  # orbax's error types for a tree mismatch vary
    try:
      listed = ckpt.restore(_listed_like(target), step)
    except Exception:
      raise stacked_error from None
  logging.info('the checkpoint holds the layers as a list (written before the train state '
               'stacked them): stacking them')
  stack = lambda s: steps.map_params_like(model.stack_layers, s)
  return jax.jit(stack, out_shardings=jax.tree.map(lambda x: x.sharding, target))(listed)


def _listed_like(target):
  """target with its layers as a list (model.unstack_layers), replicated."""
  mesh = jax.tree.leaves(target)[0].sharding.mesh
  shapes = jax.eval_shape(lambda s: steps.map_params_like(model.unstack_layers, s), target)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=NamedSharding(mesh, PartitionSpec())), shapes)


def abstract_like(state, shardings):
  """ShapeDtypeStructs carrying the target shardings, for restoring straight onto devices."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)
