"""Sub-configs of the training core and the whole config they make up.

Not an experiment on its own: experiment configs (configs/tiny.py, the paper
config, ...) call `get_config()` or the sub-config functions and override
fields. Library functions take the sub-config they need:

  lead_jax.train.build      model, lora
  lead_jax.train.optim      optim
  lead_jax.train.step      train (+ the built ModelConfig, optim.accum_steps, seed)
  lead_jax.train.sharding   mesh
  lead_jax.train.checkpoint checkpoint
  lead_jax.data       data (configs/base_data.py)

Every default here is the tiny byte-level model on CPU.
"""

import ml_collections

from configs import base_data

LORA_TARGETS = (r"(q|k|v|o|gate|up|down)_proj/kernel$",)

# (regex over state paths, PartitionSpec entries per dimension); first match wins.
# Kernels are [layers, in, out]; adapters a: [layers, in, r], b: [layers, r, out].
# Adam moments share their parameter's path suffix, so they follow the same rule.
SHARDING_RULES = (
    (r"(embed/embedding|lm_head/kernel)$", ("fsdp", None)),
    (r"(q|k|v|gate|up)_proj/kernel$", (None, "fsdp", "tensor")),
    (r"(o|down)_proj/kernel$", (None, "tensor", "fsdp")),
    (r"_proj/a$", (None, "fsdp", None)),
    (r"_proj/b$", (None, None, "fsdp")),
    (r".*", ()),  # norms, biases, counters: replicated
)


def get_model() -> ml_collections.ConfigDict:
  """The base model (lead_jax.train.build)."""
  c = ml_collections.ConfigDict()
  c.checkpoint = ""  # "" random init | HF dir | .gguf file | "pretrain": config.pretrain's base
  c.vocab_size = 261  # byte-level tokenizer: 256 bytes + 5 special tokens
  c.hidden_size = 256  # d_model
  c.intermediate_size = 1024  # SwiGLU hidden size
  c.num_layers = 4  # decoder blocks (scanned)
  c.num_heads = 4  # query heads
  c.num_kv_heads = 4  # key/value heads (grouped-query attention when < num_heads)
  c.head_dim = 0  # 0 = hidden_size // num_heads
  c.rope_theta = 10000.0  # rotary base
  c.rope_scaling_type = ""  # "" (none) | llama3 | linear
  c.rope_scaling_factor = 1.0  # RoPE scaling factor (llama3 / linear)
  c.rope_low_freq_factor = 1.0  # llama3 scaling: low-frequency factor
  c.rope_high_freq_factor = 4.0  # llama3 scaling: high-frequency factor
  c.rope_original_max_positions = 8192  # llama3 scaling: original context length
  c.rms_norm_eps = 1e-6  # RMSNorm epsilon
  c.tie_embeddings = False  # output projection = input embedding
  c.max_position_embeddings = 4096  # longest sequence the model is meant for
  c.dtype = "float32"  # compute dtype: float32 | bfloat16
  c.param_dtype = "float32"  # storage dtype of the frozen base weights
  c.remat = False  # recompute each layer in the backward pass (memory for FLOPs)
  c.lock()
  return c


def set_model(model_cfg: ml_collections.ConfigDict, literal) -> None:
  """Fills the architecture fields of `model_cfg` from a `ModelConfig` literal."""
  for field in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                "num_kv_heads", "head_dim", "rope_theta", "rms_norm_eps", "tie_embeddings",
                "max_position_embeddings", "dtype", "param_dtype", "remat"):
    model_cfg[field] = getattr(literal, field)
  s = literal.rope_scaling
  model_cfg.rope_scaling_type = s.rope_type if s else ""
  if s:
    model_cfg.rope_scaling_factor, model_cfg.rope_low_freq_factor = s.factor, s.low_freq_factor
    model_cfg.rope_high_freq_factor = s.high_freq_factor
    model_cfg.rope_original_max_positions = s.original_max_position_embeddings


def get_lora() -> ml_collections.ConfigDict:
  """LoRA adapters (lead_jax.model.lora); only they are trained."""
  c = ml_collections.ConfigDict()
  c.rank = 8  # r
  c.alpha = 16.0  # scale = alpha / r
  c.dropout = 0.0  # dropout on the adapter input (needs a step key)
  c.targets = LORA_TARGETS  # regexes over base kernel paths; each must match
  c.lock()
  return c


