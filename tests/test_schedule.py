"""The schedules against forgetting, host side: m distinct clusters per
iteration (`bandit.draw_distinct`) and replay of earlier selections
(`lead_jax.loop.schedule`). The loop runs of both are in tests/test_loop.py."""

import types

import numpy as np
import pytest

from configs import base_lead, default
from lead_jax import bandit, idu
from lead_jax.loop import schedule
from lead_jax.train import passes


def _bandit_cfg():
  cfg = base_lead.get_bandit()
  cfg.algo, cfg.gamma = "exp3", 0.1
  return cfg


def _three_arms():
  """p = 0.9 w / sum w + 0.1 / 3 with w = (0.5, 0.3, 0.2)."""
  return bandit.BanditState(
      log_w_C=np.log([0.5, 0.3, 0.2]), rewards_H=np.zeros(0), pulls_C=np.zeros(3, np.int64))


P = [0.48333333333333334, 0.30333333333333334, 0.21333333333333335]


def test_draw_distinct_of_one_is_draw():
  s, cfg = _three_arms(), _bandit_cfg()
  a, b = np.random.default_rng(3), np.random.default_rng(3)
  for _ in range(20):
    arm, p_C = bandit.draw(s, cfg, a)
    arms, p_MxC = bandit.draw_distinct(s, cfg, b, 1)
    assert arms == [arm] and np.array_equal(p_MxC, p_C[None])
  assert a.bit_generator.state == b.bit_generator.state


def test_draw_distinct_renormalises_over_the_arms_not_drawn():
  """The hand-computed 3-arm case: the second draw after arm a has p_b / (1 - p_a)."""
  s, cfg = _three_arms(), _bandit_cfg()
  np.testing.assert_allclose(bandit.probabilities(s, cfg), P)
  seen = set()
  for seed in range(50):
    arms, p_MxC = bandit.draw_distinct(s, cfg, np.random.default_rng(seed), 2)
    assert arms[0] == bandit.draw(s, cfg, np.random.default_rng(seed))[0]  # the first is draw's
    assert len(set(arms)) == 2
    np.testing.assert_allclose(p_MxC[0], P)
    q = np.array(P)
    q[arms[0]] = 0.0
    np.testing.assert_allclose(p_MxC[1], q / q.sum())
    seen.add(arms[0])
    if arms[0] == 0:  # after arm 0: (0, 0.30333 / 0.51667, 0.21333 / 0.51667)
      np.testing.assert_allclose(p_MxC[1], [0.0, 0.5870967741935484, 0.41290322580645167])
  assert 0 in seen
  arms, p_MxC = bandit.draw_distinct(s, cfg, np.random.default_rng(0), 3)
  assert sorted(arms) == [0, 1, 2] and p_MxC[2][arms[2]] == pytest.approx(1.0)


def test_draw_distinct_pair_and_inclusion_frequencies():
  """P(a then b) = p_a p_b / (1 - p_a); inclusion pi_i = sum of the pairs with i."""
  s, cfg, rng = _three_arms(), _bandit_cfg(), np.random.default_rng(1)
  pair = {(0, 1): 0.28376344, (0, 2): 0.19956989, (1, 0): 0.21044657, (1, 2): 0.09288676,
          (2, 0): 0.13107345, (2, 1): 0.08225989}
  for (a, b), v in pair.items():
    assert P[a] * P[b] / (1 - P[a]) == pytest.approx(v, abs=1e-8)
  n, counts = 20000, {}
  for _ in range(n):
    arms = tuple(bandit.draw_distinct(s, cfg, rng, 2)[0])
    counts[arms] = counts.get(arms, 0) + 1
  for k, v in pair.items():  # 4 standard errors
    assert abs(counts.get(k, 0) / n - v) < 4 * np.sqrt(v * (1 - v) / n), k
  inclusion = [0.82485335, 0.66935666, 0.50578999]
  for i, v in enumerate(inclusion):
    assert sum(c for k, c in counts.items() if i in k) / n == pytest.approx(v, abs=0.015)


def test_draw_distinct_rejects_m_outside_one_to_k():
  s, cfg = _three_arms(), _bandit_cfg()
  for m in (0, 4):
    with pytest.raises(ValueError, match="select.clusters_per_iteration"):
      bandit.draw_distinct(s, cfg, np.random.default_rng(0), m)


def _config(m=None, f=None):
  """The two fields as a run config holds them (any value: the check's inputs)."""
  c = default.get_config()
  m = c.select.clusters_per_iteration if m is None else m
  f = c.loop.replay_fraction if f is None else f
  return types.SimpleNamespace(
      select=types.SimpleNamespace(clusters_per_iteration=m),
      loop=types.SimpleNamespace(replay_fraction=f))


def test_check_names_the_field_in_one_line():
  schedule.check(_config(), 7)
  schedule.check(_config(7, 0.5), 7)
  for m in (0, 8, 1.5, True):
    with pytest.raises(ValueError, match=r"^select\.clusters_per_iteration=") as e:
      schedule.check(_config(m=m), 7)
    assert "\n" not in str(e.value)
  for f in (-0.1, 1.0, 2.0):
    with pytest.raises(ValueError, match=r"^loop\.replay_fraction=") as e:
      schedule.check(_config(f=f), 7)
    assert "\n" not in str(e.value)


