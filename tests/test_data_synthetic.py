"""The synthetic lake: determinism, tasks and tiers, held-out sets disjoint from the pool."""

import collections
import filecmp
import json
import os

import pytest

from configs import base_data
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import load_pool, resolve_paths, synthetic, synthetic_tasks

SIZE = 1200


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
  return synthetic.write_lake(
      str(tmp_path_factory.mktemp("lake")), seed=3, size=SIZE, test_per_task=20, dev_per_task=5)


def rows(path):
  with open(path) as f:
    return [json.loads(l) for l in f]


def test_deterministic_for_a_seed(lake, tmp_path):
  again = synthetic.write_lake(
      str(tmp_path / "a"), seed=3, size=SIZE, test_per_task=20, dev_per_task=5)
  for key in ("train", "test", "dev", "manifest"):
    assert filecmp.cmp(lake[key], again[key], shallow=False), key
  other = synthetic.write_lake(
      str(tmp_path / "b"), seed=4, size=SIZE, test_per_task=20, dev_per_task=5)
  assert not filecmp.cmp(lake["train"], other["train"], shallow=False)


def test_rewrite_is_skipped_when_present(lake):
  before = {k: open(p).read() for k, p in lake.items()}
  synthetic.write_lake(lake["train"].rsplit("/", 1)[0], seed=3, size=SIZE, test_per_task=20,
                       dev_per_task=5)
  assert {k: open(p).read() for k, p in lake.items()} == before


def test_tasks_tiers_and_sizes(lake):
  train = rows(lake["train"])
  assert len(train) == SIZE and len({r["id"] for r in train}) == SIZE
  tasks = collections.Counter(r["dataset"] for r in train)
  assert len(tasks) >= 8
  tiers = collections.Counter(r["tier"] for r in train)
  assert set(tiers) == set(synthetic.TIERS)
  for tier, share in synthetic.SHARES.items():
    assert abs(tiers[tier] / SIZE - share) < 0.01, tier
  refusals = [r for r in train if r["tier"] == "refusal"]
  assert {r["messages"][1]["content"] for r in refusals} <= set(synthetic.REFUSALS)
  noisy = collections.Counter(r["dataset"] for r in train if r["tier"] == "noisy")
  assert noisy["word_problem"] > 3 * noisy["copy"]  # per-task noise rates differ
  test = rows(lake["test"])
  assert collections.Counter(r["dataset"] for r in test) == {t: 20 for t in tasks}
  assert len(rows(lake["dev"])) == 5 * len(tasks)
  manifest = json.load(open(lake["manifest"]))
  assert manifest["seed"] == 3 and set(manifest["task_info"]) == set(tasks)


def test_task_subset(tmp_path):
  names = "size,parity,city"
  train, test, _, counts = synthetic.generate(seed=0, size=300, test_per_task=10, dev_per_task=2,
                                              tasks=names)
  assert {r["dataset"] for r in train} == {r["dataset"] for r in test} == set(names.split(","))
  assert list(counts) == ["parity", "size", "city"]  # TASKS order, whatever the list's
  assert len(train) == 300
  assert synthetic.lake_dir(tasks=names) != synthetic.lake_dir()
  assert synthetic.lake_dir(tasks="") == synthetic.lake_dir()  # "" = every task, as before
  paths = synthetic.write_lake(str(tmp_path), size=300, test_per_task=10, tasks=names)
  assert json.load(open(paths["manifest"]))["task_info"].keys() == set(names.split(","))
  with pytest.raises(ValueError, match="unknown task.*parody.*choose from"):
    synthetic.select_tasks("parity,parody")


def test_label_tasks_follow_their_rules():
  names = "vowel,last_digit,size"
  train, test, _, _ = synthetic.generate(seed=2, size=900, test_per_task=40, dev_per_task=2,
                                         tasks=names)
  rules = {
      "vowel": lambda x: "vowel" if x[-1] in "aeiou" else "consonant",
      "last_digit": lambda x: synthetic_tasks.DIGITS[int(x[-1])],
      "size": lambda x: "big" if int(x) >= 5000 else "small"
  }
  for r in train + test:
    if r.get("tier", "clean") in ("clean", "duplicate", "trivial"):
      x = synthetic_tasks.instance_key(r["input"])
      assert r["messages"][1]["content"] == rules[r["dataset"]](x), r
  for task in ("vowel", "size"):  # both labels common in the test set
    labels = collections.Counter(r["messages"][1]["content"] for r in test if r["dataset"] == task)
    assert min(labels.values()) >= 10, labels