def get_optim() -> ml_collections.ConfigDict:
  """Optimiser and learning-rate schedule (lead_jax.train.optim)."""
  c = ml_collections.ConfigDict()
  c.name = "adamw"  # optax AdamW
  c.lr = 1e-3  # peak learning rate
  c.b1 = 0.9  # Adam beta1
  c.b2 = 0.999  # Adam beta2
  c.eps = 1e-8  # Adam epsilon
  c.weight_decay = 0.0  # decoupled weight decay on the adapters
  c.schedule = "constant"  # constant | linear (warmup then decay to 0) | step_decay
  c.warmup_steps = 0  # linear warmup from 0 (optimiser steps)
  c.total_steps = 1000  # linear: the step where lr reaches 0
  c.decay_rate = 0.995  # step_decay: lr multiplier ...
  c.decay_every = 8  # ... applied every this many optimiser steps
  c.clip_norm = 1.0  # global-norm gradient clipping; 0 = off
  c.accum_steps = 1  # >1: accumulate over calls (optax.MultiSteps); see lead_jax.train.step
  c.lock()
  return c


def get_train() -> ml_collections.ConfigDict:
  """The step (lead_jax.train.step) and the plain fine-tuning run (lead_jax.train.finetune)."""
  c = ml_collections.ConfigDict()
  c.batch_size = 16  # B: rows per step (fixed shape; short batches are padded)
  c.micro_batch = 0  # rows per vmap chunk (bounds per-example memory); 0 = batch_size
  c.dl_method = "auto"  # dL_B when batch_size > micro_batch: stored (keep the per-example
  # gradients) | jvp (a forward-mode pass, memory bounded by one chunk) | auto (stored while
  # B x LoRA-size float32 fits lead_jax.train.step.DL_STORED_MAX_BYTES = 1 GiB, else jvp)
  c.projection_dim = 1024  # K of g_BxK (a multiple of 32); 0 = no projection
  c.projection_targets = (r".*",)  # regexes over LoRA paths to project (e.g. attn/(q|v)_proj/b$)
  c.projection_block_rows = 1024  # rows of the +-1 matrix generated at a time (a 4 MB block
  # at K = 1024 stays in cache on CPU: 16 rows x 172k params projected in 0.077 s vs 0.122 s
  # at 4096; the blocking never changes the matrix)
  c.epochs = 1  # plain fine-tuning run: passes over the pool
  c.max_steps = 0  # plain fine-tuning run: stop after this many steps; 0 = no cap
  c.log_every = 10  # write metrics every this many steps
  c.lock()
  return c


def get_mesh() -> ml_collections.ConfigDict:
  """Device mesh and parameter sharding (lead_jax.train.sharding)."""
  c = ml_collections.ConfigDict()
  c.data = -1  # data-parallel axis size; -1 = all remaining devices
  c.fsdp = 1  # parameter-sharded data-parallel axis size
  c.tensor = 1  # tensor-parallel axis size
  c.rules = SHARDING_RULES  # (regex, per-dimension mesh axes) over state paths
  c.distributed = False  # call jax.distributed.initialize (multi-host)
  c.coordinator_address = ""  # host:port; "" = auto-detect (TPU pods)
  c.num_processes = 1  # with coordinator_address: total processes
  c.process_id = 0  # with coordinator_address: this process
  c.lock()
  return c


def get_checkpoint() -> ml_collections.ConfigDict:
  """Composite checkpoints: device + host state (lead_jax.train.checkpoint)."""
  c = ml_collections.ConfigDict()
  c.directory = ""  # "" = <workdir>/checkpoints; multi-host: a shared path (gs://bucket/run/ckpt)
  c.every_steps = 100  # save every this many steps (the LEAD loop: every iteration)
  c.keep = 3  # keep the newest N checkpoints
  c.async_save = False  # write in a background thread (training continues meanwhile)
  c.resume = True  # restore the newest complete checkpoint in the workdir
  c.lock()
  return c


def get_config() -> ml_collections.ConfigDict:
  """The whole config with the tiny defaults (see configs/tiny.py to run it)."""
  c = ml_collections.ConfigDict()
  c.method = "finetune"  # the job: finetune (plain LoRA on the pool); the LEAD loop adds more
  c.seed = 0  # root of every PRNG key and NumPy Generator of the run
  c.model = get_model()  # lead_jax.train.build
  c.lora = get_lora()  # lead_jax.model.lora via lead_jax.train.build
  c.optim = get_optim()  # lead_jax.train.optim
  c.train = get_train()  # lead_jax.train.step, lead_jax.train.finetune
  c.mesh = get_mesh()  # lead_jax.train.sharding
  c.checkpoint = get_checkpoint()  # lead_jax.train.checkpoint
  c.data = base_data.get()  # lead_jax.data (configs/base_data.py)
  c.lock()
  return c
