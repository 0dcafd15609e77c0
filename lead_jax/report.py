"""Plots of a LEAD-loop run and the side-by-side table of several runs.

matplotlib is imported inside the functions (Agg backend), so the core import
path does not need it. Plots (in `<workdir>/plots/`):
  bandit_probabilities.png  p_k per iteration (bandit methods)
  selections.png            selections per cluster and per task
  idu_vs_loss.png           IDU and IDU_0 against the true current loss on the
                            final model, for a sample of pool and selected samples
"""

from __future__ import annotations

import collections
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from lead_jax import outputs


def pyplot():
  import matplotlib  # heavy and optional: only when plotting
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plots(workdir: str, idu_arrays: Optional[Mapping[str, np.ndarray]] = None,
          num_clusters: int = 0) -> list[str]:
  """Writes the run's plots; returns their paths."""
  out_dir = os.path.join(workdir, "plots")
  os.makedirs(out_dir, exist_ok=True)
  plt, written = pyplot(), []
  arms = outputs.bandit_iterations(outputs.read_jsonl(os.path.join(workdir, outputs.BANDIT)))
  if arms:
    p_TxC = np.array([r["probabilities"] for r in arms])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for c in range(p_TxC.shape[1]):
      ax.plot([r["iteration"] for r in arms], p_TxC[:, c], marker=".", label=f"cluster {c}")
    ax.set(xlabel="iteration", ylabel="probability", title="bandit probabilities")
    ax.legend(fontsize=7, ncol=2)
    written.append(save_figure(plt, fig, out_dir, "bandit_probabilities.png"))
  picked = outputs.read_jsonl(os.path.join(workdir, outputs.SELECTED))
  if picked:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key in zip(axes, ("cluster", "task")):
      counts = collections.Counter(r[key] for r in picked)
      names = sorted(counts, key=lambda v: (v is None, v))
      if key == "cluster" and num_clusters:
        names = list(range(num_clusters))
      ax.bar([str(n) for n in names], [counts.get(n, 0) for n in names])
      ax.set(title=f"selections per {key}", ylabel="selections (with reuse)")
      ax.tick_params(axis="x", rotation=60, labelsize=7)
    written.append(save_figure(plt, fig, out_dir, "selections.png"))
  if idu_arrays is not None and len(idu_arrays["loss"]):
    fig, ax = plt.subplots(figsize=(5, 4))
    loss = idu_arrays["loss"]
    ax.scatter(loss, idu_arrays["idu0"], s=6, alpha=0.5, label="IDU_0 (base loss)")
    ax.scatter(loss, idu_arrays["idu"], s=6, alpha=0.5, label="IDU (final table)")
    lo, hi = float(loss.min()), float(loss.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel="true current loss (final model)", ylabel="utility estimate",
           title="IDU vs true loss")
    ax.legend(fontsize=7)
    written.append(save_figure(plt, fig, out_dir, "idu_vs_loss.png"))
  return written


def save_figure(plt, fig, out_dir: str, name: str) -> str:
  path = os.path.join(out_dir, name)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def _fmt(v) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
  return str(v)


ROWS = (("exact match (overall)", "exact_match"), ("exact match (macro)", "exact_match_macro"),
        ("held-out loss", "test_loss"), ("samples selected (distinct)", "samples_selected"),
        ("samples trained on (distinct)", "samples_trained"), ("iterations", "iterations"),
        ("training steps", "train_steps"), ("training sample-passes", "train_sample_passes"),
        ("training token-passes",
         "train_token_passes"), ("wall seconds", "wall_seconds"), ("forward passes over the pool",
                                                                   "forward_sample_passes"))


def table(runs: Mapping[str, Mapping], tasks: Optional[Sequence[str]] = None) -> str:
  """A Markdown table, one column per run (final_metrics dicts)."""
  names = list(runs)
  tasks = tasks or sorted({t for m in runs.values() for t in m.get("per_task_exact_match", {})})
  lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
  for label, key in ROWS:
    lines.append(f"| {label} | " + " | ".join(_fmt(runs[n].get(key)) for n in names) + " |")
  for t in tasks:
    lines.append(f"| exact match: {t} | " +
                 " | ".join(_fmt(runs[n].get("per_task_exact_match", {}).get(t)) for n in names) +
                 " |")
  return "\n".join(lines)
