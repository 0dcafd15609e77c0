"""The experiment suites as data: which runs, with which config overrides.

  python -m experiments.run_suite --suite=main --results=results      # runs
  python -m experiments.aggregate --suite=main --results=results      # tables, plots

A suite is a list of variants run for every seed. A variant is a method of
`python -m experiments.run` plus `--config.` overrides on the suite's base
config (configs/default.py). Its run directory is
`<results>/runs/<variant>/seed<k>`, so a variant shared by several suites
(e.g. `lead`) runs once and every suite reads it.

The protocol (every suite):
  * equal budget: every method spends the same distinct-sample budget;
    one-shot selectors (`ONE_SHOT`, from the method registry
    `lead_jax.selection.registry`: random, random_balanced, ppl, ifd,
    superfilter, less) get the distinct samples their reference LEAD run of
    the same seed selected, and the same training sample-passes (`matched`,
    the rule `experiments/main.py` uses); `full` trains one epoch on the
    whole pool;
    iterative methods (lead and its ablations, odm, iterative_rescore) run
    their own schedule (budget, T_max, one pass per iteration) and report
    their sample-passes;
  * two diagnostics in `main`, labelled as such (not methods: they use what
    no method knows): `oracle`, random among the lake's clean-tier samples,
    matched to LEAD like random; `lead_replay`, the same seed's LEAD run's
    trained multiset (its selected.jsonl: same samples, same sample-passes)
    in one i.i.d. shuffled pass, which separates what LEAD picked from the
    order it trained it in (`select.replay_from` = the LEAD run's directory,
    so it runs after it);
  * every method trains with its natural step, `loop.train_step=auto`: the
    LEAD step (per-example outputs) for the methods that keep an IDU table,
    the plain step otherwise. Both apply the same update from the same
    per-example gradient sum; the plain step skips the projections and the
    dL_B terms, so it is the cheaper one (experiments/bench_step.py) and the
    LEAD step's extra cost is booked to the methods that need it;
  * one offline cache per results directory (`offline.cache_dir`): runs of
    the same pool file, model and seed reuse the warmup model, IFD, IDU_0,
    proxy and LESS artifacts (each stores the passes and seconds it cost when
    it was computed, and every run books them in full). The synthetic lake
    and the pretrained base live in the cache root ($LEAD_JAX_CACHE), one
    copy per generator arguments, so every run of a suite reads the same
    pool file and a suite computes each offline pass once per seed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Optional

from lead_jax import selection

BASE_CONFIG = "configs/default.py"
SEEDS = (0, 1, 2)
# The methods matched to LEAD's budget and sample-passes: the registry's
# one-shot methods that spend the distinct budget (not full), diagnostics aside.
ONE_SHOT = selection.names(schedule=selection.ONE_SHOT, budgeted=True, diagnostic=False)
# Every run of every suite (the results directory is substituted for {results}).
COMMON = {"loop.train_step": "auto", "offline.cache_dir": "{results}/offline_cache"}


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str  # run directory name; unique across suites for one set of overrides
  method: str  # --config.method
  overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)
  matched_to: Optional[str] = None  # reference LEAD variant (one-shot selectors)
  label: str = ""  # what the variant changes, for the tables
  group: str = ""  # the pool it runs on when a suite has several ("" = the default lake)


def _v(name, method, label="", matched_to=None, group="", **overrides):
  flat = {k.replace("__", "."): v for k, v in overrides.items()}
  return Variant(name, method, flat, matched_to, label or name, group)


def matched(method: str, lead_final: Mapping, lead_dir: str = "") -> dict:
  """Overrides that match `method` to a finished LEAD run: the same distinct
  budget (LEAD's samples_selected) and the same training sample-passes
  (static_epochs = LEAD's sample-passes / its distinct samples); `full` trains
  one epoch on the whole pool; `replay` trains the run in `lead_dir` (its
  selected.jsonl: the same samples and passes by construction; the budget is
  set only so that final_metrics' `budget` shows LEAD's distinct count)."""
  selected = int(lead_final["samples_selected"])
  if method == "replay":
    if not lead_dir:
      raise ValueError("matched: method replay needs the reference run's directory")
    return {"select.budget_samples": selected, "select.replay_from": lead_dir}
  return {
      "select.budget_samples":
          selected, "loop.static_epochs":
              (1.0 if method == "full" else lead_final["train_sample_passes"] / max(selected, 1))
  }


LEAD = _v("lead", "lead", "LEAD (all components)")
RESCORE = _v("iterative_rescore", "iterative_rescore", "iterative re-scoring (loss)")

# Diagnostics (lead_jax.selection.DIAGNOSTICS): reference points, not methods.
ORACLE = _v("oracle", "oracle", "diagnostic: random among clean-tier samples (not a method)",
            matched_to="lead")
LEAD_REPLAY = _v("lead_replay", "replay",
                 "diagnostic: LEAD's trained samples and passes, shuffled (not a method)",
                 matched_to="lead")

MAIN = (LEAD, _v("full", "full",
                 "all data, 1 epoch"), *(_v(m, m, matched_to="lead") for m in ONE_SHOT),
        _v("odm", "odm",
           "ODM (EXP3, loss reward, random in cluster)"), RESCORE, ORACLE, LEAD_REPLAY)

ABLATION = (LEAD, _v("lead_no_idu", "lead", "no IDU (static IDU_0 ranking, b = 0)", idu__b=0.0),
            _v("lead_no_bandit", "lead", "no bandit (uniform clusters)", bandit__algo="uniform"),
            _v("lead_no_strata", "lead", "no task strata", select__stratify_by_task=False),
            _v("lead_grad_none", "lead", "grad_term none", idu__grad_term="none"),
            _v("lead_grad_history", "lead", "grad_term history", idu__grad_term="history"),
            _v("lead_grad_cluster", "lead", "grad_term cluster", idu__grad_term="cluster"),
            _v("lead_b0.5", "lead", "b = 0.5", idu__b=0.5))


def _sensitivity():
  out = [LEAD]
  for k in (3, 5, 10):
    out.append(_v(f"lead_K{k}", "lead", f"K = {k}", select__num_clusters=k))
  for b in (0.05, 0.3):
    out.append(_v(f"lead_b{b}", "lead", f"b = {b}", idu__b=b))
  for g in (0.05, 0.3):
    out.append(_v(f"lead_gamma{g}", "lead", f"gamma = {g}", bandit__gamma=g))
  for r in (0.015, 0.06):
    out.append(_v(f"lead_rho{r}", "lead", f"sample_rate = {r}", select__sample_rate=r))
  for f in (0.025, 0.1):  # metric vs budget: LEAD and random at each budget
    out.append(_v(f"lead_budget{f}", "lead", f"budget {f:.1%}", select__budget_fraction=f))
    out.append(
        _v(f"random_budget{f}", "random", f"random, budget {f:.1%}", matched_to=f"lead_budget{f}"))
  return tuple(out)


def _efficiency(base_size: int = 10000, budget: int = 500, rho: float = 0.03):
  """LEAD and iterative re-scoring as the pool grows (N, 2N, 4N) at a fixed
  distinct budget and a per-stratum rate scaled by 1/m, so that both methods
  take about the same iterations of the same size at every N (the re-scoring
  size floor(rho N / K) stays constant too)."""
  out = [LEAD, RESCORE]  # N: the default lake (configs/default.py: budget 5% = 500, rho 0.03)
  for m in (2, 4):
    over = dict(data__synthetic__size=base_size * m, select__budget_samples=budget,
                select__sample_rate=rho / m)
    out.append(_v(f"lead_{m}N", "lead", f"LEAD, N x {m}", **over))
    out.append(
        _v(f"iterative_rescore_{m}N", "iterative_rescore", f"iterative re-scoring, N x {m}",
           **over))
  return tuple(out)


# The extensions beyond the paper (docs/method.md), each alone and all together.
EXTENSIONS = {
    "reducible": ("reducible utility (idu.reference = warmup)", {"idu.reference": "warmup"}),
    "eta": ("EXP3 with eta = 1", {"bandit.eta": 1.0}),
    "thompson": ("Thompson sampling bandit", {"bandit.algo": "thompson"}),
    "m2": ("2 clusters per iteration", {"select.clusters_per_iteration": 2}),
    "replay25": ("25% replay of earlier selections", {"loop.replay_fraction": 0.25}),
}
ALL_EXTENSIONS = ("reducible", "thompson", "m2", "replay25")  # eta and thompson exclude each other
# The second lake: another generator seed and other task weights (configs/default.py's 8 tasks).
LAKE2 = {
    "data.synthetic.seed": 1,
    "data.synthetic.weights": "parity:0.5,vowel:2,last_digit:2,size:0.5,count:2,city:0.5"
}


def _extensions():
  out = []
  for group, lake in (("", {}), ("lake2", LAKE2)):
    suffix, where = (f"_{group}", f" ({group})") if group else ("", "")
    lead = f"lead{suffix}"
    out.append(LEAD if not group else _v(lead, "lead", f"LEAD{where}", group=group, **_flat(lake)))
    for name, (label, over) in EXTENSIONS.items():
      out.append(
          _v(f"lead_{name}{suffix}", "lead", f"LEAD + {label}{where}", group=group, **_flat(lake),
             **_flat(over)))
    every = {k: v for name in ALL_EXTENSIONS for k, v in EXTENSIONS[name][1].items()}
    out.append(
        _v(f"lead_all{suffix}", "lead", f"LEAD + {' + '.join(ALL_EXTENSIONS)}{where}", group=group,
           **_flat(lake), **_flat(every)))
    if not group:
      out += [_v("random", "random", matched_to="lead"), ORACLE]
    else:
      out += [
          _v(f"random{suffix}", "random", f"random{where}", matched_to=lead, group=group,
             **_flat(lake)),
          _v(f"oracle{suffix}", "oracle", f"{ORACLE.label}{where}", matched_to=lead, group=group,
             **_flat(lake))
      ]
  return tuple(out)


def _flat(overrides: Mapping) -> dict:
  """`_v` keyword form (dots as double underscores) of dotted overrides."""
  return {k.replace(".", "__"): v for k, v in overrides.items()}


SUITES = {
    "main": MAIN, "ablation": ABLATION, "sensitivity": _sensitivity(), "efficiency": _efficiency(),
    "extensions": _extensions()
}


def get(name: str) -> tuple[Variant, ...]:
  if name not in SUITES:
    raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
  return SUITES[name]


def run_dir(results: str, variant: str, seed: int) -> str:
  """The workdir of one run inside a results directory."""
  return os.path.join(results, "runs", variant, f"seed{seed}")


def read_final(workdir: str) -> Optional[dict]:
  """The run's final_metrics.json, or None while it has not finished."""
  path = os.path.join(workdir, "final_metrics.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def check_unique() -> None:
  """A variant name means one set of overrides across all suites."""
  seen = {}
  for variants in SUITES.values():
    for v in variants:
      if seen.setdefault(v.name, v) != v:
        raise ValueError(f"variant {v.name!r} is defined twice with different settings")


check_unique()
