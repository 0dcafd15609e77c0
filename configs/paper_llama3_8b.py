"""The paper's setup: LEAD on Llama-3.1-8B with LoRA, on a TPU/GPU mesh.

  python -m experiments.run --config configs/paper_llama3_8b.py --workdir workdir/paper \
      --config.checkpoint.directory=gs://BUCKET/lead/ckpt \
      --config.model.checkpoint=/path/to/Llama-3.1-8B \
      --config.data.tokenizer=/path/to/Llama-3.1-8B --config.data.train_path=/path/to/pool.jsonl \
      --config.eval.data_dir=/path/to/eval    # [--config.method=random|ppl|ifd|odm|full]

The pool is the LEAD pool format (open-instruct messages JSONL: `dataset`,
`id`, `messages`; about 600k samples). LEAD as docs/method.md: warmup LoRA r=32 /
alpha 16 for 4 epochs on 1% of the pool, IFD > 1 -> 0, k-means K=7 on IFD with
task strata, EXP3 gamma 0.1 rewarded by the IDU gain, b = 0.1 with the `update`
gradient term, rho = 0.015, a budget of 15,000 distinct samples, T_max = 20,
reuse cap 4; the final evaluation runs MMLU, GSM8K, TyDiQA and HumanEval
(`eval.data_dir`, layout in configs/base_eval.py).

Hardware: 8 accelerators with >= 16 GiB each (e.g. a TPU v5e-8 or v4-8 VM, or
8 GPUs), FSDP over all of them; on a pod slice, run through
experiments/launch_tpu.sh. The architecture below is Llama-3.1-8B's
config.json, so the config builds, compiles ahead of time and fits memory
without weights (`python -m experiments.aot_memory --config
configs/paper_llama3_8b.py`); a real run loads them from model.checkpoint.
Expected: one 8-row step of 3080 tokens in a few seconds on v5e-8; per-device
memory from the compiled step is in docs/training.md.
"""

from configs import base, base_lead
from lead_jax.model import decoder as model_lib

# Llama-3.1-8B (meta-llama/Llama-3.1-8B config.json), bf16 weights, remat.
LLAMA31_8B = model_lib.ModelConfig(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32,
    num_kv_heads=8, head_dim=128, rope_theta=500000.0, rope_scaling=model_lib.RopeScaling(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192), rms_norm_eps=1e-5, tie_embeddings=False,
    max_position_embeddings=131072, bos_token_id=128000, eos_token_ids=(128001,), dtype="bfloat16",
    param_dtype="bfloat16", remat=True)


def get_config(arg=None):
  """Whole config; `arg` is unused (no presets)."""
  del arg
  config = base_lead.attach(base.get_config())
  base.set_model(config.model, LLAMA31_8B)
  config.lora.rank, config.lora.alpha, config.lora.dropout = 64, 16.0, 0.1
  config.lora.targets = (r"(q|k|v|o|gate|up|down)_proj/kernel$",)
  o = config.optim
  o.lr, o.weight_decay, o.schedule, o.decay_rate, o.decay_every = 2e-5, 0.0, "step_decay", 0.995, 8
  o.warmup_steps, o.clip_norm = 0, 1.0
  t = config.train
  t.batch_size, t.micro_batch = 8, 8  # one row per device on 8 devices
  t.projection_dim, t.projection_targets = 8192, (r".*",)  # every LoRA parameter
  t.log_every = 1
  config.mesh.data, config.mesh.fsdp = 1, -1
  config.checkpoint.async_save = True  # every_steps = 1: a checkpoint per iteration
  config.data.max_length = 3080
  sel = config.select
  sel.num_clusters, sel.sample_rate, sel.budget_samples, sel.t_max, sel.reuse_cap = (7, 0.015,
                                                                                     15000, 20, 4)
  config.bandit.gamma, config.idu.b = 0.1, 0.1
  off = config.offline
  off.warmup_fraction, off.warmup_rank, off.warmup_alpha, off.warmup_epochs = 0.01, 32, 16.0, 4
  off.score_batch_size = 64  # 8 chunks of train.micro_batch = 8 rows, one per device
  config.eval.benchmarks = "mmlu,gsm8k,tydiqa,humaneval"
  return config
