"""lead_jax.artifacts: the fingerprint, atomic writes and the npz cache, on real files."""

import json
import os

import numpy as np
import pytest

from lead_jax import artifacts


def test_fingerprint_is_stable_and_order_free():
  parts = {"pool": "abc", "model": "m", "seed": 0, "nested": {"b": [1, 2], "a": 1.5}}
  fp = artifacts.fingerprint(parts)
  assert len(fp) == artifacts.FINGERPRINT_CHARS and int(fp, 16) >= 0
  assert artifacts.fingerprint(dict(reversed(list(parts.items())))) == fp
  assert artifacts.fingerprint({**parts, "nested": {"a": 1.5, "b": [1, 2]}}) == fp
  # a pinned value: the key of every cached file; it changes only on purpose
  assert artifacts.fingerprint({"version": 1, "a": [1, "x"]}) == "f5bca56e99ddb274ef8edb27"


def test_fingerprint_is_sensitive():
  base = {"pool": "abc", "seed": 0, "lr": 1e-3, "targets": ["q", "v"]}
  fp = artifacts.fingerprint(base)
  changed = [{**base, "seed": 1}, {**base, "lr": 1.0001e-3}, {**base, "targets": ["v", "q"]},
             {**base, "pool": "abd"}, {**base,
                                       "extra": None}, {k: base[k] for k in ("pool", "seed")}]
  fps = [artifacts.fingerprint(c) for c in changed]
  assert fp not in fps and len(set(fps)) == len(fps)
  assert artifacts.fingerprint({"x": 1}) != artifacts.fingerprint({"x": "1"})


def test_fingerprint_takes_non_json_values_by_str():

  class Thing:

    def __str__(self):
      return "thing-1"

  assert artifacts.fingerprint({"t": Thing()}) == artifacts.fingerprint({"t": "thing-1"})


def test_write_json_and_text(tmp_path):
  path = str(tmp_path / "sub" / "report.json")  # the folder is created
  artifacts.write_json(path, {"b": float("nan"), "a": [1, 2], "name": "é"})
  text = open(path, encoding="utf-8").read()
  assert text.endswith("\n") and text.index('"a"') < text.index('"b"') and "\\u00e9" in text
  assert json.loads(text)["a"] == [1, 2]
  artifacts.write_json(path, {"name": "é"}, indent=None, ensure_ascii=False)
  assert open(path, encoding="utf-8").read() == '{"name": "é"}\n'
  artifacts.write_text(path, "plain")
  assert open(path, encoding="utf-8").read() == "plain"
  artifacts.write_bytes(path, b"\x00\x01")
  assert open(path, "rb").read() == b"\x00\x01"
  assert os.listdir(tmp_path / "sub") == ["report.json"]


@pytest.mark.parametrize("existing", [False, True])
def test_atomic_write_leaves_no_partial_file(tmp_path, existing):
  path = tmp_path / "out.txt"
  if existing:
    path.write_text("old")
  with pytest.raises(RuntimeError, match="writer died"):
    with artifacts.atomic_write(str(path)) as f:
      f.write("half of the new cont")
      f.flush()
      assert (path.read_text() == "old") if existing else not path.exists()
      raise RuntimeError("writer died")
  assert (path.read_text() == "old") if existing else not path.exists()
  assert os.listdir(tmp_path) == (["out.txt"] if existing else [])


def test_atomic_write_with_failing_serialiser(tmp_path):
  """json.dumps of an unserialisable object, and np.savez of a bad array, raise
  before or during the write: nothing is left behind."""
  path = str(tmp_path / "r.json")
  artifacts.write_json(path, {"ok": 1})
  with pytest.raises(TypeError):
    artifacts.write_json(path, {"bad": object()})
  assert json.load(open(path)) == {"ok": 1}
  with pytest.raises(ValueError):
    artifacts.save_npz(str(tmp_path / "a.npz"), {"x": np.ones(2), artifacts.META: np.ones(1)})
  assert sorted(os.listdir(tmp_path)) == ["r.json"]
  with pytest.raises(ValueError, match="mode"):
    with artifacts.atomic_write(path, "a"):
      pass


