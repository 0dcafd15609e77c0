r"""Ours against PyTorch (transformers + peft) on the same model, batch and threads.

  python -m experiments.bench_torch [--reps 3] [--batch 16] [--length 128] [--threads 0]

The same model on both sides: the base config's tiny decoder (random init,
key 0, as experiments/bench_step builds it) exported with `lead_jax.model.hf` and
loaded by transformers' `LlamaForCausalLM`, float32, LoRA from `peft` on the
projections our `lora.targets` adapt, with our rank and alpha (dropout 0).
SmolLM2-135M too when its converted asset is present (`--smollm2`, default
assets/smollm2 from experiments/fetch_assets, or a .gguf file, converted with
lead_jax.model.gguf_import), at --smollm2_batch rows (4; several more minutes on 2
cores), else skipped with one line.
Before timing, the adapters get random non-zero values on both
sides and the two models are checked to agree: logits, per-example losses and
per-example LoRA gradients (printed as `agreement ...`).

Rows, each timed on the same batch (bench_step's: B rows of L tokens, loss on
the last two thirds), interleaved over repetitions; the MINIMUM is kept:
  score           forward + per-example response loss, no gradient (tokens/s)
  train_step      forward + backward + clipped AdamW update of the LoRA params
                  (ours: bench_step.Variant "plain"; torch: torch.optim.AdamW
                  foreach, clip_grad_norm_)
  per_example     per-example LoRA gradients of the B rows: ours
                  jit(lead_jax.train.grads.per_example), as bench_step.per_example_timers;
                  torch `vmap(grad(functional_call(...)))`
  peak_mem_<row>  peak resident memory above the level before the call (VmHWM,
                  reset through /proc/self/clear_refs, with glibc told to hand
                  freed blocks of 64 KiB and more back at once), the same
                  measurement on both sides; ours' compiled peak of the train
                  step (bench_step's memory analysis) is listed beside it.
Keys `<model>_<row>_ours_over_torch` are time (or memory) ratios: below 1 means
ours is faster (smaller). Threads: the process is pinned to `--threads` cores
(XLA sizes its pool from the affinity), torch.set_num_threads the same.
The last line is one JSON object. About 2-4 minutes on 2 cores (tiny model). Linux
only (/proc); --reps, --batch, --length are bench_step's flags.

Torch's attention: `--torch_attn` (default sdpa) for score and train_step;
per_example uses `--torch_vmap_attn` (default eager) because torch 2.13 has
no vmap batching rule for the CPU flash-attention kernel that sdpa picks (it
falls back to a per-row loop and warns).

Measured 2026-12-02 (--smollm2=assets/smollm2, reps 3, 2 threads, the cores
shared with a suite run; 6 min 49 s in all), ours / torch:
  tiny     score 0.309, train_step 0.474, per_example 0.451;
           peak memory 0.861, 2.122, 0.726
  SmolLM2  score 0.452, train_step 0.486, per_example 0.444;
           peak memory 0.889, 1.325, 0.597
  (SmolLM2 seconds, ours / torch: score 2.00 / 4.42, train_step 5.78 / 11.88,
  per_example 5.42 / 12.21; agreement: logits 1.2e-4 of max 36.3, loss_B
  8.9e-5, per-example grads 2.2e-4 of max 0.85)
The ratio keys of that run's JSON line:
  {"tiny_score_ours_over_torch": 0.309, "tiny_train_step_ours_over_torch": 0.474,
  "tiny_per_example_ours_over_torch": 0.451, "tiny_peak_mem_score_ours_over_torch":
  0.861, "tiny_peak_mem_train_step_ours_over_torch": 2.122,
  "tiny_peak_mem_per_example_ours_over_torch": 0.726, "tiny_shape": {"batch": 16,
  "length": 128, "params": 4330240, "lora_params": 188416},
  "smollm2_score_ours_over_torch": 0.452, "smollm2_train_step_ours_over_torch": 0.486,
  "smollm2_per_example_ours_over_torch": 0.444,
  "smollm2_peak_mem_score_ours_over_torch": 0.889,
  "smollm2_peak_mem_train_step_ours_over_torch": 1.325,
  "smollm2_peak_mem_per_example_ours_over_torch": 0.597, "smollm2_shape": {"batch": 4,
  "length": 128, "params": 134515008, "lora_params": 2442240}}

Earlier runs that day, tiny model only (SmolLM2 not yet fetched), with other
benchmarks beside them (load average 2-8). Torch's OpenMP threads suffer from the contention more
than XLA's pool, so torch's times swung 2-10x between runs (score: 0.40 s to
5.2 s): read the ratios as ranges. ours / torch (score, train_step, per_example;
peak memory 0.86, 1.98, 0.68 in every run before the flattening (**)):
  2 threads, load 2-5, reps 7, old plain step (*):   0.76, 1.65, 0.26
  2 threads, load about 8, reps 3, old plain step:   0.12, 0.32, 0.47
  2 threads, load about 7, reps 3:                   0.18, 0.51, 0.23
  1 thread,  load about 4, reps 3:                   0.41, 0.97, 0.65
  2 threads, load 2-4, reps 3, tokens flattened (**), the line below:
                                                     0.19, 0.36, 0.47
(*) before lead_jax.train.grads.plain_pass took the batch gradient from the per-row
vmap (a change made beside this one, in the working tree during these runs).
(**) model.LoraDense flattening tokens to 2-D around its matmuls (below);
peak memory 0.86, 2.12, 0.73 in that run.
Agreement (every run): max|logits diff| 3.9e-06 (max|logit| 4.7), max|loss_B
diff| 9.5e-07, max|per-example grad diff| 4.8e-07 (max|grad| 0.55).
{"threads": 2, "torch_threads": 2, "reps": 3, "kept": "minimum", "dtype": "float32", "torch_attn": ["sdpa", "eager"], "backend": "cpu", "versions": {"jax": "0.10.2", "torch": "2.13.0+cpu", "transformers": "5.24.0", "peft": "0.21.2"}, "tiny_agreement": {"logits_max_abs_diff": 3.933906555175781e-06, "logits_max_abs": 4.72980260848999, "loss_max_abs_diff": 9.5367431640625e-07, "loss_B_ours": "...", "grads_max_abs_diff": 4.76837158203125e-07, "grads_max_abs": 0.5452144742012024}, "tiny_score_ours_over_torch": 0.19, "tiny_train_step_ours_over_torch": 0.362, "tiny_per_example_ours_over_torch": 0.47, "tiny_peak_mem_score_ours_over_torch": 0.86, "tiny_peak_mem_train_step_ours_over_torch": 2.122, "tiny_peak_mem_per_example_ours_over_torch": 0.726, "tiny_score_tokens_per_s": {"ours": 6797, "torch": 1293}, "tiny_seconds": {"ours_score": 0.3013, "torch_score": 1.584, "ours_train_step": 1.1261, "torch_train_step": 3.1078, "ours_per_example": 1.1362, "torch_per_example": 2.4194}, "tiny_peak_rss_bytes": {"ours_score": 50364416, "torch_score": 58593280, "ours_train_step": 467357696, "torch_train_step": 220254208, "ours_per_example": 467771392, "torch_per_example": 644222976}, "tiny_compiled_peak_bytes_ours_train_step": 476652709, "tiny_shape": {"batch": 16, "length": 128, "params": 4330240, "lora_params": 188416}}

Where ours is not ahead, and what would fix it:
  * train_step time: 1.65x torch's in the quietest run with the old plain step
    (2.21 s against 1.34 s), level (0.97) at 1 thread with the current one.
    jax.profiler on the step: loop fusions of the MLP backward dominate. XLA:CPU
    materialises the gate_proj/up_proj output gradient (fused with the SiLU
    backward) transposed, [features, rows x tokens], as the operand of the
    LoRA-B gradient dot, reading the layer scan's stacked residuals with 4 KiB
    strides: about 50% of the op time with the old plain step, 28-30% (565-710
    of 2050-2270 ms a step) with the current one. The transposes come with
    activations of rank 3 or more ([B, 1, L, F] under the per-row vmap, where
    losses.example_loss adds the unit batch axis, and [B, L, F] in a batched
    forward too). An in-process trial that flattened tokens to [B*L, D] around
    each dense layer in a batched forward (no per-row vmap) cut the copies to
    130-150 ms and the step's value_and_grad to 1.6 s against the current
    plain step's 2.3 s, run back to back, with the same loss. Done since in
    model.LoraDense (tokens flattened to 2-D around every dense layer, also
    under the per-row vmap; (**)); a batched plain and score pass over
    [B*L, D] rows with no per-row vmap is not built. The
    LEAD path needs the per-row vmap; the flattening helps there too (16
    rows' per-example gradients about 1.24 s -> 0.95 s in a trial under load).
  * train_step memory: about 2x torch's resident peak (436 MB against 220 MB;
    the compiled peak is 425 MiB, nearly all of it the backward's
    temporaries); with the tokens flattened (**) 467 MB resident, 477 MB
    (455 MiB) compiled, up from 445 MB compiled before. model.remat=True brings the compiled
    peak down to 188 MiB (checked; its time, one more forward per step, was
    not measured here).
"""

