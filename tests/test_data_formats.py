"""Readers for every pool format and every bad-input case, in both error modes."""

import json
import os
import re

import pytest

from lead_jax.data import formats, jsonio
from lead_jax.data.errors import DataError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
GOOD = {
    "dataset": "t", "id": "a", "messages": [{"role": "user", "content": "q"},
                                            {"role": "assistant", "content": "r"}]
}


def fixture(name):
  return os.path.join(FIXTURES, name)


def line(**overrides):
  return json.dumps({**GOOD, **overrides})


def test_messages_jsonl():
  recs = formats.read(fixture("messages.jsonl")).records
  assert [r.id for r in recs] == ["flan_v2_0", "oasst1_7", "messages:2", "42"]
  assert [r.task for r in recs] == ["flan_v2", "oasst1", "cot", "messages"]
  assert recs[1].messages[0] == ("system", "Be brief.")
  assert [r for r, _ in recs[1].messages].count("assistant") == 2
  assert recs[3].messages[1][1] == "Bonjour ! Ça va ?"
  assert recs[0].where == fixture("messages.jsonl") + ":1"


def test_task_name_fills_missing_dataset():
  recs = formats.read(fixture("messages.jsonl"), task_name="mine").records
  assert [r.task for r in recs] == ["flan_v2", "oasst1", "cot", "mine"]


@pytest.mark.parametrize("name", ["alpaca.json", "alpaca.jsonl"])
def test_alpaca(name):
  recs = formats.read(fixture(name)).records
  first = recs[0].messages
  if name == "alpaca.json":
    assert first == (("user", "Give the opposite of the word.\n\nhot"), ("assistant", "cold"))
    assert recs[1].messages[0] == ("user", "Write a haiku about rain.")  # no input
    assert [r.task for r in recs] == ["alpaca", "alpaca", "math"]
    assert recs[0].where.endswith("alpaca.json:2 ($[0])")
  else:
    assert recs[1].messages == (("user", "Say hi."), ("assistant", "Hi!"))


def test_sharegpt():
  recs = formats.read(fixture("sharegpt.json"), task_name="sharegpt").records
  assert recs[0].messages == (("user", "Summarise: cats sleep a lot."),
                              ("assistant", "Cats sleep much of the day."))
  assert [r for r, _ in recs[1].messages] == ["system", "user", "assistant", "user", "assistant"]
  assert {r.task for r in recs} == {"sharegpt"}


def test_explicit_format_mismatch_names_the_missing_field():
  with pytest.raises(DataError, match=r"alpaca.json:2 \(\$\[0\]\).*missing 'messages'"):
    formats.read(fixture("alpaca.json"), fmt="messages")


def test_bom_is_accepted(tmp_path):
  path = tmp_path / "bom.jsonl"
  path.write_bytes(b"\xef\xbb\xbf" + line().encode() + b"\n")
  assert formats.read(str(path)).records[0].id == "a"
  arr = tmp_path / "bom.json"
  arr.write_bytes(b"\xef\xbb\xbf[" + line().encode() + b"]")
  assert formats.read(str(arr)).records[0].id == "a"


# (name, file bytes, reason code, what the message must say)
BAD_RECORDS = [
    ("invalid_json", b'{"dataset": "t", "id": "b", "messages": [}\n', "invalid_json",
     "invalid JSON"),
    ("truncated", b'{"dataset": "t", "id": "b", "messages": [{"role": "us', "truncated",
     "truncated"),
    ("not_object", b'["user", "q"]\n', "not_object", "not an object"),
    ("missing_messages", b'{"dataset": "t", "id": "b"}\n', "missing_messages",
     "missing 'messages'"),
    ("empty_messages", line(id="b", messages=[]).encode() + b"\n", "empty_messages",
     "'messages' is empty"),
    ("unknown_role", line(id="b", messages=[{"role": "bot", "content": "x"}]).encode() + b"\n",
     "unknown_role", "unknown role 'bot'"),
    ("non_string_content",
     line(id="b", messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}
                           ]).encode() + b"\n", "bad_content", "content is a int, not a string"),
    ("no_assistant", line(id="b", messages=[{"role": "user", "content": "q"}]).encode() + b"\n",
     "no_assistant", "no assistant turn"),
    ("empty_assistant",
     line(id="b", messages=[{"role": "user", "content": "q"},
                            {"role": "assistant", "content": "  "}]).encode() + b"\n",
     "empty_assistant", "assistant turn has empty content"),
    ("duplicate_id", line().encode() + b"\n", "duplicate_id", "duplicate id 'a'"),
    ("invalid_utf8", b'{"dataset": "t", "id": "b", "messages": "\xff\xfe"}\n', "invalid_utf8",
     "invalid UTF-8 (byte 0xff"),
    ("over_size_limit",
     line(id="b", messages=[{"role": "user", "content": "q" * 5000},
                            {"role": "assistant", "content": "r"}]).encode() + b"\n", "too_large",
     "over the 4096-byte limit"),
]


