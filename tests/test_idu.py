"""IDU update rule against hand-computed values."""

import numpy as np
import pytest

from configs import base_lead
from lead_jax import idu


def _cfg(grad_term="update", b=0.1, propagate=False):
  cfg = base_lead.get_idu()
  cfg.grad_term, cfg.b, cfg.propagate_to_cluster = grad_term, b, propagate
  return cfg


def _state(g_last=None, trained=None, g_prev=None, n=6, c=3, k=2):
  s = idu.init(np.arange(1, n + 1, dtype=np.float32), c, k)
  return idu.IduState(idu_N=s.idu_N,
                      grad_last_CxK=s.grad_last_CxK if g_last is None else np.float32(g_last),
                      trained_C=s.trained_C if trained is None else np.array(trained),
                      grad_prev_K=s.grad_prev_K if g_prev is None else np.float32(g_prev))


def _out(index, loss, finite=None, dL=None, g=None):
  index = np.array(index, np.int32)
  return idu.StepOutputs(
      index_B=index, loss_B=np.array(loss, np.float32),
      finite_B=(np.ones(index.shape, bool) if finite is None else np.array(finite)),
      dL_B=None if dL is None else np.array(dL, np.float32),
      g_BxK=None if g is None else np.array(g, np.float32))


def _norm2(v):
  return float(np.dot(v, v))


def test_beta_star_minimises_mix_norm_against_grid():
  rng = np.random.default_rng(0)
  grid = np.linspace(0.0, 1.0, 20001)
  for _ in range(200):
    a, c = rng.normal(size=4), rng.normal(size=4)
    if rng.random() < 0.3:  # near-parallel pairs push beta* to the edges
      c = a * rng.uniform(0.2, 3.0) + 0.05 * rng.normal(size=4)
    d_k, d_p = _norm2(a), _norm2(c)
    cos_phi = a @ c / np.sqrt(d_k * d_p)
    beta = idu.beta_star(d_k, d_p, cos_phi, 1e-8)
    assert 0.0 <= beta <= 1.0
    mix = grid[:, None] * a + (1 - grid[:, None]) * c
    norms = (mix**2).sum(axis=1)
    best = norms.min()
    assert _norm2(beta * a + (1 - beta) * c) <= best + 1e-9
    assert abs(beta - grid[norms.argmin()]) < 1e-3


def test_cluster_delta_is_the_mix_norm():
  rng = np.random.default_rng(1)
  for _ in range(20):
    a, c, beta, lr = rng.normal(size=3), rng.normal(size=3), rng.random(), 0.3
    d_k, d_p = _norm2(a), _norm2(c)
    cos_phi = a @ c / np.sqrt(d_k * d_p)
    np.testing.assert_allclose(
        idu.cluster_delta(d_k, d_p, cos_phi, beta, lr), -lr * _norm2(beta * a + (1 - beta) * c))


@pytest.mark.parametrize(
    "d_k,d_p,beta,dl",
    [
        (4.0, 1.0, 0.0, -1.0),  # G_tk = 2 G_t-1: keep the shorter, G_t-1
        (1.0, 4.0, 1.0, -1.0),  # G_t-1 = 2 G_tk: keep G_tk
        (2.0, 2.0, 0.0, -2.0),  # equal: zero denominator, beta = 0
        (0.0, 0.0, 0.0, 0.0),  # no history at all
    ])
def test_cos_phi_one_cases(d_k, d_p, beta, dl):
  assert idu.beta_star(d_k, d_p, 1.0, 1e-8) == beta
  np.testing.assert_allclose(idu.cluster_delta(d_k, d_p, 1.0, beta, 1.0), dl)


def test_opposite_directions_cancel():
  beta = idu.beta_star(4.0, 1.0, -1.0, 1e-8)
  np.testing.assert_allclose(beta, 1.0 / 3.0)
  np.testing.assert_allclose(idu.cluster_delta(4.0, 1.0, -1.0, beta, 1.0), 0.0, atol=1e-12)