def test_npz_round_trip(tmp_path):
  path = str(tmp_path / "a.npz")
  arrays = {"x": np.arange(5, dtype=np.float32), "ids": np.array([3, 1])}
  artifacts.save_npz(path, arrays, {"cost": {"f": 2}, "seconds": 0.5})
  got, meta = artifacts.load_npz(path)
  assert meta == {"cost": {"f": 2}, "seconds": 0.5} and set(got) == {"x", "ids"}
  np.testing.assert_array_equal(got["x"], arrays["x"])
  assert got["x"].dtype == np.float32
  artifacts.save_npz(path, {"idu_N": np.ones(3)})  # no meta: a plain npz
  with np.load(path) as z:
    assert z.files == ["idu_N"]
  assert artifacts.load_npz(path)[1] == {}
  assert artifacts.load_npz(str(tmp_path / "absent.npz")) is None


def test_unreadable_npz_is_a_miss(tmp_path):
  path = tmp_path / "a.npz"
  path.write_bytes(b"PK\x03\x04 not really a zip")
  assert artifacts.load_npz(str(path)) is None
  artifacts.save_npz(str(path), {"x": np.ones(4)}, {"k": 1})
  path.write_bytes(path.read_bytes()[:40])  # cut off mid-file
  assert artifacts.load_npz(str(path)) is None


def test_cached_npz_hit_and_miss_on_meta(tmp_path):
  path = str(tmp_path / "art-1.npz")
  calls = []

  def compute(value):

    def f():
      calls.append(value)
      return {"v": np.full(3, value)}, {"seconds": 1.0}

    return f

  arrays, meta, computed = artifacts.cached_npz(path, compute(1), expect={"fingerprint": "a"})
  assert computed and calls == [1] and meta == {"seconds": 1.0, "fingerprint": "a"}
  arrays, meta, computed = artifacts.cached_npz(path, compute(2), expect={"fingerprint": "a"})
  assert not computed and calls == [1] and arrays["v"].tolist() == [1, 1, 1]
  assert meta == {"seconds": 1.0, "fingerprint": "a"}
  # same file, another expected meta: recomputed and overwritten
  arrays, meta, computed = artifacts.cached_npz(path, compute(3), expect={"fingerprint": "b"})
  assert computed and calls == [1, 3] and arrays["v"].tolist() == [3, 3, 3]
  assert artifacts.load_npz(path, {"fingerprint": "a"}) is None
  assert artifacts.load_npz(path, {"fingerprint": "b"})[0]["v"].tolist() == [3, 3, 3]
  # reuse=False always computes (and still writes for later runs)
  _, _, computed = artifacts.cached_npz(path, compute(4), expect={"fingerprint": "b"}, reuse=False)
  assert computed and calls == [1, 3, 4]
  assert artifacts.load_npz(path)[0]["v"].tolist() == [4, 4, 4]
  assert os.listdir(tmp_path) == ["art-1.npz"]


def test_cached_npz_compute_error_writes_nothing(tmp_path):
  path = str(tmp_path / "art.npz")

  def fail():
    raise KeyboardInterrupt  # a kill mid-compute

  with pytest.raises(KeyboardInterrupt):
    artifacts.cached_npz(path, fail)
  assert os.listdir(tmp_path) == []


def test_a_flipped_byte_anywhere_is_a_miss_or_harmless(tmp_path, caplog):
  """Every byte of a small npz flipped in turn: load_npz returns None (and
  warns) or the very arrays and meta that were saved; never other values."""
  arrays = {"x_N": np.arange(40.0), "ids_N": np.arange(6, dtype=np.int32)}
  path = str(tmp_path / "a.npz")
  artifacts.save_npz(path, arrays, {"fp": "abc"})
  blob = open(path, "rb").read()
  outcomes = {"miss": 0, "same": 0}
  for pos in range(len(blob)):
    damaged = bytearray(blob)
    damaged[pos] ^= 0xFF
    with open(tmp_path / "b.npz", "wb") as f:
      f.write(damaged)
    got = artifacts.load_npz(str(tmp_path / "b.npz"), {"fp": "abc"})
    if got is None:
      outcomes["miss"] += 1
      continue
    assert got[1] == {"fp": "abc"} and set(got[0]) == set(arrays), pos
    for k, x in arrays.items():
      np.testing.assert_array_equal(got[0][k], x)
    outcomes["same"] += 1
  assert outcomes["miss"] > 0  # the rest hit fields no reader uses (zip times, versions)
  assert "recomputing it" in caplog.text
