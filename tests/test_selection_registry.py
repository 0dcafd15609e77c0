"""The method registry: every entry is consistent with the selector it builds,
the loop's schedule and training step, the offline stage's artifacts and the
suites; one vocabulary of scores."""

import dataclasses

import numpy as np
import pytest

from tests.test_selection import _cfg
from experiments import suites
from lead_jax import selection
from lead_jax.offline import stage as offline
from lead_jax.selection import registry
from lead_jax.selection.base import Inputs

# What offline.run computes (its `wants`), and the one-shot set the loop
# applied loop.static_epochs to before the registry.
ARTIFACTS = {"ifd", "base_loss", "clusters", "proxy_ifd", "less"}
STATIC_EPOCHS = {"full", "random", "random_balanced", "ppl", "ifd", "superfilter", "less", "oracle"}


def _layout(n=240, c=3, t=4, seed=0):
  rng = np.random.default_rng(seed)
  return selection.build_layout(rng.integers(0, c, n), rng.integers(0, t, n), c, t)


def _declared_inputs(method, need, n, seed=1):
  """Exactly the build inputs the entry declares: its score, tiers, passes."""
  rng = np.random.default_rng(seed)
  out = {}
  if method.score:
    out["scores_N"] = rng.normal(size=n).astype(np.float32)
  if need.tiers:
    out["tier_N"] = np.where(rng.random(n) < 0.5, "clean", "noisy")
  if need.replay:
    ids = rng.choice(n, 30, replace=False)
    out["passes_M"] = np.concatenate([ids, ids[:7]])
  return out


def test_names_are_unique_and_every_entry_is_exported():
  assert len(set(selection.NAMES)) == len(selection.NAMES) == len(registry.METHODS) == 12
  assert all(k == m.name for k, m in registry.METHODS.items())
  with pytest.raises(ValueError, match="twice"):
    registry.index([selection.get("ppl"), dataclasses.replace(selection.get("ifd"), name="ppl")])
  assert selection.DIAGNOSTICS == ("oracle", "replay")
  assert set(selection.names(diagnostic=True)) == set(selection.DIAGNOSTICS)
  for name in selection.NAMES:
    m = selection.get(name)
    assert m.about and m.schedule in registry.SCHEDULES and m.train_step in registry.STEPS
  table = registry.table().splitlines()
  assert len(table) == 2 + len(selection.NAMES)
  assert all(f"| `{n}` |" in row for n, row in zip(selection.NAMES, table[2:]))
  with pytest.raises(ValueError, match="unknown method"):
    selection.get("cherry")
  with pytest.raises(ValueError, match="no field"):
    selection.names(shedule="one_shot")
  with pytest.raises(ValueError, match="schedule"):
    dataclasses.replace(selection.get("random"), schedule="twice")
  with pytest.raises(ValueError, match="offline score"):
    dataclasses.replace(selection.get("ppl"), score="perplexity")


@pytest.mark.parametrize("name", selection.NAMES)
def test_every_method_builds_with_its_declared_needs_and_runs_its_schedule(name):
  method, cfg, layout = selection.get(name), _cfg(sample_rate=0.05, budget_samples=24,
                                                  t_max=100), _layout()
  need = selection.needs(name, cfg)
  given = _declared_inputs(method, need, layout.num_pool)
  sel = selection.make(name, cfg, layout, **given)
  assert sel.name == name and sel.needs == need
  for missing in given:  # each declared input is one the build needs
    with pytest.raises(ValueError, match="needs"):
      selection.make(name, cfg, layout, **{k: v for k, v in given.items() if k != missing})
  if method.score:  # the score a top-k method ranks by is its one offline score
    assert need.offline_scores == (method.score,)
  rng, state, iterations = np.random.default_rng(3), selection.init_state(layout.num_pool), 0
  while not sel.done(state) and iterations < 100:
    scores_N = None  # an IDU table or fresh scores that fall with use, as training would
    if need.idu or need.rescore:
      scores_N = np.linspace(0, 1, layout.num_pool, dtype=np.float32) - state.use_count_N
    inputs = Inputs(iterations % layout.num_clusters if need.bandit else -1, scores_N)
    ids = sel.select(state, inputs, rng)
    recorded = sel.scores_of(ids, inputs)
    if method.score:
      np.testing.assert_array_equal(recorded, given["scores_N"][ids])
    elif scores_N is not None and name != "odm":
      np.testing.assert_array_equal(recorded, scores_N[ids])
    else:  # random rankings record no score
      assert recorded is None
    state, iterations = selection.record(state, ids), iterations + 1
  assert sel.done(state)
  if method.schedule in (selection.ONE_SHOT, selection.REPLAY):
    assert iterations == 1  # the whole subset in iteration 0
  else:
    assert iterations > 1
  if method.budgeted:
    assert state.num_distinct == 24
  else:
    assert state.num_distinct == (240 if name == "full" else 30)


