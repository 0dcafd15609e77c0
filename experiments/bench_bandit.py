r"""How fast each bandit finds the best cluster: the pull share of the best arm.

  python -m experiments.bench_bandit                 # K = 7, 20 pulls, 500 seeds
  python -m experiments.bench_bandit --pulls=40 --switch_at=20

A stationary synthetic problem the size of LEAD's default (K = 7 arms, T = 20
iterations): arm k's reward is Gaussian with mean `means[k]` and sd `noise`;
arm 0 is the best. The rewards go through the same normalisation as the
loop's (`lead_jax.bandit.normalise`). With `--switch_at=t`, from pull t on
the best arm is the last one (a drifting problem, where EXP3.S should follow).
Prints one JSON line per algorithm: the best arm's share of the pulls (mean
and sd over seeds), after the switch for the new best arm, and its final
probability. Host only, seconds on a CPU.
"""

from __future__ import annotations

import json

from absl import app
from absl import flags
import numpy as np

from configs import base_lead
from lead_jax import bandit

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """The command line's flags (defined only when run, so that importing this
  module next to other entry points defines no flag twice)."""
  flags.DEFINE_integer("pulls", 20, "Pulls per run (LEAD's T_max: 20).")
  flags.DEFINE_integer("seeds", 500, "Independent runs per algorithm.")
  flags.DEFINE_integer("switch_at", 0, "Pull from which the last arm is best (0 = never).")

# name -> bandit config overrides
ALGOS = {
    "uniform": {"algo": "uniform"},
    "exp3": {"algo": "exp3"},  # eta = gamma / K, the paper's step
    "exp3_eta1": {"algo": "exp3", "eta": 1.0},
    "exp3s_eta1": {"algo": "exp3s", "eta": 1.0, "exp3s_alpha": 0.05},
    "thompson": {"algo": "thompson"},
}
MEANS = (0.6, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3)  # arm 0 best; K = 7 as the default's clusters
NOISE = 0.2


def config(**overrides):
  c = base_lead.get_bandit()
  for key, value in overrides.items():
    c[key] = value
  return c


def simulate(cfg, seed: int, pulls: int, means=MEANS, noise: float = NOISE,
             switch_at: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """`(arms pulled [pulls], final p_C)` of one run; from `switch_at` (> 0) on
  the means are reversed, so the last arm is best."""
  rng = np.random.default_rng([seed, 0xBA])
  state, arms = bandit.init(len(means)), []
  for t in range(pulls):
    now = means[::-1] if switch_at and t >= switch_at else means
    arm, _ = bandit.draw(state, cfg, rng)
    state = bandit.update(state, cfg, arm, float(rng.normal(now[arm], noise)))
    arms.append(arm)
  return np.array(arms), bandit.probabilities(state, cfg)


def best_arm_share(cfg, seeds: int, pulls: int, switch_at: int = 0) -> dict:
  """Mean and sd over seeds of the best arm's pull share (after the switch:
  the new best arm's share of the pulls from `switch_at` on)."""
  best = len(MEANS) - 1 if switch_at else 0
  shares, finals = [], []
  for seed in range(seeds):
    arms, p_C = simulate(cfg, seed, pulls, switch_at=switch_at)
    shares.append(np.mean(arms[switch_at:] == best))
    finals.append(p_C[best])
  return {
      "share_mean": float(np.mean(shares)), "share_sd": float(np.std(shares, ddof=1)),
      "final_p_best": float(np.mean(finals))
  }


def main(argv):
  del argv
  for name, over in ALGOS.items():
    got = best_arm_share(config(**over), FLAGS.seeds, FLAGS.pulls, FLAGS.switch_at)
    print(
        json.dumps({
            "algo": name, "pulls": FLAGS.pulls, "switch_at": FLAGS.switch_at, "seeds": FLAGS.seeds,
            "arms": len(MEANS), **{k: round(v, 4) for k, v in got.items()}
        }), flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
