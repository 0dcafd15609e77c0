"""The diagnostic selectors: oracle (clean tier only, exact budget, the random
draw, determinism; the pool file's tiers and their errors) and replay (the
source run's multiset read from a hand-written selected.jsonl, its errors,
the loop's schedule, and a tiny loop run that trains exactly that multiset)."""

import collections
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from configs import base_lead
from lead_jax import artifacts, outputs, selection
from lead_jax.data import DataError
from lead_jax.loop import iteration
from lead_jax.selection.base import Inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join("tests", "loop_config.py")


def _cfg(**overrides):
  cfg = base_lead.get_select()
  for k, v in overrides.items():
    setattr(cfg, k, v)
  return cfg


def _layout(n):
  return selection.build_layout(np.zeros(n, np.int64), np.arange(n) % 3, 1, 3)


def _one_shot(sel, n, seed):
  state, rng = selection.init_state(n), np.random.default_rng(seed)
  ids = sel.select(state, Inputs(), rng)
  state = selection.record(state, ids)
  assert sel.done(state)
  return ids, state


def test_oracle_takes_the_budget_of_clean_ids_like_random():
  n = 500
  tier_N = np.where(np.random.default_rng(0).random(n) < 0.5, "clean", "noisy")
  cfg = _cfg(budget_samples=120)
  ids, state = _one_shot(selection.make("oracle", cfg, _layout(n), tier_N=tier_N), n, 3)
  assert ids.dtype == np.int64 and ids.size == np.unique(ids).size == 120
  assert state.num_distinct == 120 and (tier_N[ids] == "clean").all()
  again, _ = _one_shot(selection.make("oracle", cfg, _layout(n), tier_N=tier_N), n, 3)
  other, _ = _one_shot(selection.make("oracle", cfg, _layout(n), tier_N=tier_N), n, 4)
  np.testing.assert_array_equal(ids, again)
  assert set(ids.tolist()) != set(other.tolist())
  # an all-clean pool: the very draw of `random` (the same Generator use)
  everything = selection.make("oracle", cfg, _layout(n), tier_N=np.full(n, "clean"))
  rand = selection.make("random", cfg, _layout(n))
  np.testing.assert_array_equal(_one_shot(everything, n, 7)[0], _one_shot(rand, n, 7)[0])


def test_oracle_with_fewer_clean_samples_than_the_budget_takes_them_all(caplog):
  n = 100
  tier_N = np.array(["clean"] * 30 + ["trivial"] * 70)
  with caplog.at_level(logging.WARNING):
    sel = selection.make("oracle", _cfg(budget_samples=50), _layout(n), tier_N=tier_N)
  assert "30 clean samples, fewer than the budget of 50" in caplog.text
  ids, _ = _one_shot(sel, n, 0)
  assert sorted(ids.tolist()) == list(range(30))
  with pytest.raises(ValueError, match="one tier per pool sample"):
    selection.make("oracle", _cfg(budget_samples=5), _layout(n))


def _write_pool(path, rows):
  with open(path, "w") as f:
    for i, tier in rows:
      r = {
          "dataset": "t", "id": i, "messages": [{"role": "user", "content": "q"},
                                                {"role": "assistant", "content": "a"}]
      }
      if tier is not None:
        r["tier"] = tier
      f.write(json.dumps(r) + "\n")
  return str(path)


def _one_line(excinfo, path):
  message = str(excinfo.value)
  assert "\n" not in message and str(path) in message
  return message


