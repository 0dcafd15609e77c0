"""Selection: LEAD's two-stage rule against a brute-force reference, budgets,
reuse cap, quotas, determinism, and the baselines behind the same interface."""

import numpy as np
import pytest

from configs import base_lead
from lead_jax import selection
from lead_jax.selection import ranking
from lead_jax.selection.base import Inputs, Needs


def _cfg(**overrides):
  cfg = base_lead.get_select()
  for k, v in overrides.items():
    setattr(cfg, k, v)
  return cfg


def _pool(n=400, c=3, t=4, seed=0):
  rng = np.random.default_rng(seed)
  cluster_N = rng.integers(0, c, n)
  task_N = rng.choice(t, n, p=np.linspace(1, 3, t) / np.linspace(1, 3, t).sum())
  idu_N = np.round(rng.normal(size=n), 1).astype(np.float32)  # many ties
  return selection.build_layout(cluster_N, task_N, c, t), idu_N


def _reference(layout, idu_N, use_N, c, rate, minimum, cap):
  """Plain-Python LEAD selection for one cluster, without budget."""
  picked = []
  for t in range(layout.num_tasks):
    stratum = [
        i for i in range(layout.num_pool) if layout.cluster_N[i] == c and layout.task_N[i] == t
    ]
    if not stratum:
      continue
    quota = max(minimum, int(np.floor(len(stratum) * rate + 1e-9)))
    cands = sorted((i for i in stratum if use_N[i] < cap), key=lambda i: (-idu_N[i], i))
    picked += cands[:quota]
  return sorted(picked, key=lambda i: (-idu_N[i], i))


def _state(use_N):
  use_N = np.asarray(use_N, np.uint8)
  return selection.SelectionState(use_count_N=use_N, num_distinct=int((use_N > 0).sum()),
                                  iteration=0)


def test_layout_groups_by_cluster_then_task():
  layout, _ = _pool()
  for c in range(3):
    members = layout.members(c)
    bounds = layout.stratum_bounds(c)
    for t in range(4):
      expected = np.flatnonzero((layout.cluster_N == c) & (layout.task_N == t))
      np.testing.assert_array_equal(members[bounds[t]:bounds[t + 1]], expected)
  assert layout.counts_CxT.sum() == layout.num_pool
  with pytest.raises(ValueError, match="renumber"):
    selection.build_layout(np.array([0, 3]), np.array([0, 0]), 3, 1)


@pytest.mark.parametrize("seed,rate,minimum", [(0, 0.1, 1), (1, 0.05, 0), (2, 0.3, 2),
                                               (3, 0.02, 3)])
def test_lead_matches_brute_force_reference(seed, rate, minimum):
  layout, idu_N = _pool(seed=seed)
  use_N = np.random.default_rng(seed).integers(0, 6, layout.num_pool)
  sel = selection.make("lead",
                       _cfg(sample_rate=rate, min_per_task=minimum, budget_samples=layout.num_pool),
                       layout)
  for c in range(3):
    ids = sel.select(_state(use_N), Inputs(c, idu_N), None)
    assert ids.dtype == np.int64
    assert ids.tolist() == _reference(layout, idu_N, use_N, c, rate, minimum, 4)


def test_stratum_quota_floor_and_minimum():
  counts = np.array([250, 30, 5, 0, 200])
  np.testing.assert_array_equal(ranking.stratum_quota(counts, 0.015, 1), [3, 1, 1, 0, 3])
  np.testing.assert_array_equal(ranking.stratum_quota(counts, 0.015, 0), [3, 0, 0, 0, 3])
  np.testing.assert_array_equal(ranking.stratum_quota(counts, 0.1, 4), [25, 4, 4, 0, 20])


def test_per_task_quota_in_selection_and_no_strata_ablation():
  cluster_N = np.zeros(300, int)
  task_N = np.repeat([0, 1, 2], [250, 45, 5])
  layout = selection.build_layout(cluster_N, task_N, 1, 3)
  idu_N = np.arange(300, dtype=np.float32)  # the last task has the best IDU
  sel = selection.make("lead", _cfg(sample_rate=0.04, min_per_task=2, budget_samples=300), layout)
  ids = sel.select(selection.init_state(300), Inputs(0, idu_N), None)
  np.testing.assert_array_equal(np.bincount(task_N[ids], minlength=3), [10, 2, 2])
  np.testing.assert_array_equal(ids[:2], [299, 298])  # highest first
  flat = selection.make(
      "lead", _cfg(sample_rate=0.04, min_per_task=2, budget_samples=300, stratify_by_task=False),
      layout)
  ids = flat.select(selection.init_state(300), Inputs(0, idu_N), None)
  np.testing.assert_array_equal(ids, np.arange(299, 287, -1))  # top 12 overall


