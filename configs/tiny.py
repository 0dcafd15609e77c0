"""Tiny CPU run: plain LoRA fine-tuning of the byte-level model on the synthetic lake.

  python -m experiments.run --config configs/tiny.py --workdir workdir/tiny

Hardware: 2 CPU cores, no accelerator. Model: 4 layers, d=256, LoRA r=8 on
every projection (188k trainable parameters). Expected: about 2 minutes in
all (lake generation, tokenisation, 120 steps of 16 rows at ~0.8 s); the
held-out response loss falls from ~6.0 to ~2.6. Rerunning the command resumes
from the newest checkpoint (here: the finished run, so it only re-evaluates).
"""

from configs import base


def get_config(arg=None):
  """Whole config; `arg` is unused (no presets)."""
  del arg
  config = base.get_config()
  config.train.max_steps = 120
  config.train.log_every = 10
  config.checkpoint.every_steps = 50
  config.optim.lr = 2e-3
  return config
