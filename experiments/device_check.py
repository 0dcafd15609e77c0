r"""The accelerator check, prepared: one JSON line per check, under 8 minutes on one GPU.

On the device machine (its own python3, JAX and CUDA; the wheels travel in .whl/,
which git ignores, so the call names it: carry=[".whl"], timeout_s about 540):
  make device-check                      # installs .whl/*.whl into /tmp/site, then runs this
  make device-check ARGS="--checks=mfu,score --lead_base=random"
or, without make:
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:. python3 -m experiments.device_check
Here, once, to fetch the wheels (Python 3.12, x86-64; all pure Python but array-record):
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl ml-collections==1.1.0 gguf==0.19.0 \
      tensorboardX==2.6.5 tensorflow-datasets==4.9.10 array-record==0.8.6
On CPU, end to end at tiny sizes (2.5-3.3 minutes on the shared 2-core CPU under
load, almost all of it compilation; the LEAD run is 75-100 s of that):
  python -m experiments.device_check --smoke
Expected on an H200 (an estimate; not yet run on one): bench_step about 1 min,
mfu and score 1-2 min (compiling the 30-layer step), lead 2-4 min with the base
build; --lead_base=random saves the build when time is short.

Checks (`--checks`, all by default), each printed as one JSON line `{"check": ...}`;
--reps (7, the minimum kept), --batch (16) and --length (128) are bench_step's flags:
  bench_step  experiments/bench_step's functions on the device: the base config's
              tiny decoder, B=--batch rows of --length tokens; lead_over_plain (LEAD
              step / plain step) and loop_over_vmap (a Python loop of B single-row
              jitted gradients / one vmap call; goal >= 8)
  mfu         the plain LoRA step in bfloat16 on a SmolLM2-135M-sized config
              (random init: 30 layers, d=576, 9 heads, 3 KV heads, d_ff=1536,
              vocab 49152, tied embeddings), --mfu_batch x --mfu_length tokens.
              FLOPs from the config, per token, with N = weights used in matmuls
              (every layer kernel + the V x d output projection; the embedding
              lookup is no matmul) and A = 12 * layers * heads * head_dim * L
              (attention scores and weighted values, forward + backward, the whole
              L x L as computed):
                model_flops (the usual MFU count) = 6 N + A
                lora_flops  (what a LoRA step executes: no base weight gradients)
                            = 4 N + A + 6 P_lora
              mfu = flops / seconds / (--peak_tflops, default 989: H200 bf16 dense)
  score       score_step (forward + per-example response loss) on the same config
              and batch: tokens/s, and mfu of its 2 N + A / 3 FLOPs per token
  lead        one short LEAD run of configs/default.py (the synthetic lake) with
              data.synthetic.size=--lead_lake and select.t_max=--lead_t_max.
              --lead_base=pretrain (default) builds the pretrained tiny base first
              (800 steps of 16 x 128; the corpus is made on the host), cached in
              $LEAD_JAX_CACHE; --lead_base=random sets model.checkpoint="" (no base
              build; the accuracy is then meaningless, the timings are not).
              Prints exact_match, samples, steps and the run's wall seconds.

Versions. The device image has jax 0.11.2 (CUDA), and its own flax, optax,
orbax, transformers 5.17, torch 2.11, numpy 2.5 and tokenizers 0.23.2, newer
(or, for transformers and tokenizers, older) than requirements.txt pins (jax
0.10.2, transformers 5.24.0, numpy 2.4.6, tokenizers 0.23.3, torch 2.13.0); this
script runs on the image's versions and installs none of our pins there: what
it reports is measured with them. Only the packages the image lacks travel:
ml-collections, gguf, tensorboardX (the metrics writer of the LEAD run),
array-record and tensorflow-datasets (not imported by these checks; importing
tensorflow_datasets there would also need dm-tree, immutabledict, promise,
simple-parsing, tensorflow-metadata, termcolor and toml, not carried).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import jax
import numpy as np
from absl import app, flags, logging

from configs import base as base_config
from experiments import bench_step
from lead_jax.train import build
from lead_jax.model import decoder as model_lib
from lead_jax.train import step as train
from lead_jax.model import lora as lora_lib

FLAGS = flags.FLAGS
CHECKS = ("bench_step", "mfu", "score", "lead")
_CHECKS = flags.DEFINE_list("checks", list(CHECKS), f"subset of {CHECKS}")
_SMOKE = flags.DEFINE_bool("smoke", False, "tiny sizes everywhere (CPU: runs end to end)")
_MFU_BATCH = flags.DEFINE_integer("mfu_batch", 64, "rows of the mfu and score checks")
_MFU_LENGTH = flags.DEFINE_integer("mfu_length", 512, "tokens per row of the mfu and score checks")
_PEAK = flags.DEFINE_float("peak_tflops", 989.0, "peak bf16 dense TFLOP/s of the device")
_LEAD_BASE = flags.DEFINE_enum("lead_base", "pretrain", ["pretrain", "random"],
                               "the LEAD run's base: the default's pretrained one, or random init")
_LEAD_LAKE = flags.DEFINE_integer("lead_lake", 2000, "synthetic lake size of the LEAD run")
_LEAD_T_MAX = flags.DEFINE_integer("lead_t_max", 5, "LEAD iterations at most")
_WORKDIR = flags.DEFINE_string("lead_workdir", "", "LEAD run directory; '' = a fresh temporary one")

# SmolLM2-135M's architecture (its config.json), random init here.
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                    num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0,
                    rms_norm_eps=1e-5, tie_embeddings=True, max_position_embeddings=8192)
_SMOKE_MODEL = dict(SMOLLM2_135M, vocab_size=1024, hidden_size=64, intermediate_size=128,
                    num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16)


def emit(check: str, result: dict) -> dict:
  line = {
      "check": check, "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
      **result
  }
  print(json.dumps(line), flush=True)
  return line


# --------------------------------------------------------------------------- bench_step
def check_bench_step(smoke: bool, rows: int, length: int, reps: int) -> dict:
  """LEAD / plain and loop / vmap, with bench_step's Variant and per-example timers."""
  config = base_config.get_config()
  if smoke:
    m = config.model
    m.hidden_size, m.intermediate_size, m.num_layers = 64, 128, 2
    config.train.projection_dim = 64
    rows, length, reps = 4, 32, 1
  timers = {
      "plain": bench_step.Variant(config, "plain", rows, rows, length),
      "lead": bench_step.Variant(config, "train", rows, rows, length)
  }
  timers["vmap"], timers["loop"] = bench_step.per_example_timers(config, rows, length)
  best = bench_step.min_seconds(timers, reps)
  speedup = best["loop"] / best["vmap"]
  return {
      "lead_over_plain": round(best["lead"] / best["plain"],
                               3), "loop_over_vmap": round(speedup, 2), "loop_over_vmap_goal": 8.0,
      "goal_met": bool(speedup >= 8.0), "seconds": {k: round(v, 5) for k, v in best.items()},
      "batch": rows, "length": length, "reps": reps
  }


