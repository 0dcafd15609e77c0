"""EXP3 / EXP3.S against hand-computed updates and synthetic bandits."""

import math

import numpy as np
import pytest

from configs import base_lead
from experiments import bench_bandit
from lead_jax import bandit


def _cfg(algo="exp3", gamma=0.1, alpha=0.05):
  cfg = base_lead.get_bandit()
  cfg.algo, cfg.gamma, cfg.exp3s_alpha = algo, gamma, alpha
  return cfg


def test_exp3_hand_computed_updates():
  cfg = _cfg()
  s = bandit.init(3)
  np.testing.assert_allclose(bandit.probabilities(s, cfg), [1 / 3] * 3)
  # First reward: the history has zero range, so r~ = 0 and nothing moves.
  s = bandit.update(s, cfg, 1, 5.0)
  np.testing.assert_array_equal(s.log_w_C, [0.0, 0.0, 0.0])
  # H = [5, 7]: r~ = 1, xhat = 1 / (1/3) = 3, log w_0 += 0.1 * 3 / 3.
  s = bandit.update(s, cfg, 0, 7.0)
  np.testing.assert_allclose(s.log_w_C, [0.1, 0.0, 0.0])
  e = math.exp(0.1)
  p_expected = [0.9 * e / (e + 2) + 0.1 / 3, 0.9 / (e + 2) + 0.1 / 3, 0.9 / (e + 2) + 0.1 / 3]
  np.testing.assert_allclose(bandit.probabilities(s, cfg), p_expected)
  # H = [5, 7, 6]: r~ = 2 * (6 - 5) / 2 - 1 = 0; then 5 gives r~ = -1.
  s = bandit.update(s, cfg, 2, 6.0)
  np.testing.assert_allclose(s.log_w_C, [0.1, 0.0, 0.0])
  s = bandit.update(s, cfg, 2, 5.0)
  np.testing.assert_allclose(s.log_w_C, [0.1, 0.0, -0.1 / (3 * p_expected[2])])
  np.testing.assert_array_equal(s.rewards_H, [5.0, 7.0, 6.0, 5.0])
  np.testing.assert_array_equal(s.pulls_C, [1, 1, 2])


def test_exp3s_hand_computed_update():
  cfg = _cfg("exp3s", gamma=0.2, alpha=0.1)
  s = bandit.BanditState(
      log_w_C=np.log([1.0, 2.0, 3.0, 4.0]), rewards_H=np.array([0.0, 2.0]),
      pulls_C=np.zeros(4, np.int64))
  w = np.array([1.0, 2.0, 3.0, 4.0])
  p = 0.8 * w / 10 + 0.2 / 4
  np.testing.assert_allclose(bandit.probabilities(s, cfg), p)
  s2 = bandit.update(s, cfg, 1, 1.5)  # r~ = 2 * 1.5 / 2 - 1 = 0.5
  xhat = np.array([0.0, 0.5 / p[1], 0.0, 0.0])
  expected = w * np.exp(0.2 * xhat / 4) + math.e * 0.1 / 4 * w.sum()
  np.testing.assert_allclose(np.exp(s2.log_w_C), expected, rtol=1e-12)


def test_exp3s_is_stable_for_huge_log_weights():
  cfg = _cfg("exp3s", alpha=0.01)
  s = bandit.BanditState(
      log_w_C=np.array([5000.0, 0.0, -5000.0]), rewards_H=np.array([0.0]),
      pulls_C=np.zeros(3, np.int64))
  s2 = bandit.update(s, cfg, 2, 1.0)
  assert np.all(np.isfinite(s2.log_w_C))
  p = bandit.probabilities(s2, cfg)
  assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-12


@pytest.mark.parametrize("algo", ["exp3", "exp3s"])
def test_gamma_over_k_floor(algo):
  cfg = _cfg(algo, gamma=0.1, alpha=0.0)
  s = bandit.BanditState(
      log_w_C=np.array([800.0, 0.0, 0.0, 0.0, 0.0]), rewards_H=np.zeros(0),
      pulls_C=np.zeros(5, np.int64))
  p = bandit.probabilities(s, cfg)
  np.testing.assert_allclose(p[1:], 0.1 / 5)
  np.testing.assert_allclose(p[0], 0.9 + 0.1 / 5)
  assert abs(p.sum() - 1.0) < 1e-12