import ctypes
import functools
import gc
import json
import os
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import peft
import torch
import transformers
from absl import app, flags
from torch.func import functional_call, grad, vmap

from configs import base as base_config
from experiments import bench_step
from lead_jax import paths
from lead_jax.train import build
from lead_jax.train import grads
from lead_jax.model import hf
from lead_jax.train import losses
from lead_jax.train import step as train
from lead_jax.model import lora as lora_lib
from lead_jax.model import decoder as model_lib

# --reps, --batch (tiny model), --length: bench_step's flags, shared; fewer
# repetitions by default here (torch's per-example row is the slow one).
# pylint: disable-next=protected-access
_REPS, _BATCH, _LENGTH = bench_step._REPS, bench_step._BATCH, bench_step._LENGTH
flags.FLAGS.set_default("reps", 3)
_THREADS = flags.DEFINE_integer("threads", 0, "cores for both frameworks; 0 = all allowed")
_SMOLLM2 = flags.DEFINE_string("smollm2", "assets/smollm2", "SmolLM2 HF dir or .gguf")
_SMOLLM2_BATCH = flags.DEFINE_integer("smollm2_batch", 4, "rows per step (SmolLM2)")
_TORCH_ATTN = flags.DEFINE_string("torch_attn", "sdpa", "torch attention: score, train")
_TORCH_VMAP_ATTN = flags.DEFINE_string("torch_vmap_attn", "eager", "torch attention: vmap")

