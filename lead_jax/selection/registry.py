"""The method registry: every method the LEAD loop runs, one `Method` each.

An entry is all the rest of the code asks about a method:

  build       the selector factory, `build(Context) -> Selector` (base.Selector)
  needs       what the loop computes or reads for it (`base.Needs`: offline
              scores, per-iteration rescoring, bandit, IDU table, tiers,
              replayed passes); a `Needs`, or a function of the `select`
              sub-config when it depends on it (iterative_rescore); a method
              with the IDU table also needs `base.REFERENCE_SCORES[r]` when
              idu.reference = r is not none (`Method.needs_for`)
  score       the offline score a top-k method ranks by (a `base.SCORES`
              name, also its `needs.offline_scores`); the loop hands that
              array to `build` as `Context.scores_N`
  schedule    ONE_SHOT: the whole subset in iteration 0, trained for
              loop.static_epochs epochs; ITERATIVE: select and train one
              pass per iteration until the budget or T_max; REPLAY: the
              selector's `passes_M` (a multiset) in one shuffled pass
  train_step  what loop.train_step=auto resolves to: "lead" (the step with
              per-example outputs, which the IDU update reads) or "plain"
  budgeted    spends select's distinct budget (full takes the whole pool,
              replay the replayed run's distinct samples)
  diagnostic  a reference point, not a method that competes (it uses what
              no method knows; `diagnostics`)
  about       one line, for tables (`table()`)

Who asks: `selection.make` / `selection.needs` (and so the loop's set-up and
the offline stage's choice of artifacts, `offline.wants_for`), the loop's
training schedule and step, experiments/suites.py (its one-shot methods).

Adding a baseline: write its selector (a frozen dataclass with `name`,
`needs`, `select`, `done`, `scores_of`) and add one `Method` to `METHODS`. A
top-k baseline over an existing offline score is just
`_top_k("name", "<score>", "about")`; a new offline score also needs its row
in `base.SCORES` (cost, `offline.Result` field) and its computation in
`lead_jax.offline.stage.run`, under the same name.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Union

import numpy as np

from lead_jax.selection.base import (OFFLINE_SCORES, REFERENCE_SCORES, RESCORE_SCORES, SCORES,
                                     Needs, Selector, check_scores)
from lead_jax.selection.diagnostics import make_oracle, make_replay
from lead_jax.selection.lead import ClusterSelector
from lead_jax.selection.rescore import RescoreSelector, iteration_size
from lead_jax.selection.state import Layout, Limits, resolve_limits
from lead_jax.selection.static import FullSelector, RandomSelector, TopKSelector

ONE_SHOT, ITERATIVE, REPLAY = "one_shot", "iterative", "replay"
SCHEDULES = (ONE_SHOT, ITERATIVE, REPLAY)
STEPS = ("lead", "plain")  # the training steps a method can default to
TRAIN_STEPS = ("auto", *STEPS)  # loop.train_step


@dataclasses.dataclass(frozen=True)
class Context:
  """What a selector factory gets: the method, its config and the loop's inputs."""
  name: str
  cfg: Any  # the `select` sub-config
  layout: Layout
  needs: Needs
  limits: Limits
  scores_N: Optional[np.ndarray] = None  # the method's `score` over the pool (top-k)
  tier_N: Optional[np.ndarray] = None  # the pool's tiers (needs.tiers)
  passes_M: Optional[np.ndarray] = None  # the replayed sample-passes (needs.replay)


@dataclasses.dataclass(frozen=True)
class Method:
  """One method's registry entry (the fields: see the module doc)."""
  name: str
  build: Callable[[Context], Selector]  # the selector factory
  needs: Union[Needs, Callable[[Any], Needs]]  # or a function of the select sub-config
  schedule: str  # ONE_SHOT | ITERATIVE | REPLAY
  about: str  # one line
  train_step: str = "plain"  # what loop.train_step=auto resolves to
  score: Optional[str] = None  # the offline score a top-k method ranks by
  budgeted: bool = True  # spends select's distinct budget
  diagnostic: bool = False  # a reference point, not a competing method

  def __post_init__(self):
    if self.schedule not in SCHEDULES:
      raise ValueError(f"method {self.name!r}: schedule {self.schedule!r}; use one of {SCHEDULES}")
    if self.train_step not in STEPS:
      raise ValueError(f"method {self.name!r}: train_step {self.train_step!r}; use one of "
                       f"{STEPS}")
    if self.score is not None and self.score not in OFFLINE_SCORES:
      raise ValueError(f"method {self.name!r}: score {self.score!r} is not an offline score "
                       f"({OFFLINE_SCORES})")

  def needs_for(self, cfg, reference: str = "none") -> Needs:
    """What the loop must compute for the method; `cfg` is the `select`
    sub-config, `reference` the run's `idu.reference`: a method that ranks by
    the IDU table also needs that reference's offline score (REFERENCE_SCORES)."""
    need = self.needs(cfg) if callable(self.needs) else self.needs
    if need.idu and reference in REFERENCE_SCORES:
      need = dataclasses.replace(
          need, offline_scores=need.offline_scores + (REFERENCE_SCORES[reference],))
    return need


