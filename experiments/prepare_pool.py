r"""Prepare a pool once as a tensorflow-datasets directory (array_record shards).

  python -m experiments.prepare_pool --train=pool.jsonl [--test=test.jsonl] \
      [--dev=dev.jsonl] --data_dir=/shared/tfds --name=my_pool [--format=auto] \
      [--task_name=] [--on_error=raise] [--overwrite]

Every split is read and validated first (the data layer's rules and its
one-line errors); nothing is written unless all of them pass (or, with
--on_error=skip, bad records are dropped and listed in
<data_dir>/<name>.rejects.jsonl). Then runs on any host use
  --config.data.train_path=<data_dir>/instruction_pool/<name>/1.0.0
  --config.data.test_path=<data_dir>/instruction_pool/<name>/1.0.0#test
Seconds for the synthetic lake; about a minute per million records on a CPU.
"""

import json
import os
import sys

from absl import app
from absl import flags

from lead_jax.data import formats, tfds_builder
from lead_jax.data.errors import DataError

_TRAIN = flags.DEFINE_string("train", None, "Pool file (messages/alpaca/sharegpt).")
_TEST = flags.DEFINE_string("test", "", "Optional held-out file, split 'test'.")
_DEV = flags.DEFINE_string("dev", "", "Optional dev file, split 'dev'.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data directory to write into.")
_NAME = flags.DEFINE_string("name", None, "Pool name (the builder config).")
_FORMAT = flags.DEFINE_enum("format", "auto", list(formats.FORMATS), "Input format.")
_TASK = flags.DEFINE_string("task_name", "", "Task of records without `dataset`.")
_ON_ERROR = flags.DEFINE_enum("on_error", "raise", ["raise", "skip"], "Bad-record policy.")
_MAX_BYTES = flags.DEFINE_integer("max_record_bytes", 4 << 20, "Size limit per record.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild an existing prepared pool.")


def prepare() -> str:
  splits, rejects = {}, []
  for split, path in (("train", _TRAIN.value), ("test", _TEST.value), ("dev", _DEV.value)):
    if path:
      result = formats.read(path, _FORMAT.value, _TASK.value, _ON_ERROR.value, _MAX_BYTES.value)
      splits[split] = result.records
      rejects += result.rejects
      print(f"{split}: {len(result.records)} records from {path}, "
            f"{len(result.rejects)} rejected")
  out = tfds_builder.prepare(splits, _DATA_DIR.value, _NAME.value, _OVERWRITE.value)
  if rejects:
    report = os.path.join(_DATA_DIR.value, f"{_NAME.value}.rejects.jsonl")
    with open(report, "w", encoding="utf-8") as f:
      for r in rejects:
        f.write(
            json.dumps({"where": r.where, "reason": r.reason, "message": r.message},
                       ensure_ascii=False) + "\n")
    print(f"rejects report: {report}")
  return out


def main(argv):
  del argv
  try:
    out = prepare()
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"prepared: {out}")
  print(f"use: --config.data.train_path={out}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["train", "data_dir", "name"])
  app.run(main)