_HF_BLOCK = {"attn": "self_attn", "mlp": "mlp"}  # our module under layers/ -> HF's


# --------------------------------------------------------------------------- set-up
def set_threads(n: int) -> int:
  """Pins the process to n cores (before JAX starts its CPU client) and sets
  torch's intra-op threads to n; returns n (0 = every allowed core)."""
  allowed = sorted(os.sched_getaffinity(0))
  n = n or len(allowed)
  os.sched_setaffinity(0, allowed[:n])
  torch.set_num_threads(n)
  return n


def release_freed_memory() -> None:
  """glibc: blocks of 64 KiB or more are mmapped and returned on free, so the
  resident size follows live buffers (the same for XLA's and torch's)."""
  libc = ctypes.CDLL("libc.so.6")
  libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (also stops its dynamic growth)
  libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD


def _status_kib(field: str) -> int:
  with open("/proc/self/status") as f:
    line = next(x for x in f if x.startswith(field + ":"))
  return int(line.split()[1])


def peak_rss_delta(fn) -> int:
  """Bytes: peak resident size during `fn()` above the size just before it."""
  gc.collect()
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current resident size
  before = _status_kib("VmRSS")
  fn()
  return (_status_kib("VmHWM") - before) * 1024


def random_adapters(model_config, base, key, scale: float = 0.05, seed: int = 0):
  """Adapters with non-zero B (at init B = 0 and LoRA would not show); B drawn
  with NumPy (no per-leaf compilations)."""
  rng = np.random.default_rng(seed)
  flat = paths.flatten(lora_lib.init(model_config.lora, base, key))
  return paths.unflatten({
      p: jnp.asarray(rng.normal(0.0, scale, x.shape).astype(np.float32)) if p.endswith("/b") else x
      for p, x in flat.items()
  })


