"""EXP3 and EXP3.S over the clusters, on the host in NumPy.

Weights are kept as log-weights (float64) so that long runs with large
importance-weighted rewards never overflow; probabilities are computed with the
max subtracted first:

    p_k = (1 - gamma) * w_k / sum_j w_j + gamma / K

Rewards are normalised against the history of all rewards seen so far
(including the new one): r~ = 2 (r - min H) / (max H - min H) - 1, and r~ = 0
while max H = min H. The importance-weighted estimate xhat = r~ / p_c uses the
probabilities the arm was drawn with, i.e. those of the state passed to
`update` (the same state `draw` saw).

  exp3:    log w_c += eta * xhat                           (chosen arm only)
  exp3s:   w_i <- w_i exp(eta xhat_i) + (e alpha / K) sum_j w_j
           (Auer, Cesa-Bianchi, Freund, Schapire 2002, Exp3.S; xhat_i = 0 for
           arms not drawn; the share term uses the weights before the update)
           eta is `bandit.eta`; eta = 0 (the default) means gamma / K, the
           paper's step, which moves a log-weight by at most about 1/p_c x
           gamma / K per pull.
  thompson: Thompson sampling on the normalised rewards: arm k's mean reward
           has the Gaussian posterior N(m_k, 1 / P_k) from the prior N(0, 1)
           and noise sd s = `bandit.thompson_noise`:
             P_k = 1 + n_k / s^2,   m_k = (S_k / s^2) / P_k
           with n_k the arm's pulls and S_k the sum of its normalised rewards
           (each normalised when it arrived). A draw samples one mean per arm
           with the caller's Generator and takes the largest. The logged p_C is
           P(arm is the largest), estimated from 4096 posterior samples of a
           Generator seeded by the state (pulls and rewards seen), so it does
           not consume the caller's stream. gamma is not used.
  uniform: p_k = 1 / K, weights never change (the no-bandit ablation); the
           reward history is still recorded.

All functions are pure; the state is a frozen dataclass whose arrays are
read-only, and `to_dict` / `from_dict` convert it for checkpoints.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ALGOS = ("exp3", "exp3s", "thompson", "uniform")
MC_SAMPLES = 4096  # posterior samples behind thompson's logged probabilities


@dataclasses.dataclass(frozen=True)
class BanditState:
  log_w_C: np.ndarray  # float64 log-weights, one per arm
  rewards_H: np.ndarray  # float64 raw rewards received so far, in order
  pulls_C: np.ndarray  # int64 number of updates per arm (diagnostics; thompson's n_k)
  reward_sum_C: np.ndarray = None  # float64 sum of each arm's normalised rewards (thompson's S_k)

  def __post_init__(self):
    if self.reward_sum_C is None:  # a state of the EXP3 family built by hand
      object.__setattr__(self, "reward_sum_C", np.zeros(len(self.log_w_C), np.float64))
    for field in dataclasses.fields(self):
      getattr(self, field.name).setflags(write=False)

  @property
  def num_arms(self) -> int:
    return int(self.log_w_C.shape[0])


def init(num_arms: int) -> BanditState:
  if num_arms < 1:
    raise ValueError(f"bandit.init: num_arms must be >= 1, got {num_arms}.")
  return BanditState(
      log_w_C=np.zeros(num_arms, np.float64), rewards_H=np.zeros(0, np.float64),
      pulls_C=np.zeros(num_arms, np.int64), reward_sum_C=np.zeros(num_arms, np.float64))


def _eta(cfg, k: int) -> float:
  eta = float(getattr(cfg, "eta", 0.0))
  return eta if eta > 0 else cfg.gamma / k


def check_config(cfg) -> None:
  """One-line ValueErrors for the bandit fields (also run before a loop starts)."""
  if cfg.algo not in ALGOS:
    raise ValueError(f"bandit.algo must be one of {ALGOS}, got {cfg.algo!r}.")
  if not 0.0 < cfg.gamma <= 1.0:
    raise ValueError(f"bandit.gamma must be in (0, 1], got {cfg.gamma}.")
  if cfg.algo == "exp3s" and not 0.0 <= cfg.exp3s_alpha < 1.0:
    raise ValueError(f"bandit.exp3s_alpha must be in [0, 1), got {cfg.exp3s_alpha}.")
  if not float(getattr(cfg, "eta", 0.0)) >= 0.0:
    raise ValueError(f"bandit.eta must be >= 0 (0 = gamma / K), got {cfg.eta}.")
  if not float(getattr(cfg, "thompson_noise", 0.5)) > 0.0:
    raise ValueError(f"bandit.thompson_noise must be > 0, got {cfg.thompson_noise}.")


def posterior(state: BanditState, cfg) -> tuple[np.ndarray, np.ndarray]:
  """thompson's `(m_C, sd_C)`: posterior mean and sd of each arm's mean reward."""
  s2 = float(getattr(cfg, "thompson_noise", 0.5))**2
  precision_C = 1.0 + state.pulls_C / s2
  return (state.reward_sum_C / s2) / precision_C, 1.0 / np.sqrt(precision_C)


def probabilities(state: BanditState, cfg) -> np.ndarray:
  """p_C, summing to 1, each at least gamma / K (1 / K for `uniform`)."""
  check_config(cfg)
  k = state.num_arms
  if cfg.algo == "uniform":
    return np.full(k, 1.0 / k)
  if cfg.algo == "thompson":
    m_C, sd_C = posterior(state, cfg)
    rng = np.random.default_rng([int(state.pulls_C.sum()), len(state.rewards_H), 0x7505])
    best = np.argmax(m_C + sd_C * rng.standard_normal((MC_SAMPLES, k)), axis=1)
    return np.bincount(best, minlength=k) / MC_SAMPLES
  w = np.exp(state.log_w_C - state.log_w_C.max())
  return (1.0 - cfg.gamma) * w / w.sum() + cfg.gamma / k


def draw(state: BanditState, cfg, rng: np.random.Generator) -> tuple[int, np.ndarray]:
  """Draws an arm; returns (arm, p_C), the probabilities it was drawn with."""
  p_C = probabilities(state, cfg)
  if cfg.algo == "thompson":
    m_C, sd_C = posterior(state, cfg)
    return int(np.argmax(m_C + sd_C * rng.standard_normal(state.num_arms))), p_C
  arm = int(rng.choice(state.num_arms, p=p_C))
  return arm, p_C


def normalise(rewards_H: np.ndarray) -> float:
  """Min-max normalisation of the last reward against the whole history."""
  lo, hi = rewards_H.min(), rewards_H.max()
  if hi == lo:
    return 0.0
  return float(2.0 * (rewards_H[-1] - lo) / (hi - lo) - 1.0)


def update(state: BanditState, cfg, arm: int, reward: float) -> BanditState:
  """The state after arm `arm` (drawn from `state`) received `reward`."""
  if not 0 <= arm < state.num_arms:
    raise ValueError(f"bandit.update: arm {arm} out of range [0, {state.num_arms}).")
  if not math.isfinite(reward):
    raise ValueError(f"bandit.update: reward for arm {arm} is {reward}; rewards must be "
                     "finite (check the IDU update or the dev loss that produced it).")
  weighted = cfg.algo in ("exp3", "exp3s")  # importance weights need the draw's p_C
  p_C = probabilities(state, cfg) if weighted else None
  rewards_H = np.append(state.rewards_H, float(reward))
  pulls_C = state.pulls_C.copy()
  pulls_C[arm] += 1
  k, r = state.num_arms, normalise(rewards_H)
  reward_sum_C = state.reward_sum_C.copy()
  reward_sum_C[arm] += r
  xhat_C = np.zeros(k)
  xhat_C[arm] = r / p_C[arm] if weighted else 0.0
  log_w_C = state.log_w_C.copy()
  if cfg.algo == "exp3":
    log_w_C[arm] += _eta(cfg, k) * xhat_C[arm]
  elif cfg.algo == "exp3s":
    log_w_C = _exp3s_log_weights(state.log_w_C, xhat_C, _eta(cfg, k), cfg.exp3s_alpha)
  return BanditState(log_w_C=log_w_C, rewards_H=rewards_H, pulls_C=pulls_C,
                     reward_sum_C=reward_sum_C)


def _exp3s_log_weights(log_w_C, xhat_C, eta, alpha) -> np.ndarray:
  k = log_w_C.shape[0]
  grown_C = log_w_C + eta * xhat_C
  if alpha == 0.0:
    return grown_C
  m = log_w_C.max()
  log_total = m + np.log(np.exp(log_w_C - m).sum())
  # log of the share term (e alpha / K) sum_j w_j
  log_share = 1.0 + math.log(alpha / k) + log_total
  return np.logaddexp(grown_C, log_share)


def to_dict(state: BanditState) -> dict[str, np.ndarray]:
  return {f.name: np.array(getattr(state, f.name)) for f in dataclasses.fields(state)}


def from_dict(d) -> BanditState:
  """The state of `to_dict` (also of a checkpoint written before thompson's
  reward sums existed: they start at zero)."""
  names = {f.name for f in dataclasses.fields(BanditState)}
  if not names - {"reward_sum_C"} <= set(d) <= names:
    raise ValueError(f"bandit.from_dict: expected keys {sorted(names)}, got "
                     f"{sorted(d)}; the checkpoint is not a bandit state.")
  pulls_C = np.array(d["pulls_C"], np.int64)
  return BanditState(
      log_w_C=np.array(d["log_w_C"], np.float64), rewards_H=np.array(d["rewards_H"],
                                                                     np.float64), pulls_C=pulls_C,
      reward_sum_C=np.array(d.get("reward_sum_C", np.zeros(len(pulls_C))), np.float64))


def draw_distinct(state: BanditState, cfg, rng: np.random.Generator,
                  m: int) -> tuple[list[int], np.ndarray]:
  """Draws m distinct arms, one after another without replacement; returns
  (arms, p_MxC): row j is the distribution arm j was drawn from, p_C (the
  state's `probabilities`) renormalised over the arms not drawn before it.

  The first draw is `draw` itself (m = 1 is `draw`, bit for bit); arm a
  drawn after the set D has probability p_a / (1 - sum_{d in D} p_d) (for
  thompson, p_C are its logged probabilities of being the best arm).
  For select.clusters_per_iteration; the loop then calls `update` once per
  drawn arm, in draw order (docs/method.md, "Schedules that do not forget").
  """
  if not 1 <= m <= state.num_arms:
    raise ValueError(f"select.clusters_per_iteration={m} must be in [1, {state.num_arms}] "
                     f"(the bandit's arms).")
  arm, p_C = draw(state, cfg, rng)
  arms, rows = [arm], [p_C]
  for _ in range(m - 1):
    q_C = p_C.copy()
    q_C[arms] = 0.0
    q_C /= q_C.sum()
    arms.append(int(rng.choice(state.num_arms, p=q_C)))
    rows.append(q_C)
  return arms, np.stack(rows)
