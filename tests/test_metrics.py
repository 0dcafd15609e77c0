"""JSONL and TensorBoard metrics, truncation on resume, the resolved config."""

import glob
import json
import os
import struct

import numpy as np
from tensorboardX.proto import event_pb2

from configs import base as base_config
from lead_jax import metrics


def _tb_scalars(logdir):
  """(tag, step, value) of every scalar in the event files (TFRecord framing)."""
  out = []
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
  return out


def test_jsonl_and_tensorboard(tmp_path):
  writer = metrics.Writer(str(tmp_path))
  writer.write(1, {"loss": np.float32(2.5), "skipped": np.int32(0)})
  writer.write(2, {"loss": 2.0, "g_mean_K": np.zeros(3)}, split="eval")
  writer.close()
  records = metrics.read(str(tmp_path))
  assert records == [{"step": 1, "split": "train", "loss": 2.5, "skipped": 0},
                     {"step": 2, "split": "eval", "loss": 2.0, "g_mean_K": [0.0, 0.0, 0.0]}]
  scalars = _tb_scalars(os.path.join(tmp_path, metrics.TENSORBOARD))
  assert ("train/loss", 1, 2.5) in scalars and ("eval/loss", 2, 2.0) in scalars
  assert not any(tag.endswith("g_mean_K") for tag, _, _ in scalars)


def test_truncate_after_drops_records_written_after_a_checkpoint(tmp_path):
  writer = metrics.Writer(str(tmp_path), tensorboard=False)
  for step in range(1, 6):
    writer.write(step, {"loss": float(step)})
  writer.write(3, {"loss": 0.5}, split="final")
  writer.truncate_after(3, drop_splits=("final",))
  writer.write(4, {"loss": 40.0})
  assert [(r["step"], r["loss"]) for r in metrics.read(str(tmp_path))] == [(1, 1.0), (2, 2.0),
                                                                           (3, 3.0), (4, 40.0)]


def test_disabled_writer_writes_nothing(tmp_path):
  writer = metrics.Writer(str(tmp_path / "w"), enabled=False)
  writer.write(1, {"loss": 1.0})
  writer.truncate_after(0)
  writer.close()
  assert not os.path.exists(tmp_path / "w")


def test_resolved_config_is_saved_as_json(tmp_path):
  config = base_config.get_config()
  path = metrics.write_config(str(tmp_path), config)
  saved = json.load(open(path))
  assert saved["train"]["batch_size"] == config.train.batch_size
  assert saved["data"]["tokenizer"] == "byte_level"