def test_tiers_come_from_the_pool_file_in_the_pools_order(tmp_path):
  path = _write_pool(tmp_path / "pool.jsonl", [("a", "clean"), (7, "noisy"), ("c", "clean")])
  tiers = selection.read_tiers(path, np.array(["c", "7", "a"]), 1 << 20)
  assert tiers.tolist() == ["clean", "noisy", "clean"]
  some = _write_pool(tmp_path / "some.jsonl", [("a", "clean"), ("b", None)])
  with pytest.raises(DataError) as e:
    selection.read_tiers(some, np.array(["a", "b"]), 1 << 20)
  assert "needs a `tier` field on every record" in _one_line(e, some)
  none = _write_pool(tmp_path / "none.jsonl", [("a", None), ("b", None)])
  with pytest.raises(DataError) as e:
    selection.read_tiers(none, np.array(["a", "b"]), 1 << 20)
  assert "`tier`" in _one_line(e, none)
  with pytest.raises(DataError) as e:  # a pool sample the file does not label
    selection.read_tiers(path, np.array(["a", "zz"]), 1 << 20)
  assert "'zz'" in _one_line(e, path)
  with pytest.raises(DataError) as e:  # a prepared tfds directory: no records to read
    selection.read_tiers(str(tmp_path), np.array(["a"]), 1 << 20)
  _one_line(e, tmp_path)


@dataclasses.dataclass
class _Pool:
  """What read_replay reads of a data.Pool."""
  source_ids: np.ndarray
  task_N: np.ndarray
  task_names: tuple

  def __len__(self):
    return len(self.source_ids)