# ---------------------------------------------------------------- factories
def _cluster(ctx: Context, random_ranking: bool) -> ClusterSelector:
  cfg = ctx.cfg
  if cfg.sample_rate <= 0 and cfg.min_per_task <= 0:
    raise ValueError("select.sample_rate and select.min_per_task are both 0: "
                     "every iteration would select nothing.")
  return ClusterSelector(name=ctx.name, needs=ctx.needs, layout=ctx.layout, limits=ctx.limits,
                         sample_rate=cfg.sample_rate, min_per_task=cfg.min_per_task,
                         stratify_by_task=cfg.stratify_by_task, random_ranking=random_ranking)


def _full(ctx: Context) -> FullSelector:
  return FullSelector(name=ctx.name, needs=ctx.needs)


def _random(ctx: Context, balanced: bool) -> RandomSelector:
  return RandomSelector(name=ctx.name, needs=ctx.needs, layout=ctx.layout, limits=ctx.limits,
                        balanced=balanced)


def _top_k_selector(ctx: Context, highest: Callable[[Any], bool]) -> TopKSelector:
  scores_N = check_scores(ctx.scores_N, ctx.layout.num_pool, ctx.name)
  return TopKSelector(name=ctx.name, needs=ctx.needs, limits=ctx.limits, scores_N=scores_N,
                      highest=highest(ctx.cfg))


def _rescore(ctx: Context) -> RescoreSelector:
  return RescoreSelector(name=ctx.name, needs=ctx.needs, limits=ctx.limits,
                         size=iteration_size(ctx.cfg, ctx.layout.num_pool))


def _rescore_needs(cfg) -> Needs:
  if cfg.rescore_score not in RESCORE_SCORES:
    raise ValueError(f"select.rescore_score={cfg.rescore_score!r}; use one of "
                     f"{RESCORE_SCORES}.")
  return Needs(rescore=cfg.rescore_score)


def _oracle(ctx: Context):
  return make_oracle(ctx.name, ctx.needs, ctx.limits, ctx.layout.num_pool, ctx.tier_N)


def _replay(ctx: Context):
  return make_replay(ctx.name, ctx.needs, ctx.limits, ctx.layout.num_pool, ctx.passes_M)


def _top_k(name: str, score: str, about: str, highest: Callable[[Any], bool] = lambda cfg: True):
  """A one-shot method taking the budget's best samples by offline `score`."""
  return Method(name, functools.partial(_top_k_selector, highest=highest),
                Needs(offline_scores=(score,)), ONE_SHOT, about, score=score)


# LEAD's offline scores: IFD for the clusters, base loss for IDU_0.
_LEAD = Needs(bandit=True, idu=True, offline_scores=("ifd", "base_loss"))


def index(methods) -> dict[str, Method]:
  """`{name: Method}` in the given order; a name given twice is an error."""
  out = {}
  for m in methods:
    if out.setdefault(m.name, m) is not m:
      raise ValueError(f"selection: method {m.name!r} registered twice")
  return out