def _run(sel, layout, idu_N, seed=0, max_iters=1000):
  """Drives a selector like the loop does (clusters cycled, no bandit)."""
  rng = np.random.default_rng(seed)
  state = selection.init_state(layout.num_pool)
  history = []
  while not sel.done(state) and len(history) < max_iters:
    ids = sel.select(state, Inputs(len(history) % layout.num_clusters, idu_N), rng)
    assert np.unique(ids).size == ids.size
    history.append(ids)
    state = selection.record(state, ids)
  return state, history


@pytest.mark.parametrize(
    "name", ["lead", "odm", "random", "random_balanced", "ppl", "ifd", "superfilter", "less"])
def test_every_selector_spends_exactly_the_budget(name):
  layout, idu_N = _pool(n=2000)
  cfg = _cfg(sample_rate=0.05, budget_samples=137, t_max=100)
  sel = selection.make(name, cfg, layout, scores_N=idu_N)
  state, history = _run(sel, layout, idu_N)
  assert state.num_distinct == 137
  assert np.count_nonzero(state.use_count_N) == 137
  assert state.use_count_N.max() <= cfg.reuse_cap
  assert sel.done(state)


def test_last_iteration_trims_proportionally_per_stratum():
  new = np.array([True] * 6 + [True] * 3)
  fraction = np.concatenate([ranking.quota_fraction(new[:6]), ranking.quota_fraction(new[6:])])
  ids = np.arange(9)
  keep = ranking.trim_to_budget(new, fraction, np.zeros(9), ids, 3)
  np.testing.assert_array_equal(np.flatnonzero(keep), [0, 1, 6])
  # Already used picks are free and always kept.
  new = np.array([False, True, True, False, True])
  fraction = ranking.quota_fraction(new)
  keep = ranking.trim_to_budget(new, fraction, np.zeros(5), np.arange(5), 1)
  np.testing.assert_array_equal(np.flatnonzero(keep), [0, 1, 3])


def test_reuse_cap_respected_and_exhausted_cluster_is_empty():
  layout, idu_N = _pool(n=300, c=2, t=2)
  cfg = _cfg(sample_rate=0.2, reuse_cap=2, budget_fraction=1.0, t_max=40)
  sel = selection.make("lead", cfg, layout)
  state, history = _run(sel, layout, idu_N)  # static IDU: the top ones recur
  assert state.use_count_N.max() == 2 and state.num_distinct == 300
  assert any(np.intersect1d(a, b).size for a, b in zip(history, history[2:]))
  at_cap = np.where(layout.cluster_N == 0, 2, 0).astype(np.uint8)
  assert sel.select(_state(at_cap), Inputs(0, idu_N), None).size == 0
  assert sel.select(_state(at_cap), Inputs(1, idu_N), None).size > 0


@pytest.mark.parametrize("name", ["random", "random_balanced", "odm", "lead"])
def test_determinism_for_a_seed(name):
  layout, idu_N = _pool(n=1500)
  sel = selection.make(name, _cfg(sample_rate=0.05, budget_samples=100), layout, scores_N=idu_N)
  a = _run(sel, layout, idu_N, seed=3)[1]
  b = _run(sel, layout, idu_N, seed=3)[1]
  c = _run(sel, layout, idu_N, seed=4)[1]
  assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
  if name != "lead":
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_random_balanced_equal_shares_and_quota_rule():
  task_N = np.repeat([0, 1, 2, 3], [500, 300, 8, 100])
  layout = selection.build_layout(np.zeros(908, int), task_N, 1, 4)
  sel = selection.make("random_balanced", _cfg(budget_samples=200), layout)
  ids = sel.select(selection.init_state(908), Inputs(), np.random.default_rng(0))
  np.testing.assert_array_equal(np.bincount(task_N[ids]), [64, 64, 8, 64])
  for avail, total in [([5, 0, 9, 9], 20), ([1, 1, 1], 10), ([7, 7, 7], 5)]:
    q = ranking.balanced_quota(np.array(avail), total)
    assert q.sum() == min(total, sum(avail)) and (q <= avail).all()
    free = q < np.array(avail)
    assert not free.any() or q[free].max() - q[free].min() <= 1
  np.testing.assert_array_equal(ranking.balanced_quota(np.array([7, 7, 7]), 5), [2, 2, 1])


