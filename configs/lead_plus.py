"""LEAD with the four extensions that together helped most: not the default.

  python -m experiments.run --config configs/lead_plus.py --workdir workdir/lead_plus

configs/default.py (the paper's LEAD) plus, from docs/method.md:
  * idu.reference = warmup: rank by IDU - lambda IL (reducible utility, lambda 1);
  * bandit.algo = thompson: a bandit that moves within 20 iterations;
  * select.clusters_per_iteration = 2: two clusters per iteration;
  * loop.replay_fraction = 0.25: a quarter of each pass replays earlier picks.

Why this combination: the `extensions` suite (docs/experiments.md, 3 seeds,
2026-12-02) measured it best on both lakes. On the default lake it had exact
match 0.173 ± 0.016 against LEAD's 0.098 ± 0.043 (+2.8 se). On the second
lake it had 0.098 ± 0.043 against 0.058 ± 0.017 (+1.5 se). No single change
helped beyond one standard error. It is still level with random on the
default lake (0.179 ± 0.004) and below it on the second (0.190 ± 0.054).
Replay makes it train about 20% more sample-passes than LEAD at the same
distinct budget.

Hardware: as configs/default.py (2 CPU cores, about 1-3 minutes once the
base is cached).
"""

from configs import default


def get_config():
  config = default.get_config()
  with config.unlocked():
    config.idu.reference = "warmup"
    config.bandit.algo = "thompson"
    config.select.clusters_per_iteration = 2
    config.loop.replay_fraction = 0.25
  return config
