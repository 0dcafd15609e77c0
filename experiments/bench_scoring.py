r"""Benchmark of the offline scoring passes: padded rows vs packed rows.

  python -m experiments.bench_scoring              # 2,000 samples of the default lake

The default lake (configs/default.py: `lead_jax.data.synthetic`, 10,000
samples, buckets 64/96/128/160), a seeded random subset of `--num_samples`
of it, and the config's tiny model randomly initialised (model.checkpoint =
"": no base is built). The workload is the offline stage's three forward
passes per sample: IFD under a LoRA model (the full and the response-only
view) and the base loss, `offline.score_batch_size` rows per call. Unpacked
is the previous scoring loop (each sample its own row, padded to its length
bucket, `train.score_step`); packed is `lead_jax.train.scoring.losses` (several
samples per row, `lead_jax.data.packing`). After one untimed round of each
(compilation), `--rounds` rounds alternate unpacked and packed, each pass
timed on its own; samples/s = samples / (sum over the passes of the median
wall seconds). Per-pass ratios and the ratio of process CPU seconds (less
sensitive to other work on a shared machine) come with it.
`padding_fraction` is the share of row tokens (padding rows included) that
are padding, over the three passes; `max_abs_diff` compares the two paths'
losses.
The last line printed is one JSON object.

Measured 2026-12-02 on a 2-core CPU shared with other work (2,000 samples):
  {"num_samples": 2000, "pool_size": 10000, "passes_per_sample": 3, "batch_size": 64,
  "micro_batch": 8, "buckets": [64, 96, 128, 160], "rounds": 3,
  "padding_fraction_unpacked": 0.4758, "padding_fraction_packed": 0.0418,
  "unpacked_samples_per_s": 22.74, "packed_samples_per_s": 37.29,
  "packed_over_unpacked_samples_per_s": 1.64, "ifd_packed_over_unpacked": 2.168,
  "base_loss_packed_over_unpacked": 1.027, "packed_over_unpacked_cpu_seconds": 1.705,
  "max_abs_diff": 2.384185791015625e-06}
(one line; wrapped here). The three passes together: x1.64 wall, x1.71 in CPU
seconds. IFD, whose response-only view is 82% padding unpacked, gains x2.2;
the base loss (full view, 33% padding unpacked) can gain at most x1.5, and
its x1.03 here is within this machine's noise: a probe beside a suite run
found the cost per row slot flat over the row length (99-106 us per slot at
L = 64, 96, 128, 160; attention is a small share at d = 128), so time follows
slots, and the base-loss pass of these 2,000 samples takes 159.7k slots
unpacked (25 calls of 64 x 64, 3 of 96, 1 of 128, 3 of 160) against 112.6k
packed (11 calls of 64 x 160): a x1.42 ceiling, x1.27 measured in that probe. 2x overall is out of reach
with these buckets: unpacked rows are 48% padding and packed ones 4%, a
ceiling of x1.83 in token slots.
"""

import functools
import json
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np

from configs import default
from lead_jax import data
from lead_jax.train import build
from lead_jax.model import lora
from lead_jax.train import scoring
from lead_jax.model import tokenizer
from lead_jax.train import step as train
from lead_jax.data import packing

_N = flags.DEFINE_integer("num_samples", 2000, "Lake samples scored (a seeded random subset).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds of each path (alternating).")
_WORKDIR = flags.DEFINE_string("workdir", "", "Where the lake is written; '' = a temp dir.")


def _unpacked(score, params, pool, ids_N, batch_size, response):
  """The previous scoring loop: shortest first, one padded row per sample."""
  order = np.argsort(pool.length_N[ids_N], kind="stable")
  out = {
      "loss": np.zeros(len(ids_N), np.float32), "response_loss": np.zeros(len(ids_N), np.float32)
  }
  for start in range(0, len(order), batch_size):
    pos = order[start:start + batch_size]
    args = [data.gather(pool, ids_N[pos], batch_size)]
    if response:
      args.append(data.gather(pool, ids_N[pos], batch_size, view="response"))
    got = train.fetch(score(params, *args))
    out["loss"][pos] = got["loss_B"][:len(pos)]
    if response:
      out["response_loss"][pos] = got["response_loss_B"][:len(pos)]
  return out


