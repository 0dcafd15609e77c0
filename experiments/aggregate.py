r"""Tables and plots of a suite's finished runs (experiments/run_suite.py).

  python -m experiments.aggregate --suite=main --results=results
  python -m experiments.aggregate --suite=efficiency --results=results --out=results/tables
  python -m experiments.aggregate --suite=main --results=results --docs=docs/experiments.md

Writes to --out (default <results>/tables):
  <suite>.md        one row per variant: mean ± sd over its seeds (sample sd,
                    n shown; "-" where n < 2), the command and date on top;
                    efficiency adds the per-N table of LEAD vs iterative
                    re-scoring (seconds and passes by phase, wall-time ratio)
                    and two more tables: each variant against `random` (or
                    against `lead` in a suite without random: ablation,
                    sensitivity; difference
                    of means in units of its standard error, Welch's
                    sqrt(sd_a^2/n_a + sd_r^2/n_r)) on exact match and held-out
                    loss, and exact match per task (mean over seeds)
  <suite>.csv       the same numbers, one column per mean and per sd
  <suite>_runs.csv  every run's raw numbers (one row per variant and seed)
  (on the synthetic lake, whose pool records carry a quality tier, a second
  table gives each variant's distinct selected samples by tier and the
  largest share of one task: what a selector picked, not only how it scored)
  plots/<suite>_*.png  metric vs budget, metric vs wall time, the variants'
                    bars, bandit probabilities; efficiency: wall time vs N

With --docs=FILE the same Markdown also replaces the block of FILE between the
lines `<!-- BEGIN suite:<suite> -->` and `<!-- END suite:<suite> -->` (each
exactly once, BEGIN first; the markers stay, the rest of FILE is untouched),
so a page's result tables are the aggregator's output, regenerated in place.
--shown_results names the results directory in the generated text (default:
--results, relative to the working directory when under it).

Every run's accounting is checked (`lead_jax.accounting.check`: the
activities add up to their phases, the phases to the totals, the wall
seconds of the phases to the total; the final metrics' wall seconds and
scoring passes equal the ledger's); the table's `acct` column says `ok` or
how many runs failed the check.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import sys
from typing import Optional

import numpy as np
from absl import app, flags

from experiments import suite_plots, suites
from lead_jax import accounting, outputs
from lead_jax import data
from lead_jax.data import synthetic

_SUITE = flags.DEFINE_string("suite", None, f"one of {', '.join(suites.SUITES)}")
_RESULTS = flags.DEFINE_string("results", None, "results directory of run_suite")
_OUT = flags.DEFINE_string("out", None, "output directory (default <results>/tables)")
_SEEDS = flags.DEFINE_list("seeds", [], "only these seeds (default: every finished one)")
_DOCS = flags.DEFINE_string(
    "docs", None, "also replace the block between <!-- BEGIN suite:<suite> --> and "
    "<!-- END suite:<suite> --> of this Markdown file with the tables")
_SHOWN_RESULTS = flags.DEFINE_string(
    "shown_results", None, "the results directory as the generated text names it "
    "(default: --results, relative to the working directory when under it)")
flags.mark_flags_as_required(["suite", "results"])

BEGIN_MARKER = "<!-- BEGIN suite:{suite} -->"
END_MARKER = "<!-- END suite:{suite} -->"

PHASES = accounting.WALL_PHASES
# (key, header, format) of the variant tables.
COLUMNS = (("exact_match_macro", "exact match (macro)",
            "{:.3f}"), ("exact_match", "exact match", "{:.3f}"), ("test_loss", "held-out loss",
                                                                  "{:.3f}"), ("samples_selected",
                                                                              "distinct", "{:.0f}"),
           ("iterations", "iters", "{:.1f}"), ("train_sample_passes", "train passes", "{:.0f}"),
           ("train_token_passes", "train tokens",
            "{:.0f}"), ("forward_sample_passes", "scoring passes",
                        "{:.0f}"), ("wall_seconds", "wall s",
                                    "{:.0f}"), ("offline_s", "offline s",
                                                "{:.0f}"), ("selection_s", "selection s", "{:.0f}"),
           ("training_s", "training s", "{:.0f}"), ("evaluation_s", "eval s", "{:.0f}"))
TIERS = synthetic.TIERS


def mean_sd(values) -> tuple[float, float, int]:
  """Mean, sample standard deviation (ddof = 1; nan for n < 2) and n."""
  x = np.asarray([v for v in values if v is not None], np.float64)
  if x.size == 0:
    return float("nan"), float("nan"), 0
  return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else float("nan"), int(x.size)


def check_run(final: dict, acct: dict) -> str:
  """'' when the run's accounting adds up, else what does not."""
  try:
    accounting.check(acct)
  except ValueError as e:
    return str(e)
  if abs(acct["wall_seconds"]["total"] - final["wall_seconds"]) > 0.01:
    return "final wall_seconds differs from the ledger's total"
  if acct["forward_sample_passes"] != final["forward_sample_passes"]:
    return "final forward_sample_passes differs from the ledger's"
  return ""


