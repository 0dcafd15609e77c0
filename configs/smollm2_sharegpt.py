"""A small real run: LEAD on SmolLM2-135M-Instruct with a few hundred ShareGPT samples.

  python -m experiments.fetch_assets --cache_dir assets --only smollm2,sharegpt
  head -n 300 assets/sharegpt/sharegpt_first_turn.jsonl > assets/sharegpt/pool_300.jsonl
  sed -n 301,340p assets/sharegpt/sharegpt_first_turn.jsonl > assets/sharegpt/test_40.jsonl
  python -m experiments.run --config configs/smollm2_sharegpt.py --workdir workdir/smollm2
  # the same budget, random: add --config.method=random --config.loop.static_epochs=E

The model and tokenizer are the offline SmolLM2-135M-Instruct converted by
`experiments.fetch_assets` (its own chat template), the pool the first 300
first-turn ShareGPT conversations (one source task, so one stratum per
cluster), cut to 384 tokens; the held-out set 40 later ones (loss and exact
match of the reply; exact match is near 0 on open-ended chat, the loss is the
signal). Paths are relative to the repository root; point them elsewhere with
--config.model.checkpoint / data.tokenizer / data.train_path / data.test_path.

Hardware: 2 CPU cores. Expected: about 23 minutes for LEAD (2026-12-02, 2
seeds, the machine otherwise idle: 1,419 s and 1,355 s; offline stage 12 min;
6 iterations, 8-14 LEAD steps, 2.5-4 min; final evaluation 7-8 min, most of
it generating for the longest held-out prompts; 17.5 min on 2026-11-29).
Random at the same budget 9-11 minutes (training and evaluation only).
Held-out loss 1.673 after LEAD (both seeds) against 1.649 ± 0.019 for random;
IDU_0 already ranks the true current loss well on this pretrained model
(Spearman 0.90 and 0.97; the updated IDU table 0.91 and 0.97).
"""

from configs import base, base_lead


def get_config(arg=None):
  """Whole config; `arg` is unused (no presets)."""
  del arg
  config = base_lead.attach(base.get_config())
  config.model.checkpoint = "assets/smollm2"  # converted by experiments.fetch_assets
  config.data.tokenizer = "assets/smollm2"
  config.data.train_path = "assets/sharegpt/pool_300.jsonl"
  config.data.test_path = "assets/sharegpt/test_40.jsonl"
  config.data.max_length = 384
  config.data.buckets = (128, 256)
  config.lora.rank, config.lora.alpha = 8, 16.0
  config.optim.lr = 2e-4
  t = config.train
  t.batch_size, t.micro_batch, t.projection_dim = 8, 4, 512
  s = config.select
  s.num_clusters, s.sample_rate, s.budget_fraction, s.t_max = 3, 0.1, 0.2, 6
  o = config.offline
  o.warmup_fraction, o.warmup_epochs, o.warmup_rank = 0.1, 2, 16
  o.score_batch_size = 16
  config.eval.synthetic.max_new_tokens = 32
  config.eval.synthetic.batch_size = 8
  config.loop.diag_samples = 32
  return config