def lora_module_names(model_config, base) -> list[str]:
  """HF module names (q_proj, ...) of the kernels our LoRA targets adapt."""
  return sorted({p.split("/")[-2] for p in lora_lib.target_paths(model_config.lora, base)})


def torch_name(path: str, layer: int) -> str:
  """Our `layers/attn/q_proj/a` at `layer` -> peft's lora_A parameter name."""
  _, block, module, ab = path.split("/")
  which = {"a": "lora_A", "b": "lora_B"}[ab]
  return f"base_model.model.model.layers.{layer}.{_HF_BLOCK[block]}.{module}.{which}.default.weight"


# --------------------------------------------------------------------------- torch side
def torch_peft(hf_dir: str, model_config, base, attn: str):
  """transformers' LlamaForCausalLM from `hf_dir` with peft LoRA (our rank, alpha)."""
  model = transformers.LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                                        attn_implementation=attn)
  lc = model_config.lora
  cfg = peft.LoraConfig(r=lc.rank, lora_alpha=lc.alpha, lora_dropout=0.0, bias="none",
                        target_modules=lora_module_names(model_config, base))
  return peft.get_peft_model(model, cfg).eval()


def copy_adapters(peft_model, lora) -> None:
  """Sets peft's lora_A/B to our a/b (ours [in, r] / [r, out] per layer)."""
  params = dict(peft_model.named_parameters())
  with torch.no_grad():
    for path, x in paths.flatten(lora).items():
      x = np.asarray(x)
      for layer in range(x.shape[0]):
        params[torch_name(path, layer)].copy_(torch.from_numpy(x[layer].T.copy()))


def torch_batch(batch: dict) -> dict:
  return {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}


def torch_example_losses(logits_BxLxV, tokens_BxL, loss_mask_BxL):
  """(loss_B, n_B): token-mean cross-entropy over response targets, per row."""
  ce = torch.nn.functional.cross_entropy(logits_BxLxV[:, :-1].float().transpose(1, 2),
                                         tokens_BxL[:, 1:].long(), reduction="none")
  m = loss_mask_BxL[:, 1:].float()
  n_B = m.sum(1)
  return (ce * m).sum(1) / n_B.clamp(min=1.0), n_B


def torch_score(model, tb: dict):
  with torch.inference_mode():
    logits = model(input_ids=tb["tokens_BxL"].long(),
                   attention_mask=tb["attention_mask_BxL"].long()).logits
    return torch_example_losses(logits, tb["tokens_BxL"], tb["loss_mask_BxL"])[0]