def test_zero_range_guard_keeps_weights():
  cfg = _cfg()
  s = bandit.init(4)
  for arm in [0, 1, 2, 3, 0]:
    s = bandit.update(s, cfg, arm, 0.25)
  np.testing.assert_array_equal(s.log_w_C, np.zeros(4))
  assert bandit.normalise(np.array([3.0, 3.0])) == 0.0


def test_uniform_never_learns_but_records():
  cfg = _cfg("uniform")
  s = bandit.update(bandit.update(bandit.init(2), cfg, 0, 1.0), cfg, 0, 2.0)
  np.testing.assert_array_equal(bandit.probabilities(s, cfg), [0.5, 0.5])
  np.testing.assert_array_equal(s.rewards_H, [1.0, 2.0])


def test_bad_inputs_raise_clear_errors():
  cfg = _cfg()
  s = bandit.init(3)
  with pytest.raises(ValueError, match="out of range"):
    bandit.update(s, cfg, 3, 1.0)
  with pytest.raises(ValueError, match="finite"):
    bandit.update(s, cfg, 0, float("nan"))
  with pytest.raises(ValueError, match="bandit.algo"):
    bandit.probabilities(s, _cfg("exp4"))
  with pytest.raises(ValueError, match="read-only"):
    s.log_w_C[0] = 1.0


def test_dict_round_trip_and_draw_determinism():
  cfg = _cfg("exp3s")
  s = bandit.init(5)
  rng = np.random.default_rng(0)
  for _ in range(20):
    arm, p = bandit.draw(s, cfg, rng)
    s = bandit.update(s, cfg, arm, float(rng.normal()))
  d = bandit.to_dict(s)
  assert all(isinstance(v, np.ndarray) for v in d.values())
  s2 = bandit.from_dict(d)
  for k in d:
    np.testing.assert_array_equal(getattr(s2, k), getattr(s, k))
  arms1 = [bandit.draw(s, cfg, np.random.default_rng(7))[0] for _ in range(3)]
  arms2 = [bandit.draw(s2, cfg, np.random.default_rng(7))[0] for _ in range(3)]
  assert arms1 == arms2
  with pytest.raises(ValueError, match="expected keys"):
    bandit.from_dict({"log_w_C": d["log_w_C"]})


def _simulate(cfg, means_fn, steps, seed):
  """Bernoulli-reward bandit; returns the probabilities before each draw."""
  rng = np.random.default_rng(seed)
  s = bandit.init(len(means_fn(0)))
  p_TxC = []
  for t in range(steps):
    arm, p = bandit.draw(s, cfg, rng)
    p_TxC.append(p)
    s = bandit.update(s, cfg, arm, float(rng.random() < means_fn(t)[arm]))
  return np.array(p_TxC)


@pytest.mark.parametrize("algo", ["exp3", "exp3s"])
def test_stationary_best_arm_probability_rises(algo):
  cfg = _cfg(algo, alpha=1e-3)
  means = lambda t: [0.2, 0.4, 0.5, 0.8]
  p = np.mean([_simulate(cfg, means, 400, seed) for seed in range(3)], axis=0)
  assert p[-1, 3] > 0.6
  assert p[-1].argmax() == 3
  assert p[300:, 3].mean() > p[:50, 3].mean() + 0.3


def test_exp3s_follows_switch_of_best_arm_faster_than_exp3():
  means = lambda t: [0.9, 0.5, 0.1] if t < 600 else [0.1, 0.5, 0.9]
  runs = {
      algo:
          np.mean([_simulate(_cfg(algo, alpha=1 / 1200), means, 900, s) for s in range(3)], axis=0)
      for algo in ["exp3", "exp3s"]
  }
  for p in runs.values():  # both learned the first best arm
    assert p[590, 0] > 0.8
  assert runs["exp3s"][-1, 2] > 0.7  # followed the switch within 300 steps
  assert runs["exp3"][-1, 2] < 0.2  # EXP3 is still stuck on the old arm


def _with(**over):
  c = base_lead.get_bandit()
  for k, v in over.items():
    c[k] = v
  return c