def _mix(tiers: list, tasks: list) -> dict:
  out = {f"tier_{t}": tiers.count(t) / len(tiers) for t in TIERS}
  out["top_task_share"] = max(tasks.count(t) for t in set(tasks)) / len(tasks)
  return out


def selection_mix(workdir: str, whole_pool: bool = False) -> dict:
  """Shares of the run's distinct selected samples (or of its whole pool) by
  lake tier, and the largest share of one task; {} when the pool is not a
  synthetic lake (no `tier` field)."""
  path = data.saved_train_path(workdir)
  if not path.endswith(".jsonl") or not os.path.exists(path):
    return {}
  records = outputs.read_jsonl(path)
  if not records or "tier" not in records[0]:
    return {}
  if whole_pool:
    return _mix([r["tier"] for r in records], [r["dataset"] for r in records])
  tier = {r["id"]: r["tier"] for r in records}
  task = {
      r["source_id"]: r["task"] for r in outputs.read_jsonl(os.path.join(workdir, "selected.jsonl"))
  }
  return _mix([tier[i] for i in task], list(task.values())) if task else {}


def run_row(variant, seed: int, workdir: str) -> dict:
  """One finished run's numbers: final metrics, seconds and passes by phase."""
  final = suites.read_final(workdir)
  with open(os.path.join(workdir, "accounting.json"), encoding="utf-8") as f:
    acct = json.load(f)
  row = {
      "variant": variant.name, "label": variant.label, "method": variant.method, "seed": seed,
      "acct_error": check_run(final, acct)
  }
  for key in ("pool_size", "budget", "exact_match", "exact_match_macro", "test_loss",
              "samples_selected", "samples_trained", "iterations", "train_steps",
              "train_sample_passes", "train_token_passes", "forward_sample_passes",
              "declared_scoring_passes", "wall_seconds", "idu_loss_spearman", "idu0_loss_spearman"):
    row[key] = final.get(key)
  for phase in PHASES:
    row[f"{phase}_s"] = acct["wall_seconds"].get(phase, 0.0)
  for phase in accounting.PHASES:
    totals = acct["phases"][phase]["totals"]
    row[f"{phase}_fwd"] = totals["forward_samples"]
    row[f"{phase}_bwd"] = totals["backward_samples"]
  row.update(selection_mix(workdir))
  row.update({f"em_{t}": v for t, v in final.get("per_task_exact_match", {}).items()})
  return row


def collect(variants, results: str, seeds=()) -> list[dict]:
  rows = []
  for v in variants:
    base = os.path.join(results, "runs", v.name)
    found = sorted(int(d[4:]) for d in os.listdir(base) if d.startswith("seed")) \
        if os.path.isdir(base) else []
    for seed in found:
      workdir = suites.run_dir(results, v.name, seed)
      if (not seeds or seed in seeds) and suites.read_final(workdir) is not None:
        rows.append(run_row(v, seed, workdir))
  return rows


