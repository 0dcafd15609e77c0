"""Mesh from the `mesh` sub-config, parameter shardings from regex rules,
batch placement.

Axes: `data` (pure data parallel), `fsdp` (data parallel whose devices also
shard parameters and optimiser state), `tensor` (model parallel inside a
layer). A batch is split over `data` x `fsdp`; parameters follow
`(regex, spec)` rules over `/`-joined state paths (`base/layers/attn/q_proj/kernel`,
`lora/...`, `opt_state/.../mu/...`), first match wins, a rule matching
nothing is an error. A spec entry that does not divide its dimension falls
back to replication for that dimension (e.g. a 261-token vocabulary on 8
devices), so one rule set serves every model size.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lead_jax import paths

log = logging.getLogger(__name__)

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def initialize(mesh_cfg) -> None:
  """Joins the multi-host job when `mesh.distributed` (TPU pods auto-detect);
  a second call is a no-op. Must run before anything touches a JAX backend:
  the entry points (`loop.run`, `finetune.run`) call it first, before the
  workdir lock asks for the process index. CPU processes exchange their
  collectives through gloo (the CPU backend has no other cross-process one)."""
  if not mesh_cfg.distributed or jax.distributed.is_initialized():
    return
  kwargs = {}
  if mesh_cfg.coordinator_address:
    kwargs = dict(coordinator_address=mesh_cfg.coordinator_address,
                  num_processes=mesh_cfg.num_processes, process_id=mesh_cfg.process_id)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # used by the CPU backend only
  jax.distributed.initialize(**kwargs)
  log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, ...]:
  """Axis sizes; one axis may be -1 (all remaining devices)."""
  sizes = [mesh_cfg[a] for a in AXES]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh {dict(zip(AXES, sizes))}: sizes must be positive, at most one -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"mesh {dict(zip(AXES, sizes))}: {num_devices} devices are not a "
                       f"multiple of {known}")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, "
                     f"{num_devices} are present; set one axis to -1")
  return tuple(sizes)


def make_mesh(mesh_cfg, devices: Sequence[Any] | None = None) -> Mesh:
  devices = list(devices) if devices is not None else jax.devices()
  shape = mesh_shape(mesh_cfg, len(devices))
  return jax.make_mesh(shape, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_divisor(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def _axis_size(mesh: Mesh, entry) -> int:
  names = entry if isinstance(entry, (tuple, list)) else (entry,)
  return math.prod(mesh.shape[n] for n in names)


def spec_for(mesh: Mesh, spec: Sequence, shape: Sequence[int], path: str) -> PartitionSpec:
  """`spec` fitted to `shape`: axes that do not divide their dimension dropped."""
  spec = tuple(spec)
  if len(spec) > len(shape):
    raise ValueError(f"sharding rule for {path}: spec {spec} has more entries than the "
                     f"array's {len(shape)} dimensions {tuple(shape)}")
  fitted = []
  for dim, entry in zip(shape, spec):
    keep = entry is not None and dim % _axis_size(mesh, entry) == 0
    entry = tuple(entry) if isinstance(entry, list) else entry
    fitted.append(entry if keep else None)
  return PartitionSpec(*fitted)


def tree_shardings(mesh: Mesh, rules, tree, what: str = "mesh.rules"):
  """A NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs)."""
  rules = [(pattern, tuple(spec)) for pattern, spec in rules]
  paths.check_rules_used(rules, list(paths.flatten(tree)), what)

  def one(path, leaf):
    spec = paths.first_match(rules, path, default=())
    return NamedSharding(mesh, spec_for(mesh, spec, np.shape(leaf), path))

  return paths.map_with_path(one, tree)


def place(tree, shardings):
  """Puts host or device arrays onto the devices of their shardings."""
  return jax.device_put(tree, shardings)


def shard_batch(mesh: Mesh | None, batch_np: dict) -> dict:
  """Global batch (the same NumPy arrays on every host) -> arrays sharded over
  the batch axes; each process copies only the rows its devices hold."""
  if mesh is None:
    return {k: jax.device_put(np.asarray(v)) for k, v in batch_np.items()}
  sharding = batch_sharding(mesh)
  rows = np.shape(next(iter(batch_np.values())))[0]
  if rows % batch_divisor(mesh):
    raise ValueError(f"batch of {rows} rows does not split over data x fsdp = "
                     f"{batch_divisor(mesh)} devices; make train.batch_size a multiple")
  return {
      k: jax.make_array_from_callback(np.shape(v), sharding, lambda idx, v=v: np.asarray(v)[idx])
      for k, v in batch_np.items()
  }