@pytest.mark.parametrize("eta, step", [(0.5, 1.5), (0.0, 0.1)])
def test_exp3_eta_hand_computed(eta, step):
  """History [1] then reward 3 on arm 1: r~ = 1; p = 1/3 (uniform weights),
  xhat = 3; log w_1 += eta * 3 (eta = 0: gamma / K * 3 = 0.1)."""
  s = bandit.BanditState(
      log_w_C=np.zeros(3), rewards_H=np.array([1.0]), pulls_C=np.zeros(3, np.int64))
  got = bandit.update(s, _with(eta=eta), 1, 3.0)
  np.testing.assert_allclose(got.log_w_C, [0.0, step, 0.0])


def test_thompson_posterior_hand_computed():
  """Arm 0 gets rewards 1 (normalised 0: one value) then 3 (normalised 1):
  n = 2, S = 1; s = 0.5: P = 1 + 2 / 0.25 = 9, m = (1 / 0.25) / 9 = 4/9, sd = 1/3."""
  cfg = _with(algo="thompson", thompson_noise=0.5)
  s = bandit.update(bandit.update(bandit.init(3), cfg, 0, 1.0), cfg, 0, 3.0)
  np.testing.assert_allclose(s.reward_sum_C, [1.0, 0.0, 0.0])
  m_C, sd_C = bandit.posterior(s, cfg)
  np.testing.assert_allclose(m_C, [4 / 9, 0.0, 0.0])
  np.testing.assert_allclose(sd_C, [1 / 3, 1.0, 1.0])
  np.testing.assert_array_equal(s.log_w_C, np.zeros(3))  # thompson keeps no weights
  p_C = bandit.probabilities(s, cfg)
  assert p_C.sum() == pytest.approx(1.0) and p_C[0] > p_C[1] + 0.1  # m = 4/9 vs two N(0, 1)
  assert abs(p_C[1] - p_C[2]) < 0.05  # the same posterior, up to the Monte Carlo error
  np.testing.assert_array_equal(p_C, bandit.probabilities(s, cfg))  # seeded by the state
  a = [bandit.draw(s, cfg, np.random.default_rng(3))[0] for _ in range(2)]
  assert a[0] == a[1]  # the caller's Generator decides the draw


def test_thompson_round_trip_and_an_older_checkpoint():
  cfg = _with(algo="thompson")
  s = bandit.update(bandit.update(bandit.init(4), cfg, 2, 0.5), cfg, 1, 2.0)
  back = bandit.from_dict(bandit.to_dict(s))
  np.testing.assert_array_equal(back.reward_sum_C, s.reward_sum_C)
  old = {k: v for k, v in bandit.to_dict(s).items() if k != "reward_sum_C"}
  np.testing.assert_array_equal(bandit.from_dict(old).reward_sum_C, np.zeros(4))


@pytest.mark.parametrize("field, value", [("eta", -1.0), ("thompson_noise", 0.0)])
def test_bad_eta_or_noise(field, value):
  cfg = _with(algo="thompson", **{field: value})
  with pytest.raises(ValueError, match=f"bandit.{field}"):
    bandit.probabilities(bandit.init(2), cfg)


def test_the_new_bandits_find_the_best_arm_within_20_pulls():
  """K = 7, 20 pulls, 200 seeds (experiments/bench_bandit.py's problem):
  uniform pulls the best arm 1/7 of the time; measured 0.31 (EXP3, eta = 1)
  and 0.37 (Thompson) against 0.15 (uniform and the paper's eta = gamma / K)."""
  for name in ("exp3_eta1", "thompson"):
    share = bench_bandit.best_arm_share(bench_bandit.config(**bench_bandit.ALGOS[name]), 200, 20)
    assert share["share_mean"] > 1 / 7 + 0.08, (name, share)


def test_exp3s_follows_a_switch_of_the_best_arm():
  """40 pulls, the best arm changes at pull 20: the new best arm's share of
  the last 20 pulls, measured 0.33 (EXP3.S) against 0.18 (EXP3), same eta."""
  got = {
      name:
          bench_bandit.best_arm_share(
              bench_bandit.config(**bench_bandit.ALGOS[name]), 200, 40, switch_at=20)["share_mean"]
      for name in ("exp3_eta1", "exp3s_eta1")
  }
  assert got["exp3s_eta1"] > got["exp3_eta1"] + 0.08, got