# --------------------------------------------------------------------------- FLOPs
def smollm2_sized(smoke: bool, dtype: str = "bfloat16"):
  """configs/base.py's config with a SmolLM2-135M-sized random-init decoder."""
  config = base_config.get_config()
  for field, value in (_SMOKE_MODEL if smoke else SMOLLM2_135M).items():
    config.model[field] = value
  config.model.dtype = config.model.param_dtype = dtype
  config.train.projection_dim = 64 if smoke else config.train.projection_dim
  return config


def matmul_params(model_config) -> int:
  """N: every layer kernel plus the V x d output projection (tied or not)."""
  shapes = model_lib.param_shapes(model_config)
  layers = sum(
      int(np.prod(s.shape))
      for p, s in shapes.items()
      if p.startswith("layers/") and p.endswith("/kernel"))
  return layers + model_config.vocab_size * model_config.hidden_size


def flops_per_token(model_config, length: int, lora_params: int) -> dict:
  """Per-token FLOPs of the formulas in the module docstring."""
  n = matmul_params(model_config)
  attn = 12 * model_config.num_layers * model_config.num_heads * model_config.head_dim * length
  return {
      "model": 6 * n + attn, "lora": 4 * n + attn + 6 * lora_params, "forward": 2 * n + attn // 3,
      "matmul_params": n, "attention_train": attn
  }


def _rates(flops: float, seconds: float, peak_tflops: float) -> dict:
  tflops = flops / seconds / 1e12
  return {"tflops": round(tflops, 3), "mfu": round(tflops / peak_tflops, 4)}


def check_mfu(smoke: bool, rows: int, length: int, reps: int, peak: float) -> dict:
  """The plain LoRA step in bf16 on the SmolLM2-sized config."""
  config = smollm2_sized(smoke)
  step = bench_step.Variant(config, "plain", rows, rows, length)
  seconds = bench_step.min_seconds({"plain": step}, reps)["plain"]
  lora_params = lora_lib.count(step.state.lora)
  per_token = flops_per_token(build.model_config(config.model, config.lora), length, lora_params)
  tokens = rows * length
  return {
      "seconds": round(seconds, 5), "tokens_per_s": round(tokens / seconds),
      "model_flops_6n": _rates(per_token["model"] * tokens, seconds, peak), "lora_flops_4n": _rates(
          per_token["lora"] * tokens, seconds,
          peak), "flops_per_token": per_token, "lora_params": lora_params, "batch": rows,
      "length": length, "dtype": config.model.dtype, "peak_tflops": peak, "reps": reps
  }