def _padding(pool, ids_N, batch_size):
  """Padding fraction of the rows of the three passes, unpacked and packed."""
  real = slots_u = slots_p = 0
  for view in ("full", "response", "full"):
    lens = packing.view_lengths(pool, ids_N, view)
    real += int(lens.sum())
    order = np.argsort(pool.length_N[ids_N], kind="stable")
    for start in range(0, len(order), batch_size):  # a call's L: its longest row's bucket
      slots_u += batch_size * data.choose_length(pool.buckets,
                                                 int(lens[order[start:start + batch_size]].max()))
    plan = packing.pack(pool, ids_N, view, max_segments=scoring.MAX_SEGMENTS)
    slots_p += plan.num_batches(batch_size) * batch_size * plan.length
  return 1.0 - real / slots_u, 1.0 - real / slots_p


def main(argv):
  del argv
  config = default.get_config()
  config.model.checkpoint = ""
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="bench_scoring_")
  pool = data.load_pool(config.data, tokenizer.load(config.data.tokenizer), workdir)
  ids_N = np.sort(
      np.random.default_rng(0).choice(len(pool), min(_N.value, len(pool)), replace=False))
  mc, base = build.load_base(config.model, config.lora, jax.random.key(config.seed))
  adapters = jax.tree.map(lambda x: x + 0.01, lora.init(mc.lora, base, jax.random.key(1)))
  warm, cold = {"params": base, "lora": adapters}, {"params": base}
  b = config.offline.score_batch_size
  micro = config.train.micro_batch or config.train.batch_size
  score = jax.jit(functools.partial(train.score_step, mc, micro))
  scorer = scoring.Scorer(mc, micro)

  passes = {  # (path, pass) -> a function scoring every sample of ids_N once
      ("unpacked", "ifd"):
          lambda: _unpacked(score, warm, pool, ids_N, b, True), ("unpacked", "base_loss"):
          lambda: _unpacked(score, cold, pool, ids_N, b, False), ("packed", "ifd"):
          lambda: scoring.losses(scorer, warm, pool, ids_N, b, None, response=True)[0],
      ("packed", "base_loss"):
          lambda: scoring.losses(scorer, cold, pool, ids_N, b, None)[0]
  }
  results = {k: fn() for k, fn in passes.items()}  # compiles every shape
  wall = {k: [] for k in passes}
  cpu = {k: [] for k in passes}
  for _ in range(_ROUNDS.value):  # unpacked, packed, unpacked, ... (the load varies)
    for k, fn in passes.items():
      t0, c0 = time.perf_counter(), time.process_time()
      results[k] = fn()
      wall[k].append(time.perf_counter() - t0)
      cpu[k].append(time.process_time() - c0)
  diff = max(
      float(np.abs(results["unpacked", p][v] - results["packed", p][v]).max())
      for p, v in (("ifd", "loss"), ("ifd", "response_loss"), ("base_loss", "loss")))
  pad_u, pad_p = _padding(pool, ids_N, b)
  med = lambda d, path, ps=("ifd", "base_loss"): sum(float(np.median(d[path, p])) for p in ps)
  rate = {path: len(ids_N) / med(wall, path) for path in ("unpacked", "packed")}
  result = {
      "num_samples":
          len(ids_N),
      "pool_size":
          len(pool),
      "passes_per_sample":
          3,
      "batch_size":
          b,
      "micro_batch":
          micro,
      "buckets":
          list(pool.buckets),
      "rounds":
          _ROUNDS.value,
      "padding_fraction_unpacked":
          round(pad_u, 4),
      "padding_fraction_packed":
          round(pad_p, 4),
      "unpacked_samples_per_s":
          round(rate["unpacked"], 2),
      "packed_samples_per_s":
          round(rate["packed"], 2),
      "packed_over_unpacked_samples_per_s":
          round(rate["packed"] / rate["unpacked"], 3),
      "ifd_packed_over_unpacked":
          round(med(wall, "unpacked", ("ifd",)) / med(wall, "packed", ("ifd",)), 3),
      "base_loss_packed_over_unpacked":
          round(med(wall, "unpacked", ("base_loss",)) / med(wall, "packed", ("base_loss",)), 3),
      "packed_over_unpacked_cpu_seconds":
          round(med(cpu, "unpacked") / med(cpu, "packed"), 3),
      "max_abs_diff":
          diff,
  }
  print(f"scoring (IFD both views + base loss) of {len(ids_N)} samples: "
        f"{result['unpacked_samples_per_s']} samples/s unpacked, "
        f"{result['packed_samples_per_s']} packed "
        f"(x{result['packed_over_unpacked_samples_per_s']}); padding "
        f"{pad_u:.1%} -> {pad_p:.1%}")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