def test_update_mode_hand_computed_and_invalid_rows_skipped():
  out = _out([4, 1, -1, 2, 3], [2.0, 0.5, 0.0, np.nan, 1.0],
             finite=[True, True, False, True, False], dL=[-0.2, 0.1, 0, 0, 0])
  s, info = idu.update(_state(), _cfg("update"), out, cluster=0, lr=1.0)
  np.testing.assert_allclose(s.idu_N, [1, 1.86, 3, 4, 4.68, 6], rtol=1e-6)
  np.testing.assert_array_equal(info.ids_S, [1, 4])
  np.testing.assert_allclose(info.idu_before_S, [2, 5])
  assert info.num_invalid == 2  # the NaN loss and the flagged row, not the pad
  np.testing.assert_allclose(idu.reward("idu_gain", info), ((2 - 1.86) + (5 - 4.68)) / 2, rtol=1e-6)
  np.testing.assert_allclose(idu.reward("loss", info), 1.25)
  assert idu.reward("dev_gain", info, 3.0, 2.5) == 0.5


def test_history_mode_hand_computed():
  g_last = [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
  s0 = _state(g_last=g_last, trained=[True, False, False], g_prev=[0.0, 2.0])
  # d_k = 1, d_p = 4, cos = 0: beta* = 4 / 5; direction = (0.8, 0.4).
  out = _out([0, 5], [1.0, 3.0], g=[[1.0, 1.0], [0.0, -1.0]])
  s, info = idu.update(s0, _cfg("history"), out, cluster=0, lr=0.5)
  np.testing.assert_allclose(info.beta, 0.8)
  np.testing.assert_allclose(info.dL_S, [-0.5 * 1.2, 0.5 * 0.4])
  np.testing.assert_allclose(s.idu_N[[0, 5]], [0.9 * 1 + 0.1 * (1 - 0.6), 0.9 * 6 + 0.1 * 3.2],
                             rtol=1e-6)
  # G_t = mean gradient, now both G_t-1 and cluster 0's G_tk.
  np.testing.assert_allclose(s.grad_prev_K, [0.5, 0.0])
  np.testing.assert_allclose(s.grad_last_CxK[0], [0.5, 0.0])
  # Cluster 1 was never trained: beta = 0, direction = G_t-1.
  _, info1 = idu.update(s0, _cfg("history"), out, cluster=1, lr=0.5)
  assert info1.beta == 0.0
  np.testing.assert_allclose(info1.dL_S, [-0.5 * 2.0, 0.5 * 2.0])


def test_cluster_mode_hand_computed():
  s0 = _state(g_last=[[1.0, 0.0], [0, 0], [0, 0]], trained=[True, False, False], g_prev=[0.0, 2.0])
  out = _out([2, 3], [1.0, 2.0], g=[[1.0, 1.0], [0.0, -1.0]])
  _, info = idu.update(s0, _cfg("cluster"), out, cluster=0, lr=0.5)
  expected = -0.5 * (0.8**2 * 1 + 0.2**2 * 4)  # cos_phi = 0
  np.testing.assert_allclose(info.dL_S, [expected, expected])
  np.testing.assert_allclose(info.mean_dL, expected)


def test_none_mode_smooths_towards_loss_and_b_zero_freezes():
  out = _out([0], [11.0])
  s, _ = idu.update(_state(), _cfg("none"), out, cluster=0, lr=1.0)
  np.testing.assert_allclose(s.idu_N[0], 2.0)
  s, info = idu.update(_state(), _cfg("none", b=0.0), out, cluster=0, lr=1.0)
  np.testing.assert_array_equal(s.idu_N, _state().idu_N)
  assert idu.reward("idu_gain", info) == 0.0


def test_repeated_sample_uses_last_valid_occurrence():
  out = _out([3, 3, 3, 1], [10.0, 20.0, 30.0, 2.0], finite=[1, 1, 0, 1], dL=[0.0, 0.0, 0.0, 0.0])
  s, info = idu.update(_state(), _cfg("update"), out, cluster=0, lr=1.0)
  np.testing.assert_allclose(s.idu_N[3], 0.9 * 4 + 0.1 * 20.0, rtol=1e-6)
  np.testing.assert_array_equal(info.ids_S, [1, 3])
  np.testing.assert_allclose(info.loss_S, [2.0, 20.0])


def test_nonfinite_gradient_excluded_from_table_and_mean():
  out = _out([0, 1], [1.0, 1.0], g=[[2.0, 0.0], [np.inf, 0.0]])
  s, info = idu.update(_state(), _cfg("history"), out, cluster=2, lr=1.0)
  np.testing.assert_array_equal(info.ids_S, [0])
  np.testing.assert_allclose(s.grad_prev_K, [2.0, 0.0])
  assert s.idu_N[1] == 2.0 and bool(s.trained_C[2])


def test_propagate_to_cluster_moves_untrained_members():
  out = _out([1, 2], [1.0, 1.0], dL=[-0.4, -0.2])
  cfg = _cfg("update", propagate=True)
  s, info = idu.update(_state(), cfg, out, cluster=0, lr=1.0, members_M=np.array([0, 1, 2, 5]))
  np.testing.assert_allclose(info.mean_dL, -0.3, rtol=1e-6)
  assert info.num_propagated == 2
  np.testing.assert_allclose(s.idu_N[[0, 5]], [1 - 0.03, 6 - 0.03], rtol=1e-6)
  np.testing.assert_allclose(s.idu_N[[3, 4]], [4, 5])  # not members
  with pytest.raises(ValueError, match="members_M"):
    idu.update(_state(), cfg, out, cluster=0, lr=1.0)


def test_bad_inputs_and_round_trip():
  s = _state()
  with pytest.raises(ValueError, match="outside"):
    idu.update(s, _cfg("none"), _out([6], [1.0]), cluster=0, lr=1.0)
  with pytest.raises(ValueError, match="dL_B"):
    idu.update(s, _cfg("update"), _out([0], [1.0]), cluster=0, lr=1.0)
  with pytest.raises(ValueError, match="g_BxK"):
    idu.update(s, _cfg("cluster"), _out([0], [1.0]), cluster=0, lr=1.0)
  with pytest.raises(ValueError, match="grad_term"):
    idu.update(s, _cfg("hist"), _out([0], [1.0]), cluster=0, lr=1.0)
  with pytest.raises(ValueError, match="finite"):
    idu.init(np.array([1.0, np.nan]), 2, 2)
  with pytest.raises(ValueError, match="dev_gain"):
    idu.reward("dev_gain", idu.update(s, _cfg("none"), _out([0], [1.0]), cluster=0, lr=1.0)[1])
  s2 = idu.from_dict(idu.to_dict(s))
  for name, value in idu.to_dict(s).items():
    np.testing.assert_array_equal(getattr(s2, name), value)
  parts = [_out([0], [1.0], g=[[1.0, 2.0]]), _out([1, -1], [2.0, 0.0], g=[[0, 0], [0, 0]])]
  cat = idu.StepOutputs.concatenate(parts)
  np.testing.assert_array_equal(cat.index_B, [0, 1, -1])
  assert cat.dL_B is None and cat.g_BxK.shape == (3, 2)


def _ref_cfg(reference="warmup", weight=1.0):
  cfg = base_lead.get_idu()
  cfg.reference, cfg.reference_weight = reference, weight
  return cfg


def test_reducible_ranking_scores_by_hand():
  idu_N = np.array([3.0, 2.0, 1.0], np.float32)
  il_N = np.array([2.5, 0.5, 0.0], np.float32)
  assert idu.ranking_scores(idu_N, _ref_cfg("none"), il_N) is idu_N  # the table itself
  np.testing.assert_array_equal(idu.ranking_scores(idu_N, _ref_cfg(), il_N), [0.5, 1.5, 1.0])
  np.testing.assert_array_equal(
      idu.ranking_scores(idu_N, _ref_cfg(weight=0.5), il_N), [1.75, 1.75, 1.0])
  zero = idu.ranking_scores(idu_N, _ref_cfg(weight=0.0), il_N)
  np.testing.assert_array_equal(zero, idu_N)  # lambda = 0: the IDU's values
  assert (np.argsort(-zero, kind="stable") == np.argsort(-idu_N, kind="stable")).all()


def test_reference_config_errors_name_the_field():
  idu.check_config(_ref_cfg("none"))
  idu.check_config(_ref_cfg(weight=0.0))
  with pytest.raises(ValueError, match=r"idu.reference='base'; use one of \('none', 'warmup'\)"):
    idu.check_config(_ref_cfg("base"))
  for bad in (-0.5, float("nan")):
    with pytest.raises(ValueError, match="idu.reference_weight=.*>= 0"):
      idu.check_config(_ref_cfg(weight=bad))
  with pytest.raises(ValueError, match="one reference loss per pool sample"):
    idu.ranking_scores(np.ones(3, np.float32), _ref_cfg(), None)
  with pytest.raises(ValueError, match="NaN"):
    idu.ranking_scores(np.ones(2, np.float32), _ref_cfg(), np.array([1.0, np.nan]))
