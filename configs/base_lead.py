"""LEAD's sub-configs, one schema file: the host side (bandit, IDU table,
selection), the offline stage, the loop's own settings and superfilter's proxy.

Not an experiment on its own: experiment configs (configs/default.py, the
paper config, ...) call `attach(base.get_config())`, which adds `bandit`,
`idu`, `select`, `offline`, `loop`, `eval` and `proxy` to a config of
configs/base.py, then override fields where they need to. Defaults are the
paper-scale values of docs/method.md; the tiny default overrides a few.

  from configs import base, base_lead
  config = base_lead.attach(base.get_config())
  cfg = base_lead.get_select()       # one sub-config alone (tests, benchmarks)
"""

import ml_collections

from configs import base, base_eval


def get_bandit() -> ml_collections.ConfigDict:
  """EXP3 / EXP3.S over the clusters (lead_jax.bandit)."""
  c = ml_collections.ConfigDict()
  c.algo = "exp3"  # exp3 | exp3s (tracks a drifting best arm) | thompson | uniform (no-bandit ablation)
  c.gamma = 0.1  # exploration rate: every p_k >= gamma / K
  c.reward = "idu_gain"  # idu_gain (mean IDU drop over S_t) | loss (mean train loss of S_t) | dev_gain
  c.exp3s_alpha = 0.05  # EXP3.S share rate alpha; Auer et al. suggest 1 / horizon (1 / T_max)
  c.eta = 0.0  # EXP3 / EXP3.S learning rate: log w_c += eta * xhat; 0 = gamma / K (the paper)
  c.thompson_noise = 0.5  # thompson: sd of a normalised reward; at 0.5 one pull weighs 4x the N(0, 1) prior
  c.lock()
  return c


def get_idu() -> ml_collections.ConfigDict:
  """The IDU table and its update rule (lead_jax.idu)."""
  c = ml_collections.ConfigDict()
  c.b = 0.1  # smoothing: IDU <- (1 - b) IDU + b (loss + dL); b = 0 freezes the table
  c.grad_term = "update"  # dL mode: update (in-jit <g, delta_theta>) | history | cluster | none
  c.propagate_to_cluster = False  # also move untrained members of c_t by the cluster's mean dL
  c.beta_eps = 1e-8  # beta* = 0 when |G_tk - G_t-1|^2 < beta_eps * (d_k + d_p) (relative guard)
  c.reference = "none"  # rank by: none (IDU, the paper) | warmup (IDU - w IL, warmup model's loss)
  c.reference_weight = 1.0  # w >= 0 in IDU - w IL (reference = warmup; w = 0 ranks as none)
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
  c.clusters_per_iteration = 1  # m: distinct clusters drawn and rewarded per iteration (1 = LEAD)
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


def get_offline() -> ml_collections.ConfigDict:
  """Warmup model, IFD, IDU_0 and clustering (lead_jax.offline.stage)."""
  c = ml_collections.ConfigDict()
  c.warmup_fraction = 0.01  # random share of the pool the warmup LoRA trains on (paper: 6k of 600k)
  c.warmup_epochs = 4  # warmup passes over that subset
  c.warmup_rank = 32  # warmup LoRA rank (its targets and dropout are the run's lora.*)
  c.warmup_alpha = 16.0  # warmup LoRA alpha
  c.ifd_clip = True  # IFD > 1 (the prompt does not help) -> 0, as the reference code
  c.cluster_features = "ifd"  # ifd (1-D, docs/method.md) | grad (projected warmup gradients) | hidden
  c.kmeans_n_init = 10  # k-means restarts (scikit-learn n_init; seeded by config.seed)
  c.score_batch_size = 64  # rows per scoring batch; a multiple of train.micro_batch and devices
  c.cache = True  # reuse the artifacts in <workdir>/offline (keyed by fingerprints)
  c.cache_dir = ""  # "" = <workdir>/offline; a shared folder lets runs reuse each other's artifacts
  c.less_aggregate = "task_max"  # less: cosines with dev grads; task_max (LESS: task mean, max) | max | mean
  c.lock()
  return c


def get_loop() -> ml_collections.ConfigDict:
  """Schedule of one-shot selectors, diagnostics and outputs (lead_jax.loop)."""
  c = ml_collections.ConfigDict()
  c.static_epochs = 1.0  # one-shot selectors (random, ppl, full, ...): epochs over their subset
  c.dev_every = 0  # dev loss every this many iterations for monitoring (0 = off; dev_gain: always)
  c.idu_snapshot_every = 1  # write idu/idu_<t>.npz every this many iterations (0 = never)
  c.diag_samples = 256  # final IDU vs true loss check: samples from the pool and from S (each)
  c.plots = True  # write plots/*.png at the end (matplotlib)
  c.train_step = "auto"  # auto: LEAD step for IDU methods, plain otherwise | lead | plain (same update)
  c.replay_fraction = 0.0  # f in [0, 1): share of training rows replayed from earlier S_t (0 = LEAD)
  c.export_dir = ""  # at the end: merged HF checkpoint + PEFT adapters here (docs/export.md); "" = off
  c.lock()
  return c


def get_proxy() -> ml_collections.ConfigDict:
  """The small proxy model of the superfilter baseline (lead_jax.offline.baseline_scores).

  A smaller architecture than the tiny default (about 8x fewer base
  parameters), randomly initialised from the run seed and warmed up on the
  warmup subset before it scores (a random proxy's IFD would be noise).
  """
  c = base.get_model()
  c.vocab_size = 0  # 0 = the run model's vocabulary (the proxy scores the same token ids)
  c.hidden_size = 128  # d_model of the proxy
  c.intermediate_size = 512  # SwiGLU hidden size of the proxy
  c.num_layers = 2  # decoder blocks of the proxy
  c.num_heads = 2  # query heads of the proxy
  c.num_kv_heads = 2  # key/value heads of the proxy
  return c


def attach(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the LEAD loop's sub-configs to `config` (configs/base.py) and sets
  method = lead; checkpoint.every_steps then counts iterations."""
  with config.unlocked():
    config.bandit = get_bandit()  # lead_jax.bandit
    config.idu = get_idu()  # lead_jax.idu
    config.select = get_select()  # lead_jax.selection
    config.offline = get_offline()  # lead_jax.offline.stage
    config.loop = get_loop()  # lead_jax.loop
    config.eval = base_eval.get()  # lead_jax.evals (the final evaluation)
    config.proxy = get_proxy()  # superfilter's proxy model (lead_jax.offline.baseline_scores)
  # lead | odm | full | random | random_balanced | ppl | ifd | superfilter | less
  # | iterative_rescore | oracle | replay (diagnostics) (| finetune)
  config.method = "lead"
  config.checkpoint.every_steps = 1  # the loop saves after every iteration
  return config