def test_replay_count_makes_f_of_the_rows():
  assert schedule.replay_count(30, 0.0) == 0
  assert schedule.replay_count(30, 0.25) == 10  # 10 of 40 rows
  assert schedule.replay_count(9, 0.5) == 9
  assert schedule.replay_count(7, 0.1) == 1  # round(0.78)
  for n in (10, 33, 100):
    for f in (0.1, 0.3, 0.6):
      r = schedule.replay_count(n, f)
      assert abs(r / (n + r) - f) <= 1 / (n + r)


def test_replay_ids_draw_earlier_samples_outside_s_t():
  use_N = np.zeros(50, np.uint8)
  use_N[[1, 3, 5, 7, 9, 11, 13, 15, 17, 19]] = [1, 2, 1, 1, 4, 1, 1, 1, 1, 1]
  ids_S = np.array([3, 5, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29], np.int64)  # 3, 5 reused
  earlier = {1, 7, 9, 11, 13, 15, 17, 19}
  rng = np.random.default_rng(0)
  r = schedule.replay_ids(use_N, ids_S, 0.25, rng)  # round(0.25 * 12 / 0.75) = 4
  assert r.size == 4 and len(set(r.tolist())) == 4 and set(r.tolist()) <= earlier
  assert use_N[1] == 1  # the caller's counts are not touched
  r = schedule.replay_ids(use_N, ids_S, 0.6, rng)  # 18 asked, 8 candidates: each twice, 2 more
  assert r.size == 18 and set(r.tolist()) == earlier
  assert sorted(np.bincount(r)[sorted(earlier)].tolist()) == [2] * 6 + [3] * 2
  assert schedule.replay_ids(np.zeros(50, np.uint8), ids_S, 0.5, rng).size == 0  # iteration 0
  state = rng.bit_generator.state
  assert schedule.replay_ids(use_N, ids_S, 0.0, rng).size == 0
  assert rng.bit_generator.state == state  # f = 0 draws nothing


def test_replay_ids_are_seeded():
  use_N = np.ones(100, np.uint8)
  a = schedule.replay_ids(use_N, np.arange(10), 0.5, np.random.default_rng(7))
  b = schedule.replay_ids(use_N, np.arange(10), 0.5, np.random.default_rng(7))
  np.testing.assert_array_equal(a, b)


def test_rows_of_keeps_the_rows_of_the_ids_in_order():
  outs = idu.StepOutputs(
      np.array([4, 9, -1, 2, 9]), np.arange(5.0), np.array([1, 1, 0, 1, 0], bool),
      np.arange(5.0) / 10,
      np.arange(10.0).reshape(5, 2))
  got = schedule.rows_of(outs, np.array([9, 2, -1]))
  np.testing.assert_array_equal(got.index_B, [9, 2, 9])
  np.testing.assert_array_equal(got.loss_B, [1.0, 3.0, 4.0])
  np.testing.assert_array_equal(got.finite_B, [True, True, False])
  np.testing.assert_array_equal(got.g_BxK, [[2, 3], [6, 7], [8, 9]])
  assert schedule.rows_of(outs, np.array([], np.int64)).index_B.size == 0


def test_split_counts_books_replayed_rows_under_their_activity():
  batch = {
      "index_B": np.array([0, 1, 2, 3, -1, -1]), "is_pad_B": np.array([0, 0, 0, 0, 1, 1], bool),
      "attention_mask_BxL": np.array([[1, 1, 0]] * 2 + [[1, 1, 1]] * 2 + [[1, 0, 0]] * 2)
  }
  for jvp in (False, True):
    step = passes.Step(0, batch, None, {}, passes.counts_of(batch, "train", jvp), None)
    got = schedule.split_counts(step, np.array([2, 3]))
    assert got["train"] == {
        "forward_samples": 2, "forward_tokens": 4, "backward_samples": 2, "backward_tokens": 4
    }
    assert got[schedule.REPLAY_ACTIVITY] == {
        "forward_samples": 2, "forward_tokens": 6, "backward_samples": 2, "backward_tokens": 6
    }
    assert ("replay_train_dl_jvp" in got) == jvp == ("train_dl_jvp" in got)
    assert passes.add(got, {}) == passes.add({}, got)
    total = passes.counts_of(batch, "train", jvp)["train"]
    assert {k: got["train"][k] + got["replay_train"][k] for k in total} == total
  step = passes.Step(0, batch, None, {}, passes.counts_of(batch, "train"), None)
  assert set(schedule.split_counts(step, np.array([7]))) == {"train"}


def test_iteration_mean_gradient_weights_the_arms_by_their_rows():
  table = idu.init(np.ones(10), 3, 2)
  g = np.zeros((3, 2), np.float32)
  g[0], g[2] = [1.0, 0.0], [0.0, 4.0]
  table = idu.IduState(table.idu_N, g, np.array([1, 0, 1], bool), table.grad_prev_K)
  info = lambda n: idu.UpdateInfo(np.arange(n), *(np.zeros(n),) * 4, 0.0, 0.0, 0, 0)
  np.testing.assert_allclose(
      schedule.iteration_mean_gradient(table, [info(3), info(1)], [0, 2]), [0.75, 1.0])


def test_bandit_iterations_keeps_one_line_per_iteration():
  from lead_jax import outputs
  one = [{"iteration": 0, "arm": 1}, {"iteration": 1, "arm": 0}]
  assert outputs.bandit_iterations(one) == one  # m = 1 lines carry no `draw`
  two = [dict(iteration=t, arm=a, draw=j) for t in range(2) for j, a in enumerate((2, 0))]
  assert outputs.bandit_iterations(two) == [two[0], two[2]]