def check_score(smoke: bool, rows: int, length: int, reps: int, peak: float) -> dict:
  """score_step (jitted as train.compile jits it) on the SmolLM2-sized config."""
  import functools
  config = smollm2_sized(smoke)
  mc, base = build.load_base(config.model, config.lora, jax.random.key(0))
  lora = lora_lib.init(mc.lora, base, jax.random.key(1))
  score = jax.jit(functools.partial(train.score_step, mc, rows))
  rows_batch = bench_step._batch(rows, length)  # pylint: disable=protected-access
  batch = {k: jax.device_put(v) for k, v in rows_batch.items()}
  params = {"params": base, "lora": lora}

  def timed():
    start = time.perf_counter()
    jax.block_until_ready(score(params, batch))
    return time.perf_counter() - start

  seconds = bench_step.min_seconds({"score": timed}, reps)["score"]
  per_token = flops_per_token(mc, length, lora_lib.count(lora))
  tokens = rows * length
  return {
      "seconds": round(seconds, 5), "tokens_per_s": round(tokens / seconds),
      **_rates(per_token["forward"] * tokens, seconds,
               peak), "batch": rows, "length": length, "dtype": mc.dtype, "reps": reps
  }


# --------------------------------------------------------------------------- LEAD run
def lead_config(smoke: bool, base: str, lake: int, t_max: int):
  """configs/default.py, shortened (smoke: tests/loop_config.py's sizes, random base)."""
  from configs import default
  config = default.get_config()
  config.data.synthetic.size, config.select.t_max = lake, t_max
  if base == "random" or smoke:
    config.model.checkpoint = ""
  if smoke:
    m = config.model
    m.hidden_size, m.intermediate_size, m.num_layers, m.num_heads, m.num_kv_heads = 64, 128, 2, 2, 2
    config.lora.rank = 4
    config.train.projection_dim = 64
    config.offline.warmup_fraction, config.offline.warmup_epochs = 0.1, 1
    config.offline.warmup_rank, config.offline.score_batch_size = 4, 32
    s = config.data.synthetic
    s.size, s.test_per_task, s.dev_per_task = 200, 2, 1
    config.data.max_length, config.data.buckets = 96, (32, 64)
    config.select.num_clusters, config.select.sample_rate = 3, 0.05
    config.select.budget_fraction, config.select.t_max = 0.2, 2
    config.eval.synthetic.max_new_tokens, config.loop.diag_samples = 8, 16
    config.eval.limit = 1  # test records per synthetic task
    config.loop.plots = False
  return config


def check_lead(smoke: bool, base: str, lake: int, t_max: int, workdir: str) -> dict:
  from lead_jax import loop
  config = lead_config(smoke, base, lake, t_max)
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as scratch:
    final = loop.run(config, workdir or os.path.join(scratch, "lead"))
  keep = ("exact_match", "test_loss", "samples_selected", "iterations", "train_steps",
          "forward_sample_passes", "wall_seconds")
  return {
      **{k: final[k] for k in keep if k in final},
      "seconds_total": round(time.perf_counter() - start,
                             1), "base": "random" if (smoke or base == "random") else "pretrain",
      "lake": config.data.synthetic.size, "t_max": config.select.t_max
  }


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  smoke = _SMOKE.value
  unknown = set(_CHECKS.value) - set(CHECKS)
  if unknown:
    raise app.UsageError(f"--checks: unknown {sorted(unknown)}; use a subset of {CHECKS}")
  rows, length = (2, 32) if smoke else (_MFU_BATCH.value, _MFU_LENGTH.value)
  reps = 1 if smoke else FLAGS.reps  # --reps, --batch, --length: bench_step's flags
  run = {
      "bench_step":
          lambda: check_bench_step(smoke, FLAGS.batch, FLAGS.length, reps), "mfu":
              lambda: check_mfu(smoke, rows, length, reps, _PEAK.value), "score":
                  lambda: check_score(smoke, rows, length, reps, _PEAK.value), "lead":
                      lambda: check_lead(smoke, _LEAD_BASE.value, _LEAD_LAKE.value, _LEAD_T_MAX.
                                         value, _WORKDIR.value)
  }
  for name in CHECKS:
    if name in _CHECKS.value:
      start = time.perf_counter()
      result = run[name]()
      emit(name, dict(result, check_seconds=round(time.perf_counter() - start, 1)))


if __name__ == "__main__":
  app.run(main)
