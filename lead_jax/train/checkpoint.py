"""Composite checkpoints: device state plus host state, written by orbax.

One checkpoint per step in `<directory>/<step>/`:
  state/        the device state as given, e.g. a `train.TrainState` (sharded
                arrays, restored onto the shardings of the abstract state
                passed to `restore`); the frozen base is not part of it
  host_arrays/  the NumPy arrays of the host state (IDU table, use counts, ...)
  host_json/    everything else of the host state (NumPy Generator state,
                bandit history lists, strings), plus the arrays' dtypes/shapes

Host state is a nested dict with string keys; a leaf is a NumPy array or
scalar (numeric or bool; restored with its exact dtype, scalars as 0-d arrays)
or a JSON value (lists come back as lists). Orbax writes each checkpoint into
a temporary directory and renames it when complete, so a save killed half way
leaves a `*.orbax-checkpoint-tmp*` directory that is never listed, never
restored, and removed by the next manager; a step directory without orbax's
commit marker (a filesystem without atomic rename) is removed as well. Every process takes part in a save;
orbax lets the primary process write the shared files.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)

_COMMITTED = "commit_success.txt"  # written by orbax last, when a step is complete
_ARRAY = "__array__"  # marks an array leaf in the JSON skeleton: [dtype, shape]


def split_host(host: dict, where: str = "host") -> tuple[dict, Any]:
  """`(arrays, skeleton)`: the arrays as a nested dict, the rest as JSON."""
  if isinstance(host, dict):
    arrays, skeleton = {}, {}
    for key, value in host.items():
      if not isinstance(key, str):
        raise TypeError(f"{where}: key {key!r} is not a string; host state keys must be str")
      sub_arrays, skeleton[key] = split_host(value, f"{where}/{key}")
      if isinstance(sub_arrays, np.ndarray) or sub_arrays:
        arrays[key] = sub_arrays
    return arrays, skeleton
  if isinstance(host, (np.ndarray, np.generic, jax.Array)):
    x = np.asarray(host)
    if x.dtype.kind not in "biuf":
      raise TypeError(f"{where}: arrays of dtype {x.dtype} are not supported; store strings "
                      "or objects as JSON lists")
    return x, {_ARRAY: [x.dtype.str, list(x.shape)]}
  if isinstance(host, (list, tuple)):
    return None, [_json_leaf(v, f"{where}[{i}]") for i, v in enumerate(host)]
  return None, _json_leaf(host, where)


def _json_leaf(value, where: str):
  if isinstance(value, (list, tuple)):
    return [_json_leaf(v, f"{where}[{i}]") for i, v in enumerate(value)]
  if isinstance(value, dict):
    return {str(k): _json_leaf(v, f"{where}/{k}") for k, v in value.items()}
  if isinstance(value, np.generic):
    return value.item()
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  raise TypeError(f"{where}: {type(value).__name__} is neither a NumPy array nor JSON; "
                  "host state holds arrays, numbers, strings, lists and dicts")


def _template(skeleton):
  """Zero arrays with the saved dtypes/shapes: the restore target of the arrays."""
  if isinstance(skeleton, dict) and _ARRAY in skeleton:
    dtype, shape = skeleton[_ARRAY]
    return np.zeros(shape, np.dtype(dtype))
  out = {}
  for key, value in (skeleton.items() if isinstance(skeleton, dict) else ()):
    t = _template(value)
    if isinstance(t, np.ndarray) or t:
      out[key] = t
  return out


def join_host(skeleton, arrays):
  if isinstance(skeleton, dict) and _ARRAY in skeleton:
    return np.asarray(arrays)
  if isinstance(skeleton, dict):
    return {k: join_host(v, (arrays or {}).get(k)) for k, v in skeleton.items()}
  return skeleton


def _drop_incomplete(directory: epath.Path) -> list[str]:
  """Removes step directories without orbax's commit marker (process 0)."""
  if jax.process_index() != 0 or not directory.is_dir():
    return []
  dropped = [p for p in directory.iterdir() if p.name.isdigit() and not (p / _COMMITTED).exists()]
  for path in dropped:
    log.warning("removing incomplete checkpoint %s", path)
    path.rmtree()
  return [p.name for p in dropped]


class Manager:
  """Saves and restores (state, host) pairs under one directory: a local path,
  or a shared one such as `gs://bucket/run/checkpoints` for multi-host runs."""

  def __init__(self, directory: str, ckpt_cfg):
    self._every = ckpt_cfg.every_steps
    directory = epath.Path(directory if "://" in directory else os.path.abspath(directory))
    _drop_incomplete(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=ckpt_cfg.keep,
                                           enable_async_checkpointing=ckpt_cfg.async_save,
                                           create=True, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(directory, options=options,
                                          item_names=("state", "host_arrays", "host_json"))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    return self._every > 0 and step % self._every == 0

  def save(self, step: int, state, host: Optional[dict] = None, force: bool = False) -> bool:
    """Saves when `force` or `step` is a multiple of `every_steps`."""
    if not (force or self.should_save(step)) or step in self.all_steps():
      return False
    arrays, skeleton = split_host(host or {})
    items = {
        "state": ocp.args.StandardSave(state),
        "host_json": ocp.args.JsonSave({"host": skeleton, "has_arrays": bool(arrays)})
    }
    if arrays:
      items["host_arrays"] = ocp.args.StandardSave(arrays)
    return self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, abstract_state, step: Optional[int] = None):
    """`(state, host)` of `step` (default: the newest complete checkpoint).

    `abstract_state` gives the structure, dtypes and shardings to restore onto
    (`jax.ShapeDtypeStruct` leaves, e.g. from `jax.eval_shape` or
    `build.abstract_state`).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self._manager.directory}")
    meta = self._manager.restore(
        step, args=ocp.args.Composite(host_json=ocp.args.JsonRestore()))["host_json"]
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if meta["has_arrays"]:
      items["host_arrays"] = ocp.args.StandardRestore(_template(meta["host"]))
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    arrays = restored["host_arrays"] if meta["has_arrays"] else {}
    return restored["state"], join_host(meta["host"], arrays)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract(tree, shardings=None):
  """ShapeDtypeStructs of `tree` (with `shardings` when given): a restore target."""
  if shardings is None:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                      shardings)


def directory(ckpt_cfg, workdir: str) -> str:
  """Where a run's checkpoints live: `checkpoint.directory`, else the workdir's."""
  return ckpt_cfg.directory or os.path.join(workdir, "checkpoints")