def test_training_step_and_schedule_the_loop_reads():
  cfg = _cfg()
  for name in selection.NAMES:
    idu = selection.needs(name, cfg).idu
    assert selection.train_step(name, cfg) == ("lead" if idu else "plain"), name
    assert selection.train_step(name, cfg, "lead") == "lead"
    if idu:
      with pytest.raises(ValueError, match="cannot train"):
        selection.train_step(name, cfg, "plain")
    else:
      assert selection.train_step(name, cfg, "plain") == "plain"
  with pytest.raises(ValueError, match="loop.train_step"):
    selection.train_step("lead", cfg, "fast")
  assert set(selection.names(schedule=selection.ONE_SHOT)) == STATIC_EPOCHS
  assert selection.names(schedule=selection.REPLAY) == ("replay",)


def test_one_vocabulary_of_scores_from_needs_to_the_offline_stage():
  cfg, fields = _cfg(), {f.name for f in dataclasses.fields(offline.Result)}
  for s in selection.OFFLINE_SCORES:
    assert selection.SCORES[s].field in fields
  for name in selection.NAMES:
    need = selection.needs(name, cfg)
    assert set(need.offline_scores) <= set(selection.OFFLINE_SCORES), name
    for features in offline.FEATURES:
      wants = offline.wants_for(need, features)
      assert set(need.offline_scores) <= wants <= ARTIFACTS, (name, wants)
      assert ("clusters" in wants) == need.bandit
  for rescore in selection.RESCORE_SCORES:
    assert selection.needs("iterative_rescore", _cfg(rescore_score=rescore)).rescore == rescore
  assert selection.needs("less", cfg).dev_set and not selection.needs("ifd", cfg).dev_set
  result = offline.Result(ifd_raw_N=None, ifd_N=np.ones(3), idu0_N=np.zeros(3), cluster_N=None,
                          num_clusters=1, ledger=None, computed=(), proxy_ifd_N=np.full(3, 2.0),
                          less_N=np.full(3, 3.0))
  got = {n: selection.offline_scores_N(n, result) for n in ("ppl", "ifd", "superfilter", "less")}
  assert [float(v[0]) for v in got.values()] == [0.0, 1.0, 2.0, 3.0]
  assert selection.offline_scores_N("lead", result) is None


def test_suites_use_the_registrys_one_shot_methods():
  assert suites.ONE_SHOT == ("random", "random_balanced", "ppl", "ifd", "superfilter", "less")
  main = suites.get("main")
  assert {v.method for v in main} == set(selection.NAMES)  # the main suite runs every method
  matched = {v.method for v in main if v.matched_to == "lead"}
  assert matched == set(suites.ONE_SHOT) | set(selection.DIAGNOSTICS)
  for v in main:
    m = selection.get(v.method)
    assert ("diagnostic" in v.label) == m.diagnostic, v.name
    if m.schedule == selection.ONE_SHOT and m.budgeted and not m.diagnostic:
      assert v.method in suites.ONE_SHOT
