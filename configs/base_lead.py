"""LEAD's host-side sub-configs: bandit, IDU table and selection.

Not an experiment on its own: experiment configs (configs/default.py, the
paper config, ...) call these and attach the results as `config.bandit`,
`config.idu` and `config.select`, overriding fields where they need to.
Defaults are the paper-scale values of docs/method.md.

  from configs import base_lead
  config.bandit = base_lead.get_bandit()
  config.idu = base_lead.get_idu()
  config.select = base_lead.get_select()
"""

import ml_collections


def get_bandit() -> ml_collections.ConfigDict:
  """EXP3 / EXP3.S over the clusters (lead_jax.bandit)."""
  c = ml_collections.ConfigDict()
  c.algo = "exp3"  # exp3 | exp3s (tracks a drifting best arm) | uniform (no-bandit ablation)
  c.gamma = 0.1  # exploration rate: every p_k >= gamma / K
  c.reward = "idu_gain"  # idu_gain (mean IDU drop over S_t) | loss (mean train loss of S_t) | dev_gain
  c.exp3s_alpha = 0.05  # EXP3.S share rate alpha; Auer et al. suggest 1 / horizon (1 / T_max)
  c.lock()
  return c


def get_idu() -> ml_collections.ConfigDict:
  """The IDU table and its update rule (lead_jax.idu)."""
  c = ml_collections.ConfigDict()
  c.b = 0.1  # smoothing: IDU <- (1 - b) IDU + b (loss + dL); b = 0 freezes the table
  c.grad_term = "update"  # dL mode: update (in-jit <g, delta_theta>) | history | cluster | none
  c.propagate_to_cluster = False  # also move untrained members of c_t by the cluster's mean dL
  c.beta_eps = 1e-8  # beta* = 0 when |G_tk - G_t-1|^2 < beta_eps * (d_k + d_p) (relative guard)
  c.lock()
  return c


def get_select() -> ml_collections.ConfigDict:
  """Two-stage selection, budget and stopping (lead_jax.selection)."""
  c = ml_collections.ConfigDict()
  c.num_clusters = 7  # K: k-means clusters on IFD = bandit arms
  c.sample_rate = 0.015  # rho: per iteration take floor(n_{c,tau} * rho) per task stratum
  c.min_per_task = 1  # at least this many per non-empty task stratum (0 = the bare floor)
  c.stratify_by_task = True  # False: one stratum per cluster (no-strata ablation)
  c.reuse_cap = 4  # R: a sample is a candidate while its use count < R (<= 255)
  c.budget_fraction = 0.025  # distinct-sample budget as a fraction of N (floored; must give >= 1)
  c.budget_samples = 0  # absolute distinct-sample budget; overrides budget_fraction when > 0
  c.t_max = 20  # at most this many iterations
  c.ppl_highest = True  # ppl baseline takes the highest base-model losses (False: the lowest)
  c.rescore_score = "loss"  # iterative_rescore: loss (1 forward per pool sample per iteration) | ifd (2)
  c.rescore_size = 0  # iterative_rescore: samples per iteration; 0 = LEAD's mean, floor(rho * N / K)
  c.replay_from = ""  # replay: workdir of a finished run whose selected.jsonl is trained as one shuffled set
  c.lock()
  return c


def get() -> ml_collections.ConfigDict:
  """All three sub-configs, as an experiment config nests them."""
  c = ml_collections.ConfigDict()
  c.bandit = get_bandit()  # lead_jax.bandit
  c.idu = get_idu()  # lead_jax.idu
  c.select = get_select()  # lead_jax.selection
  c.lock()
  return c
