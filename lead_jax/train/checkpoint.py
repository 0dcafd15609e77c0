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

Seals. After a save is complete, process 0 writes `<step>/checksums.json`:
the size and SHA-256 of every file of the step. `latest_step` and `restore`
use the newest step whose files all match their seal; a newer step that does
not (a truncated or altered file, a missing file, no seal because the run was
killed before sealing) is moved aside to `<step>.corrupt` with a one-line
warning naming it and what differs, and the run resumes from the one before
(or starts over when none is left). So corrupt state is never restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from lead_jax import artifacts

log = logging.getLogger(__name__)

_COMMITTED = "commit_success.txt"  # written by orbax last, when a step is complete
SEAL = "checksums.json"  # {relative path: [size, sha256]} of a complete step, written last
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
  if not artifacts.is_writer() or not directory.is_dir():
    return []
  dropped = [p for p in directory.iterdir() if p.name.isdigit() and not (p / _COMMITTED).exists()]
  for path in dropped:
    log.warning("removing incomplete checkpoint %s", path)
    path.rmtree()
  return [p.name for p in dropped]


def _files(step_dir: epath.Path, prefix: str = "") -> dict[str, epath.Path]:
  """Every file under `step_dir` by its relative path (the seal aside)."""
  out = {}
  for p in sorted(step_dir.iterdir()):
    name = prefix + p.name
    if p.is_dir():
      out.update(_files(p, name + "/"))
    elif name != SEAL and name != SEAL + ".tmp":
      out[name] = p
  return out


def _sha256(path: epath.Path) -> str:
  digest = hashlib.sha256()
  with path.open("rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def seal(step_dir: epath.Path) -> None:
  """Writes the step's checksums (atomically: a temporary file, then a rename)."""
  table = {name: [path.stat().length, _sha256(path)] for name, path in _files(step_dir).items()}
  tmp = step_dir / (SEAL + ".tmp")
  tmp.write_text(json.dumps(table, indent=0, sort_keys=True))
  tmp.rename(step_dir / SEAL)


def seal_problem(step_dir: epath.Path) -> Optional[str]:
  """What is wrong with a step's files against its seal; None when they match."""
  if not (step_dir / SEAL).exists():
    return f"no {SEAL} (the save did not finish sealing)"
  try:
    table = json.loads((step_dir / SEAL).read_text())
  except (ValueError, UnicodeDecodeError) as e:
    return f"{SEAL} is unreadable ({e})"
  files = _files(step_dir)
  for name in sorted(set(table) | set(files)):
    if name not in files:
      return f"{name} is missing"
    if name not in table:
      return f"{name} is not in {SEAL}"
    size, sha = table[name]
    if files[name].stat().length != size:
      return f"{name} has {files[name].stat().length} bytes, {size} when saved"
    if _sha256(files[name]) != sha:
      return f"{name} differs from its checksum"
  return None


def _refused_write(e: BaseException) -> Optional[str]:
  """The reason when `e` (or its cause) is a write the disk refused, else None.
  tensorstore reports it as a ValueError naming `os_error_code='N'`."""
  while e is not None:
    if isinstance(e, OSError) and e.errno in artifacts.FULL_DISK:
      return os.strerror(e.errno)
    code = re.search(r"os_error_code='(\d+)'", str(e))
    if code and int(code.group(1)) in artifacts.FULL_DISK:
      return os.strerror(int(code.group(1)))
    e = e.__cause__ or e.__context__
  return None


class Manager:
  """Saves and restores (state, host) pairs under one directory: a local path,
  or a shared one such as `gs://bucket/run/checkpoints` for multi-host runs."""

  def __init__(self, directory: str, ckpt_cfg):
    self._every, self._async = ckpt_cfg.every_steps, bool(ckpt_cfg.async_save)
    directory = epath.Path(directory if "://" in directory else os.path.abspath(directory))
    _drop_incomplete(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=ckpt_cfg.keep,
                                           enable_async_checkpointing=ckpt_cfg.async_save,
                                           create=True, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(directory, options=options,
                                          item_names=("state", "host_arrays", "host_json"))
    self._pending: list[int] = []  # saved, not sealed yet (async saves)
    self._checked: Optional[int] = None  # the newest step verified against its seal

  def _seal_pending(self) -> None:
    if not self._pending:
      return
    self._manager.wait_until_finished()
    if artifacts.is_writer():
      for step in self._pending:
        if (self._manager.directory / str(step)).is_dir():  # not rotated out meanwhile
          seal(self._manager.directory / str(step))
    self._pending = []

  def latest_step(self) -> Optional[int]:
    """The newest step whose files match their seal. Newer steps that do not
    are moved aside (`<step>.corrupt`) with a one-line warning."""
    self._seal_pending()
    if self._checked is not None and self._checked == self._manager.latest_step():
      return self._checked
    moved = False
    for step in sorted(self._manager.all_steps(), reverse=True):
      path = self._manager.directory / str(step)
      problem = seal_problem(path)
      if problem is None:
        self._checked = step
        break
      log.warning("checkpoint %s is corrupt: %s; skipping it (moved to %s.corrupt)", path, problem,
                  path.name)
      if artifacts.is_writer():
        aside = self._manager.directory / f"{step}.corrupt"
        if aside.exists():
          aside.rmtree()
        path.rename(aside)
      moved = True
    else:
      self._checked = None
    if moved:
      self._manager.reload()
    return self._checked

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
    self._seal_pending()
    try:
      saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:
      refused = _refused_write(e)
      if refused is None:
        raise
      with contextlib.suppress(Exception):  # let the save's other threads end first
        self._manager.wait_until_finished()
      raise artifacts.write_failed(f"checkpoint {step} in {self._manager.directory}",
                                   refused) from e
    if saved:
      self._pending.append(step)
      if not self._async:  # a synchronous save is complete: seal it now
        self._seal_pending()
    return saved

  def restore(self, abstract_state, step: Optional[int] = None):
    """`(state, host)` of `step` (default: the newest complete checkpoint).

    `abstract_state` gives the structure, dtypes and shardings to restore onto
    (`jax.ShapeDtypeStruct` leaves, e.g. from `jax.eval_shape` or
    `build.abstract_state`).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self._manager.directory}")
    problem = seal_problem(self._manager.directory / str(step))
    if problem is not None:
      raise ValueError(f"checkpoint {self._manager.directory / str(step)} is corrupt: {problem}; "
                       "restore another step (all_steps) or start a fresh run")
    meta = self._host_meta(step)
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if meta["has_arrays"]:
      items["host_arrays"] = ocp.args.StandardRestore(_template(meta["host"]))
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    arrays = restored["host_arrays"] if meta["has_arrays"] else {}
    return restored["state"], join_host(meta["host"], arrays)

  def _host_meta(self, step: int) -> dict:
    return self._manager.restore(
        step, args=ocp.args.Composite(host_json=ocp.args.JsonRestore()))["host_json"]

  def host_json(self) -> Optional[dict]:
    """The JSON part of the newest complete checkpoint's host state (its arrays
    as `{"__array__": [dtype, shape]}` placeholders), or None without one:
    what a caller checks before it builds anything to restore onto."""
    step = self.latest_step()
    return None if step is None else self._host_meta(step)["host"]

  def wait(self) -> None:
    self._seal_pending()
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._seal_pending()
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
