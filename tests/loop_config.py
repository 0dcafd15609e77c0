"""A very small LEAD-loop config for the tests (not an experiment).

  python -m experiments.run --config tests/loop_config.py --workdir /tmp/loop

2 layers, d=64, random init (not the default's pretrained base: the tests
build no base), LoRA r=4, a 200-sample synthetic lake, 3 clusters, 3
iterations; a few tens of seconds on a 2-core CPU, mostly compilation.
"""

from configs import default


def get_config(arg=None):
  """Whole config; `arg` = the method (default lead)."""
  c = default.get_config()
  m = c.model
  m.checkpoint = ""  # random init; lead_jax.train.base_cache has its own tests
  m.hidden_size, m.intermediate_size, m.num_layers, m.num_heads, m.num_kv_heads = 64, 128, 2, 2, 2
  c.lora.rank = 4
  c.train.batch_size, c.train.projection_dim = 8, 64
  c.offline.warmup_fraction, c.offline.warmup_epochs, c.offline.warmup_rank = 0.1, 1, 4
  c.offline.score_batch_size = 32
  s = c.data.synthetic
  s.size, s.test_per_task, s.dev_per_task = 200, 2, 1
  c.data.max_length = 96
  c.data.buckets = (32, 64)
  c.select.num_clusters, c.select.sample_rate, c.select.budget_fraction = 3, 0.05, 0.2
  c.select.t_max = 3
  c.eval.synthetic.max_new_tokens = 8
  c.loop.diag_samples = 16
  c.method = arg or "lead"
  return c
