"""Devices, hosts and the data-parallel Mesh."""
from __future__ import annotations

import functools
import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bert_jax.errors import TopologyError
from bert_jax.settings import MeshSettings

DATA_AXIS = 'data'


def initialize_distributed(settings: MeshSettings) -> None:
  """Joins a multi-host run: from explicit settings (num_processes > 1), or from the
  cluster's environment (num_processes = 0). Must run before anything touches the backend."""
  if settings.num_processes == 1 or jax.distributed.is_initialized():
    return  # one process, or already initialised (e.g. from a notebook)
  if settings.num_processes == 0:
    try:
      jax.distributed.initialize()  # JAX reads SLURM, Open MPI, Kubernetes or TPU variables
    except (ValueError, RuntimeError) as e:
      raise TopologyError(
          f'mesh.num_processes=0 asks for the hosts from the cluster environment, but none '
          f'was found ({e}). Run under SLURM/mpirun/k8s, or give mesh.coordinator_address, '
          'mesh.num_processes and mesh.process_id.') from e
    return
  jax.distributed.initialize(coordinator_address=settings.coordinator_address or None,
                             num_processes=settings.num_processes,
                             process_id=settings.process_id)


def use_compilation_cache(directory: str) -> None:
  """XLA's persistent compilation cache in `directory` ('' leaves it off): a re-run of the
  same job (a resume, a repeated benchmark) loads its compiled steps instead of compiling."""
  if directory:
    jax.config.update('jax_compilation_cache_dir', os.path.abspath(os.path.expanduser(directory)))


def make_mesh(settings: MeshSettings) -> Mesh:
  """A 1-D mesh over `num_devices` devices (0 = all), spread evenly over the hosts."""
  devices = jax.devices()
  wanted = settings.num_devices or len(devices)
  if wanted > len(devices):
    raise TopologyError(
        f'mesh.num_devices={wanted} but only {len(devices)} {devices[0].platform} device(s) '
        f'are visible ({describe_devices()}). Use a config for {len(devices)} device(s) or '
        f'pass --config.mesh.num_devices={len(devices)}.')
  if wanted % jax.process_count():
    raise TopologyError(f'mesh.num_devices={wanted} does not split over '
                        f'{jax.process_count()} processes')
  per_host = wanted // jax.process_count()
  chosen = [d for p in range(jax.process_count())
            for d in [d for d in devices if d.process_index == p][:per_host]]
  return Mesh(np.array(chosen), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) axis split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded_state(mesh: Mesh, state):
  """Shardings that split a train state's layer matrices over the data axis (as ZeRO-3 /
  FSDP do): in params and in the optimizer's moments, each matrix under 'layers' (the arrays
  steps.gathered_layers gathers) is split along its first dimension that the mesh size
  divides (the first keeps each device's share contiguous), never along the layer axis of
  stacked layers (model.stack_layers), so that every device holds a share of every layer and
  each layer is gathered apart; the rest (embeddings, vectors, counters) stays replicated."""
  def sharding(path, x):
    keys = [getattr(k, 'key', None) for k in path]
    if 'layers' not in keys:
      return replicated(mesh)
    below = path[keys.index('layers') + 1:]
    first = 0 if below and isinstance(below[0], jax.tree_util.SequenceKey) else 1  # list/stacks
    dims = [d for d in range(first, x.ndim) if x.shape[d] % mesh.size == 0]
    if mesh.size == 1 or x.ndim - first < 2 or not dims:
      return replicated(mesh)
    return NamedSharding(mesh, P(*[None] * dims[0], DATA_AXIS))
  return jax.tree_util.tree_map_with_path(sharding, state)


def splits_state(mesh: Mesh, shard: bool) -> bool:
  """Whether mesh.shard_state=`shard` splits the train state on this mesh (one device keeps
  it whole); what records report as 'shard_state'."""
  return shard and mesh.size > 1


def state_shardings(mesh: Mesh, state, shard: bool):
  """The train state's shardings: split (sharded_state) where splits_state, else
  replicated."""
  if splits_state(mesh, shard):
    return sharded_state(mesh, state)
  return jax.tree.map(lambda _: replicated(mesh), state)


def gathered(mesh: Mesh, tree):
  """`tree` replicated on every device of the mesh (a no-op where it already is), e.g.
  params of a split state for prediction or export."""
  return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)


def gpu_options(mesh: Mesh, options: dict) -> dict:
  """A copy of `options` (XLA's GPU compiler options) where the mesh is on GPUs, else {}."""
  return dict(options) if mesh.devices.flat[0].platform == 'gpu' else {}


def traced_under(mesh: Mesh, fn, name: str):
  """fn, traced with `mesh` as JAX's abstract mesh, so code inside it (the LayerNorm
  backward kernel, bert_jax/layer_norm_kernel.py) can run per device with shard_map where
  GSPMD has no rule for it. `name` names the jitted function (XLA cache files, profiles)."""
  @functools.wraps(fn)
  def traced(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)
  traced.__name__ = traced.__qualname__ = name
  return traced


def describe_devices() -> str:
  devs = jax.devices()
  kinds = sorted({d.device_kind for d in devs})
  return (f'{len(devs)} device(s) [{", ".join(kinds)}] on {jax.process_count()} process(es), '
          f'{jax.local_device_count()} local')


def log_topology(mesh: Mesh) -> None:
  logging.info('devices: %s; mesh %s = %d device(s)', describe_devices(),
               dict(mesh.shape), mesh.size)
