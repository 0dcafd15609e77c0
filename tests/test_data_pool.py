"""Pool building: truncation rule, exclusion, per-task limits, fingerprint cache, reports."""

import json
import os

import numpy as np
import pytest

from configs import base_data
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import load_pool, templates, truncation_keep
from lead_jax.data.errors import DataError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
C, H, R = templates.CONTEXT, templates.HEADER, templates.RESPONSE


@pytest.fixture(scope="module")
def tok():
  return tokenizer_lib.byte_level()


def config(**overrides):
  c = base_data.get()
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def record(i, prompt, response, task="t"):
  return json.dumps({
      "dataset": task, "id": f"r{i}", "messages": [{"role": "user", "content": prompt},
                                                   {"role": "assistant", "content": response}]
  })


def write(path, lines):
  path.write_text("".join(l + "\n" for l in lines))
  return str(path)


def test_truncation_rule_by_hand():
  kinds = np.array([C] * 10 + [H] * 2 + [R] * 8)  # P = 10, R part = 10
  assert list(truncation_keep(kinds, 20)) == list(range(20))  # fits: untouched
  # limit 16: prompt keeps max(16 - 10, 8) = 8 of its tail, response part its head of 8.
  assert list(truncation_keep(kinds, 16)) == list(range(2, 10)) + list(range(10, 18))
  # long prompt, short response part: the response part is kept whole.
  kinds = np.array([C] * 30 + [H] * 2 + [R] * 3)
  assert list(truncation_keep(kinds, 10)) == list(range(25, 30)) + list(range(30, 35))
  # short prompt, long response: the prompt is kept whole, the response's head.
  kinds = np.array([C] * 3 + [H] * 2 + [R] * 30)
  assert list(truncation_keep(kinds, 10)) == list(range(10))


def test_pool_arrays_and_masks(tok, tmp_path):
  pool = load_pool(config(), tok, path=os.path.join(FIXTURES, "messages.jsonl"))
  assert len(pool) == 4 and list(pool.ids_N) == [0, 1, 2, 3]
  assert list(pool.source_ids) == ["flan_v2_0", "oasst1_7", "messages:2", "42"]
  assert [pool.task_names[t] for t in pool.task_N] == ["flan_v2", "oasst1", "cot", "messages"]
  tokens, loss = pool.row(1)
  assert tok.decode(tokens[loss],
                    skip_special_tokens=False) == ("Blue.<|endoftext|>Green.<|endoftext|>")
  view, view_loss = pool.row(1, "response")
  assert tok.decode(view, skip_special_tokens=False) == (
      "<|assistant|>\nBlue.<|endoftext|><|assistant|>\nGreen.<|endoftext|>")
  assert pool.view_length_N[1] == len(view) and view_loss.sum() == loss.sum()
  assert pool.tokens_F.dtype == np.int32 and pool.length_N.sum() == len(pool.tokens_F)


def test_truncation_and_exclusion_are_counted(tok, tmp_path):
  path = write(
      tmp_path / "p.jsonl",
      [
          record(0, "short", "ok"),  # 8 prompt + 2 header + 3 response tokens: fits in 40
          record(1, "p" * 60, "r" * 60),  # 63 + 63 tokens: prompt tail 20 + response head 20
          record(2, "q" * 10, "s" * 10, task="tight")
      ])  # fits 40, not its task limit 12
  c = config(max_length=40, max_length_per_task="tight=12")
  pool = load_pool(c, tok, workdir=str(tmp_path / "wd"), path=path)
  assert list(pool.length_N) == [13, 40, 12] and list(pool.truncated_N) == [False, True, True]
  tokens, loss = pool.row(1)
  text = tok.decode(tokens, skip_special_tokens=False)
  assert text == "p" * 19 + "\n<|assistant|>\n" + "r" * 18
  assert loss.sum() == 18
  assert pool.stats["truncated"] == 2 and pool.stats["excluded_truncated"] == 0
  # A limit below the header leaves no response token: excluded, counted, reported.
  c = config(max_length=40, max_length_per_task="tight=1")
  pool = load_pool(c, tok, workdir=str(tmp_path / "wd2"), path=path)
  assert list(pool.source_ids) == ["r0", "r1"] and pool.stats["excluded_truncated"] == 1
  with open(pool.stats["rejects_report"]) as f:
    assert json.loads(f.readline())["reason"] == "response_truncated"


def test_bad_task_lengths(tok):
  for spec in ("t=0", "t=999", "t"):
    with pytest.raises(DataError, match="max_length_per_task"):
      load_pool(
          config(max_length_per_task=spec), tok, path=os.path.join(FIXTURES, "messages.jsonl"))


def test_cache_hit_and_miss(tok, tmp_path):
  path = write(tmp_path / "p.jsonl", [record(i, f"q{i}", f"a{i}") for i in range(5)])
  wd = str(tmp_path / "wd")
  first = load_pool(config(), tok, wd, path)
  files = sorted(os.listdir(os.path.join(wd, "data")))
  assert len(files) == 1 and files[0] == f"pool-{first.fingerprint}.npz"
  hit = load_pool(config(), tok, wd, path)
  assert hit.fingerprint == first.fingerprint and hit is not first
  for name in ("tokens_F", "loss_mask_F", "view_mask_F", "start_N", "task_N"):
    np.testing.assert_array_equal(getattr(hit, name), getattr(first, name))
  assert list(hit.source_ids) == list(first.source_ids)
  assert load_pool(config(max_length=64), tok, wd, path).fingerprint != first.fingerprint
  other_tok = tokenizer_lib.byte_level()
  other_tok.add_special_tokens({"additional_special_tokens": ["<|x|>"]})
  assert load_pool(config(), other_tok, wd, path).fingerprint != first.fingerprint
  write(tmp_path / "p.jsonl", [record(i, f"q{i}", f"b{i}") for i in range(5)])
  changed = load_pool(config(), tok, wd, path)
  assert changed.fingerprint != first.fingerprint
  assert len(os.listdir(os.path.join(wd, "data"))) == 4
  buckets = load_pool(config(buckets=(32,)), tok, wd, path)
  assert buckets.fingerprint == changed.fingerprint and buckets.buckets == (32, 160)


def test_raise_writes_nothing_and_skip_writes_a_report(tok, tmp_path):
  path = write(tmp_path / "p.jsonl",
               [record(0, "q", "a"), "{broken",
                record(0, "q", "a"),
                record(1, "q", "a")])
  wd = tmp_path / "wd"
  with pytest.raises(DataError, match=r"p.jsonl:2: invalid JSON"):
    load_pool(config(), tok, str(wd), path)
  assert not wd.exists()
  pool = load_pool(config(on_error="skip"), tok, str(wd), path)
  assert list(pool.source_ids) == ["r0", "r1"]
  assert pool.stats["rejected_by_reason"] == {"invalid_json": 1, "duplicate_id": 1}
  with open(pool.stats["rejects_report"]) as f:
    rows = [json.loads(l) for l in f]
  assert [r["reason"] for r in rows] == ["invalid_json", "duplicate_id"]
  assert rows[0]["where"].endswith("p.jsonl:2")


def test_config_builds_and_locks():
  c = base_data.get()
  assert c.is_locked
  with pytest.raises(AttributeError):
    c.trian_path = "typo"
  with pytest.raises(DataError, match="data.buckets"):
    load_pool(
        config(buckets=(500,)), tokenizer_lib.byte_level(),
        path=os.path.join(FIXTURES, "messages.jsonl"))
