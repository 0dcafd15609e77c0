"""Every selector behind the one interface (the diagnostics included, on
given tiers and a given replayed multiset): exact distinct budget, reuse cap,
determinism for a seed; iterative re-scoring's size rule and budget trim; the
declared needs; LESS's cosine aggregation against hand values."""

import numpy as np
import pytest

from lead_jax import selection
from lead_jax.offline import baseline_scores
from lead_jax.selection.base import Inputs
from tests.test_selection import _cfg


def _layout(n=1200, c=4, t=5, seed=0):
  rng = np.random.default_rng(seed)
  return selection.build_layout(rng.integers(0, c, n), rng.integers(0, t, n), c, t)


def _drive(sel, layout, seed, scores0_N, max_iters=500):
  """Runs a selector like the loop: bandit-free cluster cycle; fresh scores
  for re-scoring selectors (a sample's 'loss' falls each time it is used, plus
  seeded noise, as training would make it)."""
  rng = np.random.default_rng(seed)
  state = selection.init_state(layout.num_pool)
  history = []
  while not sel.done(state) and len(history) < max_iters:
    scores = scores0_N
    if sel.needs.rescore:
      scores = scores0_N - 0.5 * state.use_count_N + 0.01 * rng.random(layout.num_pool)
    ids = sel.select(state, Inputs(len(history) % layout.num_clusters, scores), rng)
    assert ids.dtype == np.int64 and np.unique(ids).size == ids.size
    history.append(ids)
    state = selection.record(state, ids)
  return state, history


SELECTORS = [n for n in selection.NAMES if n != "full"]


def _diagnostic_inputs(n, distinct=211, seed=2):
  """The diagnostics' inputs: tiers (70% clean) and a replayed multiset of
  `distinct` ids (some trained two or three times)."""
  rng = np.random.default_rng(seed)
  tier_N = np.where(rng.random(n) < 0.7, "clean", "noisy")
  ids = rng.choice(n, distinct, replace=False)
  return {"tier_N": tier_N, "passes_M": np.concatenate([ids, ids[:50], ids[:10]])}


@pytest.mark.parametrize("name", SELECTORS)
def test_budget_reuse_cap_and_determinism_of_every_selector(name):
  layout = _layout()
  scores_N = np.random.default_rng(1).normal(size=layout.num_pool).astype(np.float32)
  cfg = _cfg(sample_rate=0.1, budget_samples=211, t_max=200, reuse_cap=2)
  extra = _diagnostic_inputs(layout.num_pool)
  sel = selection.make(name, cfg, layout, scores_N=scores_N, **extra)
  state, history = _drive(sel, layout, 5, scores_N)
  assert state.num_distinct == np.count_nonzero(state.use_count_N) == 211
  assert state.use_count_N.max() <= 2 and sel.done(state)
  _, again = _drive(
      selection.make(name, cfg, layout, scores_N=scores_N, **extra), layout, 5, scores_N)
  assert len(again) == len(history)
  assert all(np.array_equal(a, b) for a, b in zip(again, history))


def test_full_takes_the_whole_pool_once():
  layout = _layout(n=300)
  sel = selection.make("full", _cfg(budget_samples=10), layout)
  state, history = _drive(sel, layout, 0, np.zeros(300, np.float32))
  assert len(history) == 1 and state.num_distinct == 300


def test_needs_match_the_built_selectors_and_their_cost():
  layout = _layout(n=300)
  cfg = _cfg(budget_samples=20)
  for name in selection.NAMES:
    sel = selection.make(name, cfg, layout, scores_N=np.zeros(300, np.float32),
                         **_diagnostic_inputs(300, distinct=20))
    assert sel.needs == selection.needs(name, cfg), name
  assert selection.needs("oracle", cfg).tiers and selection.needs("replay", cfg).replay
  assert set(selection.DIAGNOSTICS) <= set(selection.NAMES)
  for name in selection.DIAGNOSTICS:  # no scoring passes: they read files
    assert selection.needs(name, cfg).scoring_passes(300, 7)["total"] == 0
  assert selection.needs("iterative_rescore", cfg).scoring_passes(300, 7)["selection"] == 2100
  cfg.rescore_score = "ifd"
  assert selection.needs("iterative_rescore", cfg).scoring_passes(300, 7)["selection"] == 4200
  assert selection.needs("less", cfg).scoring_passes(300, 7, num_dev=12)["total"] == 312
  assert selection.needs("superfilter", cfg).scoring_passes(300, 7)["total"] == 600
  cfg.rescore_score = "perplexity"
  with pytest.raises(ValueError, match="rescore_score"):
    selection.needs("iterative_rescore", cfg)
  with pytest.raises(ValueError, match="unknown method"):
    selection.needs("cherry", cfg)


def test_rescore_size_rule_top_scores_and_budget_trim():
  layout = _layout(n=700, c=7)
  cfg = _cfg(sample_rate=0.15, budget_samples=40)
  assert selection.iteration_size(cfg, 700) == 15  # floor(0.15 * 700 / 7)
  cfg.rescore_size = 4
  assert selection.iteration_size(cfg, 700) == 4
  cfg.rescore_size = 0
  sel = selection.make("iterative_rescore", cfg, layout)
  scores = np.arange(700, dtype=np.float32)
  ids = sel.select(selection.init_state(700), Inputs(scores_N=scores), None)
  np.testing.assert_array_equal(ids, np.arange(699, 684, -1))  # the top 15, best first
  # 5 distinct left: the used picks stay free, the best 5 new ones are kept
  use = np.zeros(700, np.uint8)
  use[:30] = 1
  use[690:695] = 1
  state = selection.SelectionState(use, 35, 3)
  ids = sel.select(state, Inputs(scores_N=scores), None)
  assert set(ids.tolist()) == set(range(690, 700))
  # the reuse cap: samples at the cap are never candidates
  use = np.zeros(700, np.uint8)
  use[650:] = cfg.reuse_cap
  state = selection.SelectionState(use, 50, 3)
  cfg.budget_samples = 100
  ids = selection.make("iterative_rescore", cfg, layout).select(state, Inputs(scores_N=scores),
                                                                None)
  np.testing.assert_array_equal(ids, np.arange(649, 634, -1))
  with pytest.raises(ValueError, match="score per pool sample"):
    sel.select(selection.init_state(700), Inputs(), None)


def test_less_aggregation_against_hand_values():
  pool = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
  dev = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  tasks = np.array([0, 0, 1])
  r = np.sqrt(0.5)
  cos = np.array([[1, 0, r], [0, 1, r], [0, 0, 0], [r, r, 1]])
  np.testing.assert_allclose(
      baseline_scores.aggregate(pool, dev, tasks, "max"), cos.max(1), rtol=1e-6)
  np.testing.assert_allclose(
      baseline_scores.aggregate(pool, dev, tasks, "mean"), cos.mean(1), rtol=1e-6)
  task_max = np.maximum(cos[:, :2].mean(1), cos[:, 2])  # LESS: task mean, then max
  np.testing.assert_allclose(
      baseline_scores.aggregate(pool, dev, tasks, "task_max"), task_max, rtol=1e-6)
  with pytest.raises(ValueError, match="less_aggregate"):
    baseline_scores.aggregate(pool, dev, tasks, "sum")