def _source(workdir, lines, **final):
  """A finished run's workdir: selected.jsonl `lines` ((source_id, task) or
  (source_id, task, passes)) and final_metrics.json."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "selected.jsonl"), "w") as f:
    for k, line in enumerate(lines):
      r = {"id": k, "source_id": line[0], "task": line[1], "iteration": 0}
      if len(line) > 2:
        r["passes"] = line[2]
      f.write(json.dumps(r) + "\n")
  passes = sum(l[2] if len(l) > 2 else 1 for l in lines)
  artifacts.write_json(
      os.path.join(workdir, "final_metrics.json"),
      {"pool_size": 4, "train_sample_passes": passes, **final})
  return str(workdir)


POOL = _Pool(np.array(["a", "b", "c", "d"]), np.array([0, 0, 1, 1]), ("t1", "t2"))


def test_replay_reads_the_multiset_and_trains_it_in_one_shuffled_pass(tmp_path):
  lines = [("c", "t2"), ("a", "t1"), ("c", "t2"), ("a", "t1"), ("c", "t2"), ("d", "t2", 2)]
  src = _source(tmp_path / "src", lines)
  passes_M = selection.read_replay(src, POOL, str(tmp_path / "pool.jsonl"))
  assert collections.Counter(passes_M.tolist()) == {2: 3, 0: 2, 3: 2}
  cfg = _cfg(budget_fraction=0.25)  # ignored: the budget is the source's distinct count
  sel = selection.make("replay", cfg, _layout(4), passes_M=passes_M)
  assert sel.limits.budget == 3
  ids, state = _one_shot(sel, 4, 0)
  assert ids.tolist() == [0, 2, 3] and state.use_count_N.tolist() == [1, 0, 1, 1]
  # the loop trains the multiset once, shuffled by the run's Generator
  run = types.SimpleNamespace(config=types.SimpleNamespace(method="replay"), selector=sel)
  orders = iteration._schedule(run, ids, np.random.default_rng(0))
  assert len(orders) == 1 and sorted(orders[0].tolist()) == sorted(passes_M.tolist())
  with pytest.raises(ValueError, match="replayed sample-passes"):
    selection.make("replay", cfg, _layout(4))


def test_bad_replay_sources_are_one_line_errors(tmp_path):
  pool_file = _write_pool(tmp_path / "pool.jsonl", [("a", None)])
  cases = []
  with pytest.raises(DataError, match="needs select.replay_from"):
    selection.read_replay("", POOL, pool_file)
  cases.append(tmp_path / "nowhere")
  unfinished = tmp_path / "unfinished"
  os.makedirs(unfinished)
  (unfinished / "selected.jsonl").write_text("")
  cases.append(unfinished)
  no_lines = _source(tmp_path / "no_lines", [("a", "t1")])
  os.remove(os.path.join(no_lines, "selected.jsonl"))
  cases.append(no_lines)
  cases.append(_source(tmp_path / "stranger", [("a", "t1"), ("zz", "t1")]))
  cases.append(_source(tmp_path / "task", [("a", "t2")]))
  cases.append(_source(tmp_path / "size", [("a", "t1")], pool_size=5))
  cases.append(_source(tmp_path / "passes", [("a", "t1")], train_sample_passes=3))
  other = _source(tmp_path / "other_file", [("a", "t1")])
  other_pool = _write_pool(tmp_path / "other.jsonl", [("a", "clean")])
  artifacts.write_json(os.path.join(other, "config.json"), {"data": {"train_path": other_pool}})
  cases.append(other)
  for workdir in cases:
    with pytest.raises(DataError) as e:
      selection.read_replay(str(workdir), POOL, pool_file)
    _one_line(e, workdir)
  # the same pool file named by the source's config: no error
  same = _source(tmp_path / "same", [("a", "t1")])
  artifacts.write_json(os.path.join(same, "config.json"), {"data": {"train_path": pool_file}})
  assert selection.read_replay(same, POOL, pool_file).tolist() == [0]


def _run(env, workdir, *flags):
  return subprocess.run([
      sys.executable, "-m", "experiments.run", "--config", CONFIG, "--workdir",
      str(workdir), "--config.method=replay", "--config.loop.plots=False", *flags
  ], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = tmp_path_factory.getbasetemp() / "jax_cache"
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def _tiny_pool(workdir):
  from lead_jax import data
  from lead_jax.model import tokenizer
  from loop_config import get_config
  config = get_config("replay")
  return data.load_pool(config.data, tokenizer.load(config.data.tokenizer), str(workdir))


@pytest.mark.slow
def test_a_replay_run_trains_exactly_the_source_multiset(env, tmp_path):
  pool = _tiny_pool(tmp_path / "probe")
  task = lambda i: pool.task_names[int(pool.task_N[i])]
  ids = np.random.default_rng(0).choice(len(pool), 12, replace=False)
  # three "iterations" of a source run: 12, then 8 of them again, then 4
  picked = [int(i) for i in np.concatenate([ids, ids[:8], ids[:4]])]
  src = _source(tmp_path / "src", [(str(pool.source_ids[i]), task(i)) for i in picked],
                pool_size=len(pool))
  proc = _run(env, tmp_path / "replay", f"--config.select.replay_from={src}")
  assert proc.returncode == 0, proc.stderr[-4000:]
  final = json.load(open(tmp_path / "replay" / "final_metrics.json"))
  assert final["method"] == "replay" and final["iterations"] == 1
  assert final["samples_selected"] == final["samples_trained"] == 12
  assert final["train_sample_passes"] == 24 and final["train_steps"] == math.ceil(24 / 8)
  assert final["train_token_passes"] == int(pool.length_N[picked].sum())  # the very rows
  lines = outputs.read_jsonl(tmp_path / "replay" / "selected.jsonl")
  assert len(lines) == 12 and all(r["use_count"] == 1 and r["iteration"] == 0 for r in lines)
  assert collections.Counter({r["source_id"]: r["passes"] for r in lines}) == \
      collections.Counter(str(pool.source_ids[i]) for i in picked)
  # a replay of the replay reads the same multiset back
  again = selection.read_replay(str(tmp_path / "replay"), pool, "")
  assert sorted(again.tolist()) == sorted(picked)


@pytest.mark.slow
def test_a_replay_of_an_unfinished_run_stops_before_training(env, tmp_path):
  os.makedirs(tmp_path / "src")
  proc = _run(env, tmp_path / "replay", f"--config.select.replay_from={tmp_path / 'src'}")
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
  assert "final_metrics.json" in lines[0] and "not finished" in lines[0]
  assert not os.path.exists(tmp_path / "replay" / "checkpoints")
