"""Metrics: a JSONL file in the workdir plus TensorBoard event files.

Only process 0 writes (the others get a writer that does nothing), so
multi-host runs produce one record per step. Each JSONL line is one object:
`{"step": int, "split": str, <name>: value, ...}`; TensorBoard gets every
scalar as `<split>/<name>` (tensorboardX: no TensorFlow needed). On resume,
`truncate_after(step)` drops the records written after the restored
checkpoint, so a resumed run's file equals an uninterrupted run's; that
rewrite and the config file are written atomically (`lead_jax.artifacts`).
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any, Mapping, Optional

import jax
import numpy as np

from lead_jax import artifacts

JSONL = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CONFIG = "config.json"


def _plain(value):
  """NumPy/JAX scalars and arrays -> Python numbers and lists."""
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    return np.asarray(value).tolist()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


class Writer:
  """Writes metrics of one run; a no-op on processes other than 0."""

  def __init__(self, workdir: str, tensorboard: bool = True, enabled: Optional[bool] = None):
    self.enabled = artifacts.is_writer() if enabled is None else enabled
    self._path = os.path.join(workdir, JSONL)
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        from tensorboardX import SummaryWriter  # only the writing process needs it
        self._tb = SummaryWriter(os.path.join(workdir, TENSORBOARD))

  def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, **_plain(dict(metrics))}
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for name, value in record.items():
        if name not in ("step", "split") and isinstance(value, numbers.Number):
          self._tb.add_scalar(f"{split}/{name}", value, int(step))
      self._tb.flush()

  def truncate_after(self, step: int, drop_splits: tuple[str, ...] = ()) -> None:
    """Drops JSONL records with a step beyond `step` (written after the
    checkpoint a run resumes from), and every record of `drop_splits` (e.g.
    the end-of-run summary, which the resumed run writes again)."""
    if not self.enabled or not os.path.exists(self._path):
      return
    with open(self._path) as f:
      records = [(line, json.loads(line)) for line in f if line.strip()]
    lines = [line for line, r in records if r["step"] <= step and r["split"] not in drop_splits]
    artifacts.write_text(self._path, "".join(lines))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read(workdir: str) -> list[dict]:
  """All records of a run's JSONL file."""
  with open(os.path.join(workdir, JSONL)) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_config(workdir: str, config) -> Optional[str]:
  """The resolved config as JSON (process 0 only); returns the path written."""
  if not artifacts.is_writer():
    return None
  path = os.path.join(workdir, CONFIG)
  artifacts.write_text(path, config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  return path
