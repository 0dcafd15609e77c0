"""The LEAD loop's sub-configs: the offline stage and the loop's own settings.

Not an experiment on its own: experiment configs (configs/default.py, the
paper config, ...) attach them as `config.offline` and `config.loop`. Defaults
are METHOD.md's paper-scale values; the tiny default overrides a few.

  from configs import base_loop
  config.offline = base_loop.get_offline()
  config.loop = base_loop.get_loop()
"""

import ml_collections


def get_offline() -> ml_collections.ConfigDict:
  """Warmup model, IFD, IDU_0 and clustering (lead_jax.offline)."""
  c = ml_collections.ConfigDict()
  c.warmup_fraction = 0.01  # random share of the pool the warmup LoRA trains on (paper: 6k of 600k)
  c.warmup_epochs = 4  # warmup passes over that subset
  c.warmup_rank = 32  # warmup LoRA rank (its targets and dropout are the run's lora.*)
  c.warmup_alpha = 16.0  # warmup LoRA alpha
  c.ifd_clip = True  # IFD > 1 (the prompt does not help) -> 0, as the reference code
  c.cluster_features = "ifd"  # ifd (1-D, METHOD.md) | grad (projected warmup gradients) | hidden
  c.kmeans_n_init = 10  # k-means restarts (scikit-learn n_init; seeded by config.seed)
  c.score_batch_size = 64  # rows per scoring batch; a multiple of train.micro_batch and devices
  c.cache = True  # reuse the artifacts in <workdir>/offline (keyed by fingerprints)
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
  c.lock()
  return c
