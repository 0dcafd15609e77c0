r"""Tokenisation throughput of the data layer on a synthetic pool.

  python -m experiments.bench_tokenize                       # 100k samples, byte_level
  python -m experiments.bench_tokenize --tokenizer=DIR       # a local HF tokenizer

Writes a synthetic lake of --num_samples into a temporary directory, then
times reading + validation, template + batched tokenisation + truncation, the
whole cold `load_pool` (including the cache write) and a cache hit. About
10-20 s on a 2-core CPU for 100k samples. The last line printed is a JSON
object; `samples_per_s` is the cold `load_pool` throughput.
"""

import json
import tempfile
import time

from absl import app
from absl import flags

from configs import base_data
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import formats, load_pool, pool as pool_lib, synthetic, templates

_N = flags.DEFINE_integer("num_samples", 100_000, "Synthetic pool size.")
_TOKENIZER = flags.DEFINE_string("tokenizer", "byte_level", "byte_level or a local HF dir.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", 160, "data.max_length.")


def _timed(fn):
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


def main(argv):
  del argv
  tok = tokenizer_lib.load(_TOKENIZER.value)
  config = base_data.get()
  config.max_length = _MAX_LENGTH.value
  n = _N.value
  with tempfile.TemporaryDirectory() as tmp:
    lake, t_lake = _timed(lambda: synthetic.write_lake(f"{tmp}/lake", seed=0, size=n))
    result, t_read = _timed(lambda: formats.read(lake["train"]))
    template = templates.resolve(tok, config.template)
    (pool,
     _), t_tok = _timed(lambda: pool_lib.build(result.records, tok, template, config.max_length))
    cold, t_cold = _timed(lambda: load_pool(config, tok, f"{tmp}/wd", lake["train"]))
    _, t_hit = _timed(lambda: load_pool(config, tok, f"{tmp}/wd", lake["train"]))
  out = {
      "samples": n, "tokens": int(pool.length_N.sum()
                                 ), "tokenizer": _TOKENIZER.value, "lake_write_s": round(t_lake, 3),
      "read_validate_s": round(t_read, 3), "tokenize_s": round(t_tok, 3), "load_pool_cold_s": round(
          t_cold, 3), "cache_hit_s": round(t_hit, 3), "read_samples_per_s": round(n / t_read),
      "tokenize_samples_per_s": round(n / t_tok), "samples_per_s": round(len(cold) / t_cold)
  }
  for k, v in out.items():
    print(f"{k:>24}: {v}")
  print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
