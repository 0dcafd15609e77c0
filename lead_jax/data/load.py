"""From the `data` config to a Pool: paths, reading, tokenising, caching, reports.

`load_pool` reads and validates the whole file before it writes anything; with
`data.on_error="raise"` a bad record stops it with a one-line DataError. With
"skip", dropped records are counted by reason and listed, one JSON object per
line, in `<workdir>/data/<file>.rejects.jsonl` (beside the input file when no
workdir is given). Samples excluded by truncation are listed there too.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os

from lead_jax import artifacts
from lead_jax.data import cache, formats, pool as pool_lib, templates, tfds_builder
from lead_jax.data.errors import DataError
from lead_jax.data.formats import Record, Reject

log = logging.getLogger(__name__)


def saved_train_path(workdir: str) -> str:
  """The pool file a run read, from its `config.json` (data.train_path, or the
  synthetic lake of its data.synthetic fields); '' when the run has no config
  or the file is gone. Runs made before the lake moved to the cache root kept
  it in `<workdir>/lake`."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return ""
  with open(path, encoding="utf-8") as f:
    train = train_path_of(json.load(f).get("data", {}), workdir)
  return train if os.path.isfile(train) else ""


def train_path_of(data: dict, workdir: str) -> str:
  """The pool path of a saved run's `data` config (a dict from its config.json),
  whether or not the file is still there (`saved_train_path`)."""
  train = data.get("train_path", "")
  if not train:
    old = os.path.join(workdir, "lake", "train.jsonl")
    from lead_jax.data import synthetic  # only the default needs the generator
    train = old if os.path.isfile(old) else os.path.join(
        synthetic.lake_dir(**data.get("synthetic", {})), "train.jsonl")
  return train


def resolve_paths(data_config, workdir: str | None) -> dict[str, str]:
  """train/test/dev paths; an empty train_path means the synthetic lake, written
  once into the cache root (`cache.cache_root()`) and shared by every run of
  the same `data.synthetic` fields. `workdir` is unused (kept for callers)."""
  del workdir
  paths = {
      "train": data_config.train_path, "test": data_config.test_path, "dev": data_config.dev_path
  }
  if paths["train"]:
    return paths
  from lead_jax.data import synthetic  # only the default needs the generator
  s = data_config.synthetic
  params = dict(seed=s.seed, size=s.size, test_per_task=s.test_per_task,
                dev_per_task=s.dev_per_task, tasks=s.get("tasks", ""), weights=s.get("weights", ""))
  lake = synthetic.write_lake(synthetic.lake_dir(**params), **params)
  return {
      "train": lake["train"], "test": paths["test"] or lake["test"],
      "dev": paths["dev"] or lake["dev"]
  }


def read_records(data_config, path: str) -> tuple[list[Record], list[Reject]]:
  """Validated records of a pool file or prepared tfds directory (`dir#split`)."""
  if is_tfds(data_config, path):
    return tfds_builder.read_records(path), []
  result = formats.read(path, data_config.format, data_config.task_name, data_config.on_error,
                        data_config.max_record_bytes)
  return list(result.records), list(result.rejects)


def load_pool(data_config, tokenizer, workdir: str | None = None,
              path: str | None = None) -> pool_lib.Pool:
  """Reads, validates, tokenises and caches a pool (path defaults to data.train_path)."""
  path = path or resolve_paths(data_config, workdir)["train"]
  template = templates.resolve(tokenizer, data_config.template)
  task_lengths = pool_lib.parse_task_lengths(data_config.max_length_per_task,
                                             data_config.max_length)
  buckets = normalize_buckets(tuple(data_config.buckets), data_config.max_length)
  fp = artifacts.fingerprint({
      "version": cache.CACHE_VERSION, "source": _source_digest(data_config, path), "path": path,
      "tokenizer": cache.tokenizer_digest(tokenizer), "template": template.fingerprint,
      "max_length": data_config.max_length, "task_lengths": task_lengths,
      **{k: data_config[k] for k in ("format", "task_name", "on_error", "max_record_bytes")}
  })
  cache_path = (
      os.path.join(workdir, "data", f"pool-{fp}.npz") if workdir and data_config.cache else None)
  cached = cache.load(cache_path, fp) if cache_path else None
  if cached is not None:
    log.info("pool cache hit: %s (%d samples)", cache_path, len(cached))
    return dataclasses.replace(cached, buckets=buckets)
  records, rejects = read_records(data_config, path)
  pool, excluded = pool_lib.build(records, tokenizer, template, data_config.max_length,
                                  task_lengths)
  if not len(pool):
    raise DataError(f"{path}: every record was excluded ({len(excluded)} had no response "
                    "left after truncation); raise data.max_length")
  stats = dict(pool.stats, rejected=len(rejects),
               rejected_by_reason=dict(collections.Counter(r.reason for r in rejects)))
  if (rejects or excluded) and artifacts.is_writer():
    stats["rejects_report"] = _report(path, workdir, rejects + excluded)
  pool = dataclasses.replace(pool, fingerprint=fp, buckets=buckets, stats=stats)
  if cache_path and artifacts.is_writer():
    cache.save(pool, cache_path)
  log.info("pool %s: %d samples, %d tokens, %d truncated, %d excluded, %d rejected", path,
           len(pool), stats["tokens"], stats["truncated"], stats["excluded_truncated"],
           stats["rejected"])
  return pool


def is_tfds(data_config, path: str) -> bool:
  """`path` is read as a prepared tfds pool (data.format tfds, or auto and prepared)."""
  return data_config.format == "tfds" or (data_config.format == "auto" and
                                          tfds_builder.is_prepared(path))


def _source_digest(data_config, path: str) -> str:
  if is_tfds(data_config, path):
    return cache.file_digest(tfds_builder.dataset_dir(path))
  formats.check_file(path)
  return cache.file_digest(path)


def normalize_buckets(buckets: tuple[int, ...], max_length: int) -> tuple[int, ...]:
  """Sorted batch lengths ending with max_length; each in [1, max_length]."""
  for b in buckets:
    if not 0 < int(b) <= max_length:
      raise DataError(f"data.buckets holds {b}; every bucket must be in "
                      f"[1, data.max_length={max_length}]")
  return tuple(sorted({int(b) for b in buckets} | {max_length}))


def _report(path: str, workdir: str | None, rejects: list[Reject]) -> str:
  out_dir = os.path.join(workdir, "data") if workdir else os.path.dirname(path) or "."
  out = os.path.join(out_dir, os.path.basename(path.rstrip("/")) + ".rejects.jsonl")
  artifacts.write_text(
      out, "".join(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n" for r in rejects))
  counts = collections.Counter(r.reason for r in rejects)
  log.warning("%s: %d records dropped (%s); list in %s", path, len(rejects),
              ", ".join(f"{k}={v}" for k, v in sorted(counts.items())), out)
  return out
