"""The main job's config: LEAD on the synthetic lake with the tiny byte-level model.

  python -m experiments.run --config configs/default.py --workdir workdir/lead
  python -m experiments.run --config configs/default.py --workdir workdir/random \
      --config.method=random
  python -m experiments.main --workdir workdir/default     # both + the table (make run)

Hardware: 2 CPU cores, no accelerator. Expected: about 4 minutes for the LEAD
run (lake, offline stage, iterations, final evaluation) and 2 for random;
`experiments.main` (both plus compilation) well under 10 minutes.
Any messages-JSONL pool works with --config.data.train_path / test_path.
"""

import ml_collections

from configs import base, base_eval, base_lead, base_loop


def get_config(arg=None):
  """Whole config; `arg` is unused (no presets)."""
  del arg
  config = base.get_config()
  with config.unlocked():
    config.bandit = base_lead.get_bandit()  # lead_jax.bandit
    config.idu = base_lead.get_idu()  # lead_jax.idu
    config.select = base_lead.get_select()  # lead_jax.selection
    config.offline = base_loop.get_offline()  # lead_jax.offline
    config.loop = base_loop.get_loop()  # lead_jax.loop
    config.eval = base_eval.get()  # lead_jax.evals (final evaluation)
  config.method = "lead"  # lead | odm | full | random | random_balanced | ppl | ifd
  config.checkpoint.every_steps = 1  # the loop counts iterations: save after each one
  return config