METHODS = index((
    Method("lead", functools.partial(_cluster, random_ranking=False), _LEAD, ITERATIVE,
           "top IDU per task stratum in the bandit's cluster (LEAD)", train_step="lead"),
    Method("odm", functools.partial(_cluster, random_ranking=True),
           Needs(bandit=True, offline_scores=("ifd",)), ITERATIVE,
           "same strata and quotas, random inside the bandit's cluster (ODM)"),
    Method("full", _full, Needs(), ONE_SHOT, "the whole pool", budgeted=False),
    Method("random", functools.partial(_random, balanced=False), Needs(), ONE_SHOT,
           "uniform, the whole budget at once"),
    Method("random_balanced", functools.partial(_random, balanced=True), Needs(), ONE_SHOT,
           "equal shares per task, the whole budget at once"),
    _top_k("ppl", "base_loss", "top base-model loss (select.ppl_highest; False: the lowest)",
           highest=lambda cfg: cfg.ppl_highest),
    _top_k("ifd", "ifd", "top IFD under the warmup model (Cherry)"),
    _top_k("superfilter", "proxy_ifd", "top IFD under a small proxy model (Superfiltering)"),
    _top_k("less", "less", "top cosine of projected gradients with a dev set (LESS)"),
    Method(
        "iterative_rescore", _rescore, _rescore_needs, ITERATIVE,
        "each iteration, the top of the whole pool by a score recomputed under the "
        "current model (select.rescore_score)"),
    Method(
        "oracle", _oracle, Needs(tiers=True), ONE_SHOT,
        "uniform among the pool's clean-tier samples (the lake's `tier` labels), the "
        "whole budget at once", diagnostic=True),
    Method("replay", _replay, Needs(replay=True), REPLAY,
           "a finished run's trained multiset (select.replay_from), one shuffled pass",
           budgeted=False, diagnostic=True),
))
NAMES = tuple(METHODS)
DIAGNOSTICS = tuple(m.name for m in METHODS.values() if m.diagnostic)


def get(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f"selection: unknown method {name!r}; choose one of "
                     f"{', '.join(NAMES)}.")
  return METHODS[name]


def names(**where) -> tuple[str, ...]:
  """The methods whose fields equal `where`, in registry order, e.g.
  `names(schedule=ONE_SHOT, diagnostic=False)`."""
  fields = {f.name for f in dataclasses.fields(Method)}
  if set(where) - fields:
    raise ValueError(f"selection.names: no field {sorted(set(where) - fields)}; use {fields}")
  return tuple(
      m.name for m in METHODS.values() if all(getattr(m, k) == v for k, v in where.items()))


def needs(name: str, cfg, reference: str = "none") -> Needs:
  """What method `name` needs from the loop; `cfg` is the `select` sub-config,
  `reference` the run's `idu.reference` (`Method.needs_for`)."""
  return get(name).needs_for(cfg, reference)


def make(name: str, cfg, layout: Layout, *, scores_N: Optional[np.ndarray] = None,
         tier_N: Optional[np.ndarray] = None, passes_M: Optional[np.ndarray] = None,
         reference: str = "none") -> Selector:
  """The selector `name`; `scores_N` is the array of its `score` (top-k),
  `tier_N` the pool's tiers (oracle), `passes_M` the replayed sample-passes,
  `reference` the run's `idu.reference` (what its `needs` declare)."""
  method = get(name)
  need = method.needs_for(cfg, reference)
  limits = resolve_limits(cfg, layout.num_pool)
  return method.build(Context(name, cfg, layout, need, limits, scores_N, tier_N, passes_M))


def offline_scores_N(name: str, result) -> Optional[np.ndarray]:
  """The array of method `name`'s `score` in an `offline.Result` (None
  for methods without one)."""
  score = get(name).score
  return None if score is None else getattr(result, SCORES[score].field)


def train_step(name: str, cfg, requested: str = "auto") -> str:
  """"lead" or "plain": `loop.train_step` = `requested` for method `name`
  (auto: the method's `train_step`); `cfg` is the `select` sub-config."""
  if requested not in TRAIN_STEPS:
    raise ValueError(f"loop.train_step={requested!r}; use one of {TRAIN_STEPS}")
  method = get(name)
  if requested == "plain" and method.needs_for(cfg).idu:
    raise ValueError(f"loop.train_step='plain' cannot train method={name!r}: its IDU "
                     "update needs the LEAD step's per-example outputs (use auto or lead)")
  return method.train_step if requested == "auto" else requested


def table() -> str:
  """The registry as a Markdown table (for the docs)."""
  rows = ["| method | schedule | auto step | ranks by / needs | about |", "|---|---|---|---|---|"]
  for m in METHODS.values():
    need = m.needs if isinstance(m.needs, Needs) else None
    what = m.score or (
        ", ".join([k for k in ("bandit", "idu", "tiers", "replay") if getattr(need, k)] +
                  list(need.offline_scores)) if need else "select.rescore_score, every iteration")
    kind = f"{m.schedule}{' (diagnostic)' if m.diagnostic else ''}"
    rows.append(f"| `{m.name}` | {kind} | {m.train_step} | {what or '-'} | {m.about} |")
  return "\n".join(rows)
