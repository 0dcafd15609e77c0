"""Cost of the LEAD step against the plain LoRA step, measured side by side.

  python -m experiments.bench_step [--reps 7]

Model: the base config's tiny decoder (4 layers, d=256, LoRA r=8 on every
projection), B=16 rows of L=128 tokens, projection k=1024 over the base
config's projection targets (every LoRA parameter). On a shared machine,
times are the minimum over interleaved repetitions, so every ratio compares
runs made side by side.

Both steps take their batch gradient from the same per-example gradient sum
(`lead_jax.train.grads`); the plain step then stops, the LEAD step adds the
projections, the per-row flags and dL_B. So LEAD / plain is the price of
LEAD's per-example outputs, and it is >= 1 up to timing noise.

Reports:
  lead_over_plain       LEAD step time / plain step time (same batch)
  lead_subset_over_plain     the same projecting only attention q, v adapters
  lead_over_lead_no_projection   the projection's share of the LEAD step
  lead_over_plain_b64_micro16    B=64 in chunks of 16, both steps, the default
                        train.dl_method=auto: here the per-example gradients of
                        the 64 rows fit its 1 GiB cap (48 MB), so they are kept
                        for the dots and projected once after the chunks
  lead_jvp_over_plain_b64_micro16   the same with dl_method=jvp: dL_B by a
                        forward-mode pass (memory bounded by one chunk), a second
                        pass over the batch that costs about as many FLOPs as
                        the gradient pass
  vmap_over_loop        per-example gradients of B rows: one vmap call / a
                        Python loop of B single-example jitted grads (< 1: vmap wins)
  peak_mem_ratio        compiled peak memory, LEAD / plain (B=16)
  peak_mem_*            compiled peak bytes (arguments + outputs - aliases +
                        temporaries) at B=16 and B=64: micro-batching (16 rows
                        per chunk) keeps the LEAD step's per-example memory
                        bounded as B grows; the unchunked B=64 step shows the
                        growth it prevents.

Measured 2026-12-02 (--reps 5), 2 CPU cores shared with a suite run (load
average about 3), after dl_method=auto (keep the gradients when they fit,
project them once per step) and projection_block_rows 4096 -> 1024 (a 4 MB
block of the +-1 matrix stays in cache: 16 rows x 172k parameters projected in
0.077 s against 0.122 s):
  lead_over_plain 1.169 (0.974 s vs 0.833 s)  lead_over_lead_no_projection 1.103
  lead_subset_over_plain 1.089               peak_mem_ratio 1.00 (477 MB each)
  lead_over_plain_b64_micro16 1.138 (3.35 s vs 2.94 s; 525 MB against 477 MB)
  lead_jvp_over_plain_b64_micro16 1.879 (5.53 s)    vmap_over_loop 1.127
The run before the block change gave 1.163, 1.152, 1.133 and 1.931 for the
same four ratios; before dl_method=auto (jvp was the default, the kept
gradients were projected chunk by chunk): B=64 1.898 (jvp), 1.199 (stored).
At B=16 the projection is the LEAD step's whole extra cost (1.10-1.15; the
flags and dots are within the noise) and LEAD / plain stays 1.15-1.17, just
over the 1.15 aimed at: the +-1 matrix (172k x 1024 entries) is generated
anew every step by hashing (a stored copy would take 700 MB, and multiplying
by one measured slower, 0.16 s, bound by memory traffic). The jvp pass costs about as many FLOPs as the gradient
pass (XLA cost analysis: 1.07e10 per 16 rows for each), which is why auto
keeps the gradients whenever they fit.

Hardware: any CPU; 4-10 minutes on 2 shared cores. The last line is one JSON object.
"""

import functools
import json
import time

import jax
import numpy as np
from absl import app, flags

from configs import base as base_config
from lead_jax.train import build
from lead_jax.train import grads
from lead_jax.train import losses
from lead_jax.train import optim
from lead_jax.train import step as train
from lead_jax.model import lora as lora_lib

_REPS = flags.DEFINE_integer("reps", 7, "interleaved repetitions (the minimum is kept)")
_LENGTH = flags.DEFINE_integer("length", 128, "tokens per row")
_BATCH = flags.DEFINE_integer("batch", 16, "rows per step")
SUBSET = r"attn/(q|v)_proj/[ab]$"  # a regex-chosen subset, for comparison
_BIG = flags.DEFINE_integer("big_batch", 64, "the larger batch of the memory comparison")


def _batch(rows: int, length: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  attn = np.ones((rows, length), bool)
  loss = np.arange(length)[None, :] >= length // 3  # prompt third, response the rest
  return {
      "tokens_BxL": rng.integers(0, 256, (rows, length)).astype(np.int32),
      "attention_mask_BxL": attn, "loss_mask_BxL": np.broadcast_to(loss, attn.shape).copy(),
      "is_pad_B": np.zeros(rows, bool), "index_B": np.arange(rows, dtype=np.int32)
  }


class Variant:
  """One jitted step with its own state, threaded through repeated calls (the
  base is passed beside it, not donated)."""

  def __init__(self, config, kind: str, rows: int, micro: int, length: int, **train_fields):
    config = config.copy_and_resolve_references()
    config.train.batch_size, config.train.micro_batch = rows, micro
    for name, value in train_fields.items():
      config.train[name] = value
    mc, base = build.load_base(config.model, config.lora, jax.random.key(0))
    tx, lr_fn = optim.make(config.optim)
    self.base = base
    self.state, _ = build.init_state(mc, base, tx, jax.random.key(1))
    spec = train.spec_from_config(mc, config.train, config.optim, config.seed)
    self.fn = getattr(train.compile(spec, tx, lr_fn), kind)
    self.batch = {k: jax.device_put(v) for k, v in _batch(rows, length).items()}
    self.key = jax.random.key(2)

  def peak_bytes(self) -> int:
    m = self.fn.lower(self.state, self.base, self.batch, self.key).compile().memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes +
               m.temp_size_in_bytes)

  def __call__(self) -> float:
    start = time.perf_counter()
    self.state, out = self.fn(self.state, self.base, self.batch, self.key)
    jax.block_until_ready(out)
    return time.perf_counter() - start