def test_answers_are_right_except_noisy():
  train, test, _, _ = synthetic.generate(seed=1, size=600, test_per_task=10, dev_per_task=2)
  fns = {
      "copy": lambda s: s, "uppercase": str.upper, "reverse": lambda s: s[::-1],
      "sort": lambda s: "".join(sorted(s))
  }
  checked = 0
  for r in train + test:
    if r["dataset"] in fns and r.get("tier") != "overlong":
      right = fns[r["dataset"]](r["input"]) == r["messages"][1]["content"]
      assert right == (r.get("tier") not in ("noisy", "verbose", "off_format", "refusal")), r
      if r.get("tier") in ("verbose", "off_format"):  # the right answer, in another form
        assert fns[r["dataset"]](r["input"]) in r["messages"][1]["content"], r
      checked += 1
    if r["dataset"] == "add" and "+" in r["input"]:
      a, b = r["input"].rsplit("\n", 1)[-1].split(" + ")
      right = str(int(a) + int(b)) == r["messages"][1]["content"]
      assert right == (r.get("tier") in ("clean", "duplicate", "trivial", "overlong", None))
  assert checked > 100


def test_held_out_sets_are_disjoint_from_the_pool():
  train, test, dev, _ = synthetic.generate(seed=0, size=2000, test_per_task=30, dev_per_task=5)
  pool_inputs = {(r["dataset"], r["input"].rsplit("\n\n", 1)[-1]) for r in train}
  held = [(r["dataset"], r["input"]) for r in test + dev]
  assert len(set(held)) == len(held)
  assert not pool_inputs & set(held)
  assert not {r["messages"][0]["content"]
              for r in train} & {r["messages"][0]["content"] for r in test + dev}


def test_overlong_tier_exceeds_the_default_length(lake):
  c = base_data.get()
  c.max_length = 4096
  pool = load_pool(c, tokenizer_lib.byte_level(), path=lake["train"])
  tiers = [r["tier"] for r in rows(lake["train"])]
  lengths = collections.defaultdict(list)
  for tier, n in zip(tiers, pool.length_N):
    lengths[tier].append(n)
  assert min(lengths["overlong"]) > base_data.get().max_length
  assert max(lengths["clean"]) <= base_data.get().max_length
  mean = {k: sum(v) / len(v) for k, v in lengths.items()}
  assert mean["trivial"] < mean["clean"]


def test_held_out_sets_are_the_reserved_instances():
  train, test, dev, _ = synthetic.generate(seed=0, size=1200, test_per_task=10, dev_per_task=2)
  assert all(synthetic_tasks.reserved(r["dataset"], r["input"]) for r in test + dev)
  assert not any(synthetic_tasks.reserved(r["dataset"], r["input"]) for r in train)


def test_embedded_default_paths(tmp_path, monkeypatch):
  monkeypatch.setenv("LEAD_JAX_CACHE", str(tmp_path / "cache"))
  c = base_data.get()
  c.synthetic.size = 300
  paths = resolve_paths(c, str(tmp_path))
  assert paths["train"].startswith(str(tmp_path / "cache" / "lakes"))
  assert resolve_paths(c, None) == paths  # one lake per generator arguments, in the cache
  assert paths["test"].endswith("test.jsonl") and paths["dev"].endswith("dev.jsonl")
  pool = load_pool(c, tokenizer_lib.byte_level(), str(tmp_path))
  assert len(pool) == 300 and len(pool.task_names) == len(synthetic_tasks.TASKS)


def test_weights_change_the_task_shares_and_the_lake_folder(tmp_path):
  names = "parity,vowel,size"
  even = synthetic.generate(0, 300, 1, 1, names)[0]
  skewed = synthetic.generate(0, 300, 1, 1, names, weights="parity:4,size:0.5")[0]
  count = lambda rows, task: sum(r["dataset"] == task for r in rows)
  w = synthetic.task_weights(synthetic.select_tasks(names), "parity:4,size:0.5")
  for task, share in zip(names.split(","), w / w.sum()):  # floor(300 w / sum w), remainder first
    assert abs(count(skewed, task) - 300 * share) <= 1, task
  assert count(skewed, "parity") > count(even, "parity")
  assert synthetic.lake_dir(0, 300, 1, 1,
                            names) != synthetic.lake_dir(0, 300, 1, 1, names, "parity:4,size:0.5")
  assert synthetic.lake_dir(0, 300, 1, 1, names) == synthetic.lake_dir(0, 300, 1, 1, names, "")
  paths = synthetic.write_lake(str(tmp_path), 0, 300, 1, 1, names, "parity:4,size:0.5")
  before = os.path.getmtime(paths["train"])
  assert synthetic.write_lake(str(tmp_path), 0, 300, 1, 1, names,
                              "parity:4,size:0.5")["train"] == paths["train"]
  assert os.path.getmtime(paths["train"]) == before  # reused, not rewritten
  for bad in ("parity", "parity:0", "nosuch:1", "parity:x", "city:1"):
    with pytest.raises(ValueError, match="data.synthetic.weights"):
      synthetic.task_weights(synthetic.select_tasks(names), bad)