def _write_bad(tmp_path, name, bad):
  path = tmp_path / f"{name}.jsonl"
  path.write_bytes(line().encode() + b"\n" + bad)  # the good record is line 1
  return str(path)


@pytest.mark.parametrize("name,bad,reason,what", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_bad_record_raises_one_line(tmp_path, name, bad, reason, what):
  path = _write_bad(tmp_path, name, bad)
  with pytest.raises(DataError) as err:
    formats.read(path, max_record_bytes=4096)
  msg = str(err.value)
  assert "\n" not in msg
  assert re.match(re.escape(path) + r":2( \(.*\))?: ", msg), msg
  assert what in msg
  assert "; " in msg and "data.on_error=skip" in msg  # what to do


@pytest.mark.parametrize("name,bad,reason,what", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_bad_record_skipped_and_counted(tmp_path, name, bad, reason, what):
  path = _write_bad(tmp_path, name,
                    bad + (b"" if name == "truncated" else line(id="c").encode() + b"\n"))
  result = formats.read(path, on_error="skip", max_record_bytes=4096)
  assert [r.id for r in result.records] == (["a"] if name == "truncated" else ["a", "c"])
  assert [r.reason for r in result.rejects] == [reason]
  assert result.rejects[0].where.startswith(f"{path}:2")


def test_json_path_in_message(tmp_path):
  path = _write_bad(
      tmp_path, "x",
      line(id="b", messages=[{"role": "user", "content": "q"}, {"role": "robot",
                                                                "content": "r"}]).encode())
  with pytest.raises(DataError, match=r":2 \(messages\[1\]\.role\): unknown role 'robot'"):
    formats.read(path)


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "whitespace"])
def test_bad_files_raise_in_both_modes(tmp_path, kind):
  path = tmp_path / "pool.jsonl"
  if kind == "directory":
    path.mkdir()
  elif kind == "empty":
    path.write_bytes(b"")
  elif kind == "whitespace":
    path.write_bytes(b"\n  \n")
  what = {
      "missing": "file not found", "directory": "is a directory", "empty": "file is empty",
      "whitespace": "file is empty"
  }[kind]
  for mode in ("raise", "skip"):
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {what}"):
      formats.read(str(path), on_error=mode)


def test_truncated_json_array_keeps_complete_records(tmp_path):
  text = json.dumps([GOOD, {**GOOD, "id": "b"}, {**GOOD, "id": "c"}], indent=1)
  path = tmp_path / "cut.json"
  path.write_text(text[:-40])
  with pytest.raises(DataError, match=r"cut.json:\d+ \(\$\[2\]\): file ends inside a record"):
    formats.read(str(path))
  result = formats.read(str(path), on_error="skip")
  assert [r.id for r in result.records] == ["a", "b"]
  assert [r.reason for r in result.rejects] == ["truncated"]


def test_json_array_syntax_error_is_fatal(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text("[" + line() + ", {oops}, " + line(id="z") + "]")
  for mode in ("raise", "skip"):
    with pytest.raises(DataError, match="cannot be resynchronised"):
      formats.read(str(path), on_error=mode)


def test_all_records_bad_raises(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text("[1]\n[2]\n")
  with pytest.raises(DataError, match="no valid records"):
    formats.read(str(path), on_error="skip")


def test_array_elements_report_lines(tmp_path):
  path = tmp_path / "a.json"
  path.write_text("[\n" + line() + ",\n\n" + line(id="b") + "\n]\n")
  where = [w for w, _ in jsonio.iter_json_array(str(path))]
  assert where == [f"{path}:2 ($[0])", f"{path}:4 ($[1])"]


def test_unknown_format_and_policy():
  with pytest.raises(DataError, match="data.format='csv'"):
    formats.read(fixture("messages.jsonl"), fmt="csv")
  with pytest.raises(DataError, match="data.on_error='ignore'"):
    formats.read(fixture("messages.jsonl"), on_error="ignore")