def min_seconds(timers: dict, reps: int) -> dict:
  """Minimum seconds of each zero-argument timer over `reps` interleaved rounds
  (+1 round first that compiles and warms up), so ratios compare side by side."""
  best = {name: float("inf") for name in timers}
  for _ in range(reps + 1):
    for name, fn in timers.items():
      best[name] = min(best[name], fn())
  return best


def per_example_timers(config, rows: int, length: int):
  """(vmap over rows, Python loop of single-row grads) as zero-argument timers."""
  mc, base = build.load_base(config.model, config.lora, jax.random.key(0))
  lora = lora_lib.init(mc.lora, base, jax.random.key(1))
  loss_fn = functools.partial(losses.example_loss, mc, base)
  batch = {k: jax.device_put(v) for k, v in _batch(rows, length).items()}
  vmapped = jax.jit(lambda l, b: grads.per_example(loss_fn, l, b, None))
  single = jax.jit(jax.value_and_grad(lambda l, ex: loss_fn(l, ex)[0]))
  rows_ = [{k: v[i] for k, v in batch.items()} for i in range(rows)]

  def timed(fn):

    def run():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      return time.perf_counter() - start

    return run

  return (timed(lambda: vmapped(lora, batch)), timed(lambda: [single(lora, ex) for ex in rows_]))


def main(argv):
  del argv
  config = base_config.get_config()
  b, big, length = _BATCH.value, _BIG.value, _LENGTH.value
  timers = {
      "plain": Variant(config, "plain", b, b, length), "lead": Variant(
          config, "train", b, b, length), "lead_subset": Variant(config, "train", b, b, length,
                                                                 projection_targets=(SUBSET,)),
      "lead_no_projection": Variant(config, "train", b, b, length, projection_dim=0),
      f"plain_b{big}_micro{b}": Variant(config, "plain", big, b, length), f"lead_b{big}_micro{b}":
          Variant(config, "train", big, b,
                  length), f"lead_jvp_b{big}_micro{b}": Variant(config, "train", big, b, length,
                                                                dl_method="jvp")
  }
  timers["vmap"], timers["loop"] = per_example_timers(config, b, length)
  best = min_seconds(timers, _REPS.value)
  mem = {
      name: timers[name].peak_bytes()
      for name in ("plain", "lead", f"plain_b{big}_micro{b}", f"lead_b{big}_micro{b}",
                   f"lead_jvp_b{big}_micro{b}")
  }
  mem[f"lead_b{big}_unchunked"] = Variant(config, "train", big, big, length).peak_bytes()
  result = {
      "lead_over_plain":
          round(best["lead"] / best["plain"], 3), "lead_subset_over_plain":
              round(best["lead_subset"] / best["plain"], 3), "lead_over_lead_no_projection":
                  round(best["lead"] / best["lead_no_projection"], 3),
      f"lead_over_plain_b{big}_micro{b}":
          round(best[f"lead_b{big}_micro{b}"] / best[f"plain_b{big}_micro{b}"],
                3), f"lead_jvp_over_plain_b{big}_micro{b}":
                    round(best[f"lead_jvp_b{big}_micro{b}"] / best[f"plain_b{big}_micro{b}"],
                          3), "vmap_over_loop":
                              round(best["vmap"] / best["loop"], 3), "peak_mem_ratio":
                                  round(mem["lead"] / mem["plain"],
                                        3), f"peak_mem_lead_b{big}_micro{b}_over_lead_b{b}":
                                            round(mem[f"lead_b{big}_micro{b}"] / mem["lead"], 3),
      f"peak_mem_lead_jvp_b{big}_micro{b}_over_lead_b{b}":
          round(mem[f"lead_jvp_b{big}_micro{b}"] / mem["lead"],
                3), f"peak_mem_lead_b{big}_unchunked_over_lead_b{b}":
                    round(mem[f"lead_b{big}_unchunked"] / mem["lead"],
                          3), "seconds": {k: round(v, 4) for k, v in best.items()}, "peak_bytes":
                              mem, "batch":
                                  b, "length":
                                      length, "projection_dim":
                                          config.train.projection_dim, "projection_targets":
                                              list(config.train.projection_targets), "backend":
                                                  jax.default_backend()
  }
  for key in ("lead_over_plain", "lead_over_lead_no_projection", f"lead_over_plain_b{big}_micro{b}",
              f"lead_jvp_over_plain_b{big}_micro{b}", "vmap_over_loop", "peak_mem_ratio"):
    print(f"{key:28s} {result[key]}")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