def summarise(rows: list[dict], keys) -> list[dict]:
  """Per variant (in order of appearance): n, and mean/sd of every key."""
  out = []
  for name in dict.fromkeys(r["variant"] for r in rows):
    group = [r for r in rows if r["variant"] == name]
    s = {
        "variant": name, "label": group[0]["label"], "method": group[0]["method"], "n": len(group),
        "acct_failures": sum(bool(r["acct_error"]) for r in group)
    }
    for key in keys:
      s[f"{key}_mean"], s[f"{key}_sd"], _ = mean_sd(r.get(key) for r in group)
    out.append(s)
  return out


def cell(mean: float, sd: float, fmt: str) -> str:
  if np.isnan(mean):
    return "-"
  return fmt.format(mean) + ("" if np.isnan(sd) else " ± " + fmt.format(sd))


def variant_table(summary: list[dict]) -> str:
  head = ["variant", "what", "n"] + [h for _, h, _ in COLUMNS] + ["acct"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for s in summary:
    cells = [s["variant"], s["label"], str(s["n"])]
    cells += [cell(s[f"{k}_mean"], s[f"{k}_sd"], fmt) for k, _, fmt in COLUMNS]
    cells.append("ok" if not s["acct_failures"] else f"{s['acct_failures']} failed")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def versus(a: dict, ref: dict, key: str) -> tuple[float, float]:
  """(mean of a - mean of ref, that difference / its standard error); the
  second is nan when either side has fewer than two seeds."""
  diff = a[f"{key}_mean"] - ref[f"{key}_mean"]
  se = np.sqrt(a[f"{key}_sd"]**2 / a["n"] + ref[f"{key}_sd"]**2 / ref["n"])
  return diff, (diff / se if se > 0 else float("nan"))


def reference_of(summary: list[dict], suffix: str = "") -> Optional[str]:
  """What the other variants are compared with: `random` when it ran (the
  main suite), else `lead` (ablation, sensitivity); None when neither did.
  `suffix` names a group's own (`random_lake2`)."""
  names = {s["variant"] for s in summary}
  return next((r + suffix for r in ("random", "lead") if r + suffix in names), None)


def versus_table(summary: list[dict], reference: str = "random") -> str:
  """Every variant against `reference` on exact match (macro) and held-out
  loss; "" when the reference has not run."""
  ref = next((s for s in summary if s["variant"] == reference), None)
  if ref is None:
    return ""
  head = [
      "variant", "n", f"exact match - {reference}", "in se", f"held-out loss - {reference}", "in se"
  ]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for s in summary:
    if s is ref:
      continue
    cells = [s["variant"], str(s["n"])]
    for key in ("exact_match_macro", "test_loss"):
      diff, z = versus(s, ref, key)
      cells += ["-" if np.isnan(diff) else f"{diff:+.3f}", "-" if np.isnan(z) else f"{z:+.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def task_table(summary: list[dict], tasks: list[str]) -> str:
  """Exact match per task, mean over seeds; "" without per-task figures."""
  if not tasks:
    return ""
  head = ["variant", "n"] + tasks
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for s in summary:
    lines.append("| " + " | ".join([s["variant"], str(s["n"])] +
                                   [cell(s[f"em_{t}_mean"], np.nan, "{:.2f}") for t in tasks]) +
                 " |")
  return "\n".join(lines)


def mix_table(summary: list[dict], pool: dict) -> str:
  """Distinct selected samples by tier (mean share over seeds) under a row
  for the whole pool; "" when the pool is not a synthetic lake."""
  keys = [f"tier_{t}" for t in TIERS] + ["top_task_share"]
  if not pool:
    return ""
  head = ["variant", "n"] + list(TIERS) + ["largest task"]
  lines = [
      "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
      "| (the pool) | | " + " | ".join(f"{pool[k]:.1%}" for k in keys) + " |"
  ]
  for s in summary:
    lines.append("| " + " | ".join([s["variant"], str(s["n"])] +
                                   [cell(s[f"{k}_mean"], np.nan, "{:.1%}") for k in keys]) + " |")
  return "\n".join(lines)


def efficiency_table(rows: list[dict]) -> str:
  """Per pool size: LEAD and iterative re-scoring side by side, and the ratio
  of their wall times (mean of the per-seed ratios ± sd)."""
  keys = [
      "wall_seconds", "setup_s", "offline_s", "selection_s", "training_s", "evaluation_s",
      "checkpoint_s", "iterations", "offline_fwd", "offline_bwd", "selection_fwd", "training_bwd",
      "evaluation_fwd"
  ]
  head = ["N", "method", "n"] + keys + ["rescore / LEAD wall"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for n_pool in sorted({r["pool_size"] for r in rows}):
    at = [r for r in rows if r["pool_size"] == n_pool]
    by_seed = {
        m: {r["seed"]: r["wall_seconds"] for r in at if r["method"] == m}
        for m in ("lead", "iterative_rescore")
    }
    both = sorted(set(by_seed["lead"]) & set(by_seed["iterative_rescore"]))
    ratio = mean_sd(by_seed["iterative_rescore"][s] / by_seed["lead"][s] for s in both)
    for method in ("lead", "iterative_rescore"):
      group = [r for r in at if r["method"] == method]
      if not group:
        continue
      cells = [str(n_pool), method, str(len(group))]
      cells += [cell(*mean_sd(r[k] for r in group)[:2], "{:.0f}") for k in keys]
      cells.append(
          cell(ratio[0], ratio[1], "{:.2f}") +
          f" (n={ratio[2]})" if method == "iterative_rescore" else "")
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_csv(path: str, rows: list[dict]) -> None:
  fields = list(dict.fromkeys(k for r in rows for k in r))
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)


def replace_block(text: str, suite: str, block: str) -> str:
  """`text` with everything between its BEGIN and END markers of `suite`
  replaced by `block` (the markers kept, a blank line either side of the block); ValueError
  unless each marker occurs exactly once, BEGIN before END."""
  begin, end = BEGIN_MARKER.format(suite=suite), END_MARKER.format(suite=suite)
  counts = text.count(begin), text.count(end)
  if counts != (1, 1):
    raise ValueError(f"expected {begin} and {end} once each, found them {counts[0]} and "
                     f"{counts[1]} times")
  start, stop = text.index(begin) + len(begin), text.index(end)
  if stop < start:
    raise ValueError(f"{end} comes before {begin}")
  return text[:start] + "\n\n" + block.strip("\n") + "\n\n" + text[stop:]


def write_docs(path: str, suite: str, markdown: str) -> bool:
  """Replaces `suite`'s block of the Markdown file `path` with `markdown`
  (written through a temporary file, so a failure leaves the file as it
  was); returns whether the file changed."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    new = replace_block(text, suite, markdown)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  if new == text:
    return False
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(new)
  os.replace(tmp, path)
  return True


def _comparisons(summary: list[dict], rows: list[dict], tasks: list[str], results: str,
                 suffix: str = "", versus_lead: bool = False) -> list[str]:
  """The against-reference, per-task and selection-mix tables of one pool's
  variants (`suffix`: the group's name suffix, e.g. `_lake2`); with
  `versus_lead`, also every variant against the group's LEAD run."""
  text = []
  reference = reference_of(summary, suffix)
  against = versus_table(summary, reference) if reference else ""
  if against:
    kind = reference[:-len(suffix)] if suffix else reference
    why = ("|in se| > 2 is the regime's test that selection matters" if kind == "random" else
           "|in se| > 2: the change makes a difference beyond the seeds' spread")
    text += [
        "", f"Against {reference}: difference of means and that difference in units of "
        f"its standard error (sqrt(sd^2/n + sd_{reference}^2/n_{reference})); {why}. "
        "Lower loss is better.", "", against
    ]
  lead = "lead" + suffix
  if versus_lead and reference != lead and any(x["variant"] == lead for x in summary):
    text += [
        "", f"Against {lead} (what each extension buys LEAD), in the same units.", "",
        versus_table(summary, lead)
    ]
  per_task = task_table(summary, tasks)
  if per_task:
    text += ["", "Exact match per task (mean over seeds).", "", per_task]
  first = suites.run_dir(results, rows[0]["variant"], rows[0]["seed"])
  mix = mix_table(summary, selection_mix(first, whole_pool=True))
  if mix:
    text += [
        "", "What was selected: distinct selected samples by quality tier of the lake "
        "and the largest share of one task (mean over seeds).", "", mix
    ]
  return text


def aggregate(suite: str, results: str, out: str, seeds=(),
              shown_results: Optional[str] = None) -> str:
  """Writes the tables and plots of `suite`; returns the Markdown.
  `shown_results` is how the command line in the text names `results`."""
  variants = suites.get(suite)
  rows = collect(variants, results, seeds)
  if not rows:
    raise ValueError(f"{results}: no finished run of suite {suite!r} "
                     "(run python -m experiments.run_suite first)")
  os.makedirs(out, exist_ok=True)
  keys = [k for k, _, _ in COLUMNS] + [
      "exact_match_macro", "train_steps", "idu_loss_spearman", "idu0_loss_spearman",
      "top_task_share"
  ]
  keys += [f"tier_{t}" for t in TIERS]
  tasks = sorted({k[3:] for r in rows for k in r if k.startswith("em_")})
  keys += [f"em_{t}" for t in tasks]
  summary = summarise(rows, keys)
  shown = shown_results if shown_results is not None else _display(results)
  cmd = f"python -m experiments.aggregate --suite={suite} --results={shown}"
  text = [
      f"Suite `{suite}`: generated {datetime.date.today().isoformat()} by `{cmd}` from "
      f"{len(rows)} runs (mean ± sample sd over seeds, n per row).", "",
      variant_table(summary)
  ]
  group_of = {v.name: v.group for v in variants}
  groups = list(dict.fromkeys(group_of[s["variant"]] for s in summary))
  for group in groups:
    sub = [s for s in summary if group_of[s["variant"]] == group]
    if len(groups) > 1:
      text += ["", f"**On {'the default lake' if not group else 'lake ' + repr(group)}.**"]
    text += _comparisons(sub, [r for r in rows if group_of[r["variant"]] == group], tasks, results,
                         f"_{group}" if group else "", versus_lead=suite == "extensions")
  if suite == "efficiency":
    text += ["", efficiency_table(rows)]
  bad = [f"{r['variant']}/seed{r['seed']}: {r['acct_error']}" for r in rows if r["acct_error"]]
  text += [
      "", "Accounting: " + ("every run adds up (phases = totals, wall seconds of the "
                            "phases = total)." if not bad else "; ".join(bad))
  ]
  markdown = "\n".join(text) + "\n"
  with open(os.path.join(out, f"{suite}.md"), "w", encoding="utf-8") as f:
    f.write(markdown)
  write_csv(os.path.join(out, f"{suite}.csv"), summary)
  write_csv(os.path.join(out, f"{suite}_runs.csv"), rows)
  suite_plots.write(suite, summary, rows, results, os.path.join(out, "plots"))
  return markdown


def _display(path: str) -> str:
  rel = os.path.relpath(path)
  return path if rel.startswith("..") else rel


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  results = os.path.abspath(_RESULTS.value)
  try:
    text = aggregate(_SUITE.value, results, _OUT.value or os.path.join(results, "tables"),
                     tuple(int(s) for s in _SEEDS.value), _SHOWN_RESULTS.value)
    if _DOCS.value:
      changed = write_docs(_DOCS.value, _SUITE.value, text)
      print(
          f"{_DOCS.value}: block suite:{_SUITE.value} "
          f"{'replaced' if changed else 'already up to date'}", file=sys.stderr)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(text)


if __name__ == "__main__":
  app.run(main)