def torch_train_fn(model, tb: dict, optim_cfg):
  """A zero-argument LoRA step: forward, backward, clip, AdamW (optim_cfg's)."""
  params = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.AdamW(params, lr=optim_cfg.lr, betas=(optim_cfg.b1, optim_cfg.b2),
                          eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay, foreach=True)

  def step():
    logits = model(input_ids=tb["tokens_BxL"].long(),
                   attention_mask=tb["attention_mask_BxL"].long()).logits
    loss_B, n_B = torch_example_losses(logits, tb["tokens_BxL"], tb["loss_mask_BxL"])
    w_B = (n_B > 0).float()
    loss = (loss_B * w_B).sum() / w_B.sum().clamp(min=1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if optim_cfg.clip_norm > 0:
      torch.nn.utils.clip_grad_norm_(params, optim_cfg.clip_norm, foreach=True)
    opt.step()
    return loss.detach()

  return step


def torch_per_example_fn(model, tb: dict):
  """A zero-argument `vmap(grad)` over the rows: {peft name: [B, ...]}.
  Rows carry no padding here (bench batches), so no attention mask is passed."""
  params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

  def loss_one(params, tokens_L, loss_mask_L):
    logits = functional_call(model, params, (tokens_L[None].long(),)).logits
    return torch_example_losses(logits, tokens_L[None], loss_mask_L[None])[0][0]

  per_row = vmap(grad(loss_one), in_dims=(None, 0, 0))
  return lambda: per_row(params, tb["tokens_BxL"], tb["loss_mask_BxL"])


# --------------------------------------------------------------------------- ours
def ours_score_fn(model_config, base, lora, batch):
  """A zero-argument jitted `train.score_step` (as `train.compile` jits it): loss_B."""
  rows = batch["is_pad_B"].shape[0]
  score = jax.jit(functools.partial(train.score_step, model_config, rows))
  params = {"params": base, "lora": lora}
  dev = {k: jax.device_put(v) for k, v in batch.items()}
  return lambda: score(params, dev)["loss_B"]


def ours_per_example_fn(model_config, base, lora, batch):
  """A zero-argument jitted `grads.per_example` (bench_step's vmap): (loss_B, n_B, g)."""
  loss_fn = functools.partial(losses.example_loss, model_config, base)
  vmapped = jax.jit(lambda l, b: grads.per_example(loss_fn, l, b, None))
  dev = {k: jax.device_put(v) for k, v in batch.items()}
  return lambda: vmapped(lora, dev)


# --------------------------------------------------------------------------- agreement
def agreement(model_config, params, batch: dict, ours: dict, score_model, vmap_model) -> dict:
  """Max abs differences, ours - torch: logits, loss_B and per-example gradients
  (`ours`: the "score" and "per_example" functions above, on `params` and `batch`)."""
  ours_logits = np.asarray(
      jax.jit(functools.partial(model_lib.forward, model_config))(params, batch["tokens_BxL"],
                                                                  batch["attention_mask_BxL"]))
  tb = torch_batch(batch)
  with torch.inference_mode():
    ref_logits = score_model(input_ids=tb["tokens_BxL"].long(),
                             attention_mask=tb["attention_mask_BxL"].long()).logits.numpy()
  ours_loss, ref_loss = np.asarray(ours["score"]()), torch_score(score_model, tb).numpy()
  g = ours["per_example"]()[2]
  ref_g = {k: v.numpy() for k, v in torch_per_example_fn(vmap_model, tb)().items()}
  g_diff, g_max = 0.0, 0.0
  for path, x in paths.flatten(g).items():
    x = np.asarray(x)  # [B, layers, ...]
    for layer in range(x.shape[1]):
      ref = np.swapaxes(ref_g[torch_name(path, layer)], -1, -2)
      g_diff = max(g_diff, float(np.abs(x[:, layer] - ref).max()))
      g_max = max(g_max, float(np.abs(ref).max()))
  return {
      "logits_max_abs_diff": float(np.abs(ours_logits - ref_logits).max()), "logits_max_abs": float(
          np.abs(ref_logits).max()), "loss_max_abs_diff": float(np.abs(ours_loss - ref_loss).max()),
      "loss_B_ours": [round(float(x), 5) for x in ours_loss], "grads_max_abs_diff": g_diff,
      "grads_max_abs": g_max
  }


# --------------------------------------------------------------------------- timing
def _timed(fn, sync=lambda x: x):

  def run():
    start = time.perf_counter()
    sync(fn())
    return time.perf_counter() - start

  return run


def export_base(config, directory: str) -> None:
  """The random-init base of `config` (key 0, as bench_step) as an HF checkpoint."""
  model_config, base = build.load_base(config.model, config.lora, jax.random.key(0))
  hf.save_checkpoint(directory, model_config, {"params": base})


def bench_model(name: str, config, hf_dir: str, rows: int, length: int, reps: int,
                attn=("sdpa", "eager"), compiled_memory: bool = True) -> dict:
  """Agreement, then every row on both sides; keys prefixed with `name`."""
  model_config, base = build.load_base(config.model, config.lora, jax.random.key(0))
  lora = random_adapters(model_config, base, jax.random.key(1))
  batch = bench_step._batch(rows, length)  # pylint: disable=protected-access
  score_model = torch_peft(hf_dir, model_config, base, attn[0])
  vmap_model = score_model if attn[1] == attn[0] else torch_peft(hf_dir, model_config, base,
                                                                 attn[1])
  for m in {id(score_model): score_model, id(vmap_model): vmap_model}.values():
    copy_adapters(m, lora)
  ours = {
      "score": ours_score_fn(model_config, base, lora, batch),
      "per_example": ours_per_example_fn(model_config, base, lora, batch)
  }
  check = agreement(model_config, {"params": base, "lora": lora}, batch, ours, score_model,
                    vmap_model)
  tb = torch_batch(batch)
  train_variant = bench_step.Variant(config, "plain", rows, rows, length)
  timers = {
      "ours_score": _timed(ours["score"], jax.block_until_ready),
      "torch_score": _timed(lambda: torch_score(score_model, tb)), "ours_train_step": train_variant,
      "torch_train_step": _timed(torch_train_fn(score_model, tb, config.optim)
                                ), "ours_per_example": _timed(ours["per_example"],
                                                              jax.block_until_ready),
      "torch_per_example": _timed(torch_per_example_fn(vmap_model, tb))
  }
  best = bench_step.min_seconds(timers, reps)
  mem = {k: peak_rss_delta(fn) for k, fn in timers.items()}
  out = {f"{name}_agreement": check}
  for row in ("score", "train_step", "per_example"):
    out[f"{name}_{row}_ours_over_torch"] = round(best[f"ours_{row}"] / best[f"torch_{row}"], 3)
  for row in ("score", "train_step", "per_example"):
    out[f"{name}_peak_mem_{row}_ours_over_torch"] = round(
        mem[f"ours_{row}"] / max(mem[f"torch_{row}"], 1), 3)
  out[f"{name}_score_tokens_per_s"] = {
      side: round(rows * length / best[f"{side}_score"]) for side in ("ours", "torch")
  }
  out[f"{name}_seconds"] = {k: round(v, 4) for k, v in best.items()}
  out[f"{name}_peak_rss_bytes"] = mem
  if compiled_memory:  # a second compilation of the step
    out[f"{name}_compiled_peak_bytes_ours_train_step"] = train_variant.peak_bytes()
  out[f"{name}_shape"] = {
      "batch": rows, "length": length, "params": int(sum(x.size for x in jax.tree.leaves(base))),
      "lora_params": lora_lib.count(lora)
  }
  return out


def smollm2_dir(path: str, scratch: str):
  """An HF directory of SmolLM2 (converted from a .gguf if given one), or None."""
  if path.endswith(".gguf") and os.path.isfile(path):
    from lead_jax.model import gguf_import
    return gguf_import.convert(path, os.path.join(scratch, "smollm2"))
  return path if os.path.isfile(os.path.join(path, "config.json")) else None


def _print_summary(result: dict) -> None:
  for key, value in result.items():
    if key.endswith("_ours_over_torch"):
      print(f"{key:44s} {value}")
    elif key.endswith("_agreement"):
      print(f"agreement {key[:-len('_agreement')]}: max|logits diff| "
            f"{value['logits_max_abs_diff']:.2e} (max|logit| {value['logits_max_abs']:.2f}), "
            f"max|loss_B diff| {value['loss_max_abs_diff']:.2e}, max|per-example grad diff| "
            f"{value['grads_max_abs_diff']:.2e} (max|grad| {value['grads_max_abs']:.2e})")


def main(argv):
  del argv
  threads = set_threads(_THREADS.value)
  release_freed_memory()
  warnings.filterwarnings("ignore", category=FutureWarning)
  transformers.logging.set_verbosity_error()
  attn = (_TORCH_ATTN.value, _TORCH_VMAP_ATTN.value)
  result = {
      "threads": threads, "torch_threads": torch.get_num_threads(), "reps": _REPS.value,
      "kept": "minimum", "dtype": "float32", "torch_attn": list(attn),
      "backend": jax.default_backend(), "versions": {
          "jax": jax.__version__, "torch": torch.__version__,
          "transformers": transformers.__version__, "peft": peft.__version__
      }
  }
  with tempfile.TemporaryDirectory() as scratch:
    config = base_config.get_config()
    tiny_dir = os.path.join(scratch, "tiny")
    export_base(config, tiny_dir)
    result.update(
        bench_model("tiny", config, tiny_dir, _BATCH.value, _LENGTH.value, _REPS.value, attn))
    smol = smollm2_dir(_SMOLLM2.value, scratch)
    if smol is None:
      print(f"skip smollm2: no asset at {_SMOLLM2.value} "
            "(python -m experiments.fetch_assets --only smollm2)")
    else:
      config.model.checkpoint = smol
      result.update(
          bench_model("smollm2", config, smol, _SMOLLM2_BATCH.value, _LENGTH.value, _REPS.value,
                      attn))
  _print_summary(result)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