def test_top_k_selectors_and_full():
  layout, idu_N = _pool(n=50)
  cfg = _cfg(budget_samples=5)
  top = selection.make("ppl", cfg, layout, scores_N=idu_N)
  ids = top.select(selection.init_state(50), Inputs(), None)
  ref = sorted(range(50), key=lambda i: (-idu_N[i], i))[:5]
  assert ids.tolist() == ref
  cfg.ppl_highest = False
  low = selection.make("ppl", cfg, layout, scores_N=idu_N)
  ids = low.select(selection.init_state(50), Inputs(), None)
  assert ids.tolist() == sorted(range(50), key=lambda i: (idu_N[i], i))[:5]
  full = selection.make("full", cfg, layout)
  state, history = _run(full, layout, idu_N)
  assert len(history) == 1 and state.num_distinct == 50


def test_bad_inputs_raise_clear_errors():
  layout, idu_N = _pool(n=50)
  with pytest.raises(ValueError, match="unknown method"):
    selection.make("cherry", _cfg(), layout)
  with pytest.raises(ValueError, match="score per pool sample"):
    selection.make("ifd", _cfg(budget_samples=5), layout)
  with pytest.raises(ValueError, match="budget"):
    selection.make("lead", _cfg(budget_fraction=0.001), layout)
  sel = selection.make("lead", _cfg(budget_samples=5), layout)
  with pytest.raises(ValueError, match="cluster 9"):
    sel.select(selection.init_state(50), Inputs(9, idu_N), None)
  bad = idu_N.copy()
  bad[:] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    sel.select(selection.init_state(50), Inputs(0, bad), None)
  with pytest.raises(ValueError, match="duplicates"):
    selection.record(selection.init_state(50), np.array([1, 1]))


def test_limits_state_round_trip_and_cost_declaration():
  assert selection.resolve_limits(_cfg(), 600_000).budget == 15_000
  assert selection.resolve_limits(_cfg(budget_samples=7), 100).budget == 7
  state = selection.record(selection.init_state(10), np.array([2, 5]))
  state = selection.record(state, np.array([5, 7]))
  assert (state.num_distinct, state.iteration) == (3, 2)
  back = selection.from_dict(selection.to_dict(state))
  np.testing.assert_array_equal(back.use_count_N, state.use_count_N)
  assert (back.num_distinct, back.iteration) == (3, 2)
  layout, _ = _pool(n=50)
  lead = selection.make("lead", _cfg(budget_samples=5), layout)
  assert lead.needs.scoring_passes(100, 20) == {"offline": 300, "selection": 0, "total": 300}
  rescore = Needs(rescore="loss", offline_scores=("base_loss",))
  assert rescore.scoring_passes(100, 20)["selection"] == 2000


def test_base_lead_configs_build_lock_and_carry_method_defaults():
  cfg = base_lead.get()
  with pytest.raises(AttributeError):
    cfg.select.sample_rte = 0.1  # a typo must fail
  s = cfg.select
  assert (cfg.bandit.gamma, cfg.idu.b, s.sample_rate) == (0.1, 0.1, 0.015)
  assert (s.reuse_cap, s.t_max, s.num_clusters) == (4, 20, 7)
  assert (cfg.bandit.reward, cfg.idu.grad_term) == ("idu_gain", "update")


def test_reducible_ranking_inside_a_stratum_by_hand():
  """lead ranks by IDU - lambda IL with idu.reference = warmup: a sample of high
  IDU and high IL (a noisy label) loses to one of lower IDU and low IL."""
  from lead_jax import idu
  layout = selection.build_layout(np.zeros(4, int), np.zeros(4, int), 1, 1)
  idu_N = np.array([3.0, 2.0, 1.0, 0.5], np.float32)
  il_N = np.array([2.5, 0.5, 0.2, 0.0], np.float32)  # reducible: 0.5, 1.5, 0.8, 0.5
  cfg = _cfg(sample_rate=0.5, budget_samples=4)  # quota 2 of the one stratum
  sel = selection.make("lead", cfg, layout, reference="warmup")
  assert sel.needs.offline_scores == ("ifd", "base_loss", "warmup_il")
  assert sel.needs.scoring_passes(100, 20, num_warmup=10)["offline"] == 310
  assert selection.make("lead", cfg, layout).needs.offline_scores == ("ifd", "base_loss")
  assert selection.needs("odm", cfg, "warmup").offline_scores == ("ifd",)  # no IDU table

  def pick(reference, weight):
    icfg = base_lead.get_idu()
    icfg.reference, icfg.reference_weight = reference, weight
    inputs = Inputs(0, idu.ranking_scores(idu_N, icfg, il_N))
    ids = sel.select(selection.init_state(4), inputs, None)
    return ids.tolist(), sel.scores_of(ids, inputs).tolist()

  assert pick("none", 1.0) == ([0, 1], [3.0, 2.0])
  assert pick("warmup", 1.0) == ([1, 2], [1.5, pytest.approx(0.8)])  # 0 (IDU 3, IL 2.5) loses
  assert pick("warmup", 0.0) == pick("none", 1.0)  # lambda = 0 ranks as none
