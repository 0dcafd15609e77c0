"""The LEAD loop's sub-configs: the offline stage and the loop's own settings.

Not an experiment on its own: experiment configs (configs/default.py, the
paper config, ...) attach them as `config.offline` and `config.loop`. Defaults
are the paper-scale values of docs/method.md; the tiny default overrides a few.

  from configs import base_loop
  config.offline = base_loop.get_offline()
  config.loop = base_loop.get_loop()

`attach(config)` adds everything the loop reads to a config of configs/base.py:
bandit, idu, select (configs/base_lead.py), offline, loop, eval and proxy.
"""

import ml_collections

from configs import base, base_eval, base_lead


def get_offline() -> ml_collections.ConfigDict:
  """Warmup model, IFD, IDU_0 and clustering (lead_jax.offline)."""
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
  c.lock()
  return c


def get_proxy() -> ml_collections.ConfigDict:
  """The small proxy model of the superfilter baseline (lead_jax.baseline_scores).

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
    config.bandit = base_lead.get_bandit()  # lead_jax.bandit
    config.idu = base_lead.get_idu()  # lead_jax.idu
    config.select = base_lead.get_select()  # lead_jax.selection
    config.offline = get_offline()  # lead_jax.offline
    config.loop = get_loop()  # lead_jax.loop
    config.eval = base_eval.get()  # lead_jax.evals (the final evaluation)
    config.proxy = get_proxy()  # superfilter's proxy model (lead_jax.baseline_scores)
  # lead | odm | full | random | random_balanced | ppl | ifd | superfilter | less
  # | iterative_rescore | oracle | replay (diagnostics) (| finetune)
  config.method = "lead"
  config.checkpoint.every_steps = 1  # the loop saves after every iteration
  return config
