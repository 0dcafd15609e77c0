"""The plots of `experiments.aggregate` (matplotlib, Agg backend).

  <suite>_vs_budget.png     held-out loss and exact match against the distinct
                            samples each variant used (mean ± sd over seeds)
  <suite>_vs_wall.png       held-out loss against end-to-end wall seconds
  <suite>_bars.png          held-out loss and exact match per variant
  <suite>_bandit.png        bandit probabilities per iteration (mean over seeds),
                            one panel per bandit variant
  efficiency_scaling.png    wall seconds (and its offline + selection part)
                            against the pool size, LEAD vs iterative re-scoring
"""

from __future__ import annotations

import math
import os

import numpy as np

from experiments import suites
from lead_jax import outputs
from lead_jax.data.synthetic import TIERS
from lead_jax.report import pyplot, save_figure


def _sd(s: dict, key: str) -> float:
  v = s[f"{key}_sd"]
  return 0.0 if np.isnan(v) else v


def _scatter(plt, summary, x: str, ys, out_dir: str, name: str, xlabel: str) -> str:
  fig, axes = plt.subplots(1, len(ys), figsize=(5.5 * len(ys), 4), squeeze=False)
  for ax, (y, ylabel) in zip(axes[0], ys):
    for s in summary:
      ax.errorbar(s[f"{x}_mean"], s[f"{y}_mean"], xerr=_sd(s, x), yerr=_sd(s, y), fmt="o",
                  capsize=3, label=s["variant"])
      ax.annotate(s["variant"], (s[f"{x}_mean"], s[f"{y}_mean"]), fontsize=7, xytext=(3, 3),
                  textcoords="offset points")
    ax.set(xlabel=xlabel, ylabel=ylabel)
  return save_figure(plt, fig, out_dir, name)


def _bars(plt, summary, suite: str, out_dir: str) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(summary) + 3), 4))
  names = [s["variant"] for s in summary]
  for ax, (key, label) in zip(axes,
                              (("test_loss", "held-out loss"), ("exact_match", "exact match"))):
    ax.bar(names, [s[f"{key}_mean"] for s in summary], yerr=[_sd(s, key) for s in summary],
           capsize=3)
    ax.set(ylabel=label, title=f"{suite}: {label} (mean ± sd over seeds)")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
  return save_figure(plt, fig, out_dir, f"{suite}_bars.png")


def _bandit(plt, rows, results: str, suite: str, out_dir: str):
  panels = {}
  for r in rows:
    lines = outputs.bandit_iterations(
        outputs.read_jsonl(
            os.path.join(suites.run_dir(results, r["variant"], r["seed"]), outputs.BANDIT)))
    if lines:
      panels.setdefault(r["variant"], []).append(np.array([x["probabilities"] for x in lines]))
  if not panels:
    return None
  cols = min(3, len(panels))
  fig, axes = plt.subplots(
      math.ceil(len(panels) / cols), cols, figsize=(5 * cols, 3.3 * math.ceil(len(panels) / cols)),
      squeeze=False)
  for ax, (name, runs) in zip(axes.flat, panels.items()):
    t = min(p.shape[0] for p in runs)
    runs = [p[:t] for p in runs if p.shape[1] == runs[0].shape[1]]
    mean_TxC = np.mean(runs, axis=0)
    for c in range(mean_TxC.shape[1]):
      ax.plot(np.arange(t), mean_TxC[:, c], marker=".", label=f"cluster {c}")
    ax.set(title=f"{name} (mean of {len(runs)} seeds)", xlabel="iteration", ylabel="probability")
    ax.legend(fontsize=6, ncol=2)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  return save_figure(plt, fig, out_dir, f"{suite}_bandit.png")


def _tiers(plt, summary, suite: str, out_dir: str):
  """Stacked bars: each variant's distinct selected samples by lake tier."""
  shown = [s for s in summary if not np.isnan(s.get("tier_clean_mean", np.nan))]
  if not shown:
    return None
  fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(shown) + 3), 4))
  bottom = np.zeros(len(shown))
  for tier in TIERS:
    share = np.nan_to_num([s[f"tier_{tier}_mean"] for s in shown])
    ax.bar([s["variant"] for s in shown], share, bottom=bottom, label=tier)
    bottom += share
  ax.set(ylabel="share of distinct selected samples", title=f"{suite}: selected tier mix")
  ax.tick_params(axis="x", rotation=60, labelsize=7)
  ax.legend(fontsize=6, ncol=4)
  return save_figure(plt, fig, out_dir, f"{suite}_tiers.png")


def _scaling(plt, rows, out_dir: str) -> str:
  fig, ax = plt.subplots(figsize=(6, 4))
  for method in ("lead", "iterative_rescore"):
    sizes = sorted({r["pool_size"] for r in rows if r["method"] == method})
    for key, style in (("wall_seconds", "-o"), ("pool_work_s", "--x")):
      vals = [[
          r["wall_seconds"] if key == "wall_seconds" else r["offline_s"] + r["selection_s"]
          for r in rows
          if r["method"] == method and r["pool_size"] == n
      ]
              for n in sizes]
      ax.errorbar(
          sizes, [np.mean(v) for v in vals],
          yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals], fmt=style, capsize=3,
          label=f"{method}: " + ("end to end" if key == "wall_seconds" else "offline + selection"))
  ax.set(xlabel="pool size N", ylabel="wall seconds", title="LEAD vs iterative re-scoring")
  ax.legend(fontsize=7)
  return save_figure(plt, fig, out_dir, "efficiency_scaling.png")


def write(suite: str, summary, rows, results: str, out_dir: str) -> list[str]:
  """Writes the suite's plots; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  plt = pyplot()
  paths = [
      _scatter(plt, summary, "samples_selected",
               (("test_loss", "held-out loss"), ("exact_match", "exact match")), out_dir,
               f"{suite}_vs_budget.png", "distinct samples selected (budget)"),
      _scatter(plt, summary, "wall_seconds", (("test_loss", "held-out loss"),), out_dir,
               f"{suite}_vs_wall.png", "end-to-end wall seconds"),
      _bars(plt, summary, suite, out_dir),
      _bandit(plt, rows, results, suite, out_dir),
      _tiers(plt, summary, suite, out_dir)
  ]
  if suite == "efficiency":
    paths.append(_scaling(plt, rows, out_dir))
  return [p for p in paths if p]
