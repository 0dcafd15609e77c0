"""Prepared tfds pools (array_record, no TensorFlow): round trip and reuse."""

import json
import os

import numpy as np
import pytest

from configs import base_data
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import load_pool, read, tfds_builder
from lead_jax.data.errors import DataError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  train = read(os.path.join(FIXTURES, "messages.jsonl")).records
  test = read(os.path.join(FIXTURES, "sharegpt.json")).records
  out = tfds_builder.prepare({"train": train, "test": test}, str(tmp_path_factory.mktemp("tfds")),
                             "fixture")
  return out, train, test


def test_round_trip_records(prepared):
  out, train, test = prepared
  assert out.endswith(os.path.join("instruction_pool", "fixture", "1.0.0"))
  assert tfds_builder.is_prepared(out)
  assert tfds_builder.read_records(out) == list(train)
  assert tfds_builder.read_records(out + "#test") == list(test)
  with pytest.raises(DataError, match="no split 'dev'"):
    tfds_builder.read_records(out + "#dev")


def test_pool_from_tfds_equals_pool_from_file(prepared, tmp_path):
  out, _, _ = prepared
  tok = tokenizer_lib.byte_level()
  direct = load_pool(base_data.get(), tok, path=os.path.join(FIXTURES, "messages.jsonl"))
  via_tfds = load_pool(base_data.get(), tok, workdir=str(tmp_path), path=out)
  for name in ("tokens_F", "loss_mask_F", "view_mask_F", "length_N", "task_N"):
    np.testing.assert_array_equal(getattr(direct, name), getattr(via_tfds, name))
  assert list(direct.source_ids) == list(via_tfds.source_ids)
  assert load_pool(base_data.get(), tok, str(tmp_path), out).fingerprint == via_tfds.fingerprint


def test_prepare_refuses_to_overwrite(prepared):
  out, train, _ = prepared
  data_dir = out.split(os.sep + "instruction_pool")[0]
  with pytest.raises(DataError, match="already prepared"):
    tfds_builder.prepare({"train": train}, data_dir, "fixture")
  rebuilt = tfds_builder.prepare({"train": train[:2]}, data_dir, "fixture", overwrite=True)
  assert len(tfds_builder.read_records(rebuilt)) == 2
  tfds_builder.prepare({"train": train}, data_dir, "fixture", overwrite=True)


def test_not_prepared(tmp_path):
  with pytest.raises(DataError, match="not a prepared pool"):
    tfds_builder.read_records(str(tmp_path))
