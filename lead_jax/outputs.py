"""The LEAD loop's files in the workdir, written so that a resumed run's files
equal an uninterrupted run's.

  selected.jsonl   one line per selected sample and iteration: id (pool index),
                   source_id, iteration, cluster, task, idu (the score it was
                   selected with; null without an IDU table), use_count (after
                   this selection); with idu.reference = warmup, idu is the
                   IDU at selection and the line adds reference (IL) and
                   reducible (IDU - w IL, the score it was ranked by)
  bandit.jsonl     one line per iteration of a bandit method: arm, the
                   probabilities it was drawn with, raw and normalised reward,
                   log-weights after the update; with
                   select.clusters_per_iteration = m > 1, one line per drawn
                   arm in draw order (`draw` 0 .. m-1): `drawn_with` (the
                   distribution it was drawn from, renormalised over the arms
                   not yet drawn), `probabilities` (those of the state its own
                   update started from: its importance weight), its reward
                   and the log-weights after its update (reward null: an
                   exhausted cluster, not updated). `bandit_iterations` keeps
                   one line per iteration, as the plots read it
  idu/idu_<t>.npz  IDU table after iteration t (every `loop.idu_snapshot_every`),
                   idu/idu_init.npz the initial table (IDU_0)
Lines carry their iteration; `Files.rewind(t)` drops every line of iteration
>= t (written after the checkpoint a run resumes from) and the snapshots of
those iterations, before the iterations are run again. Process 0 writes.
Whole-file writes (the rewound files, the snapshots) go through
`lead_jax.artifacts` (atomic); the run's JSON reports are written with
`artifacts.write_json`.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

import numpy as np

from lead_jax import artifacts

SELECTED = "selected.jsonl"
BANDIT = "bandit.jsonl"
IDU_DIR = "idu"


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


class Files:
  """Appends the per-iteration files of one run (a no-op off process 0)."""

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.workdir = workdir
    self.enabled = artifacts.is_writer() if enabled is None else enabled
    if self.enabled:
      os.makedirs(os.path.join(workdir, IDU_DIR), exist_ok=True)

  def path(self, name: str) -> str:
    return os.path.join(self.workdir, name)

  def rewind(self, iteration: int) -> None:
    """Drops what iterations >= `iteration` wrote."""
    if not self.enabled:
      return
    for name in (SELECTED, BANDIT):
      path = self.path(name)
      if not os.path.exists(path):
        continue
      with open(path, encoding="utf-8") as f:
        keep = [line for line in f if line.strip() and json.loads(line)["iteration"] < iteration]
      artifacts.write_text(path, "".join(keep))
    snap_dir = self.path(IDU_DIR)
    for name in os.listdir(snap_dir):
      stem = name[len("idu_"):-len(".npz")] if name.endswith(".npz") else ""
      if stem.isdigit() and int(stem) >= iteration:
        os.remove(os.path.join(snap_dir, name))

  def append(self, name: str, records: Iterable[Mapping]) -> None:
    if not self.enabled:
      return
    with open(self.path(name), "a", encoding="utf-8") as f:
      f.writelines(json.dumps(dict(r), sort_keys=True) + "\n" for r in records)
      f.flush()
      os.fsync(f.fileno())

  def snapshot(self, label: str, idu_N: np.ndarray) -> None:
    if not self.enabled:
      return
    path = os.path.join(self.path(IDU_DIR), f"idu_{label}.npz")
    artifacts.save_npz(path, {"idu_N": np.asarray(idu_N, np.float32)})


def bandit_iterations(lines: Iterable[Mapping]) -> list:
  """bandit.jsonl's first line of every iteration (`draw` 0, or the only
  one): its `probabilities` are those every arm of the iteration was drawn
  from first (p_C of the iteration's state)."""
  return [r for r in lines if r.get("draw", 0) == 0]


def selected_records(ids_S, pool, iteration: int, cluster_N, scores_S, use_count_S,
                     extra_S: Mapping[str, np.ndarray] | None = None):
  """The selected.jsonl lines of one iteration's selection; `extra_S` adds a
  field per name with one value per pick (reference, reducible)."""
  for k, i in enumerate(np.asarray(ids_S)):
    i = int(i)
    yield {
        "id": i, "source_id": str(pool.source_ids[i]), "iteration": iteration,
        "cluster": None if cluster_N is None else int(cluster_N[i]), "task": pool.task_names[int(
            pool.task_N[i])], "idu": None if scores_S is None else float(scores_S[k]),
        "use_count": int(use_count_S[k]
                        ), **{name: float(v[k]) for name, v in (extra_S or {}).items()}
    }
