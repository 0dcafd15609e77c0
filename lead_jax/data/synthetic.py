"""The synthetic data lake: the embedded default pool, with held-out test sets.

A pure function of (seed, size, test_per_task, dev_per_task, tasks, weights): the same
arguments write byte-identical files. Fifteen skill tasks (synthetic_tasks.TASKS)
of graded difficulty and four knowledge tasks about the
people of `synthetic_world`, each with several instruction paraphrases, and, per
task, quality tiers that a selector can exploit or be fooled by, the kinds a
scraped instruction pool has:

  clean       correct answer, normal instance
  noisy       wrong answer of the right type, at the task's rate (5%-35%):
              high loss forever, and it teaches the wrong mapping
  duplicate   near-copies of clean samples (another paraphrase, spacing or
              punctuation changed), 2-5 per original: budget spent twice
  trivial     degenerate instances (one letter, "+ 0", one pair): low loss
              from the start, little to learn
  overlong    long inputs past the default length limit: truncated
              responses without an end of turn, or long preambles that cost
              tokens without information
  verbose     the right answer inside chatter ("Sure! The answer is 42. Let
              me know if ..."): teaches answers that exact match rejects
  off_format  the right answer in another format ("Answer: 42", "[42]")
  refusal     no answer at all ("I'm sorry, but I can't help with that.")

Tier shares per task: `SHARES`, and of the rest the task's noise rate is
noisy and the remainder clean (about half of the pool is clean). Held-out
test and dev sets are clean, normal instances drawn from the test-reserved
part of each task's instance space (`synthetic_tasks.reserved`), which the
pool and the pretraining corpus (`lead_jax.data.corpus`) never draw.

Files (messages JSONL; each pool record also carries its `tier`, which the
data layer ignores, so that analyses can count what a selector picked):
  train.jsonl, test.jsonl (all tasks, `dataset` = task), dev.jsonl, lake.json
each written atomically (`lead_jax.artifacts`), in a cache folder named by the
`artifacts.fingerprint` of the arguments and LAKE_VERSION (`lake_dir`).
"""

from __future__ import annotations

import json
import os
import zlib

import numpy as np

from lead_jax import artifacts
from lead_jax.data import cache
from lead_jax.data.synthetic_tasks import TASKS, Task, instance_key, reserved

LAKE_VERSION = 5  # bump when the generator's output changes
SHARES = {
    "trivial": 0.08, "overlong": 0.05, "duplicate": 0.12, "verbose": 0.07, "off_format": 0.05,
    "refusal": 0.03
}
TIERS = ("clean", "noisy", *SHARES)
# Answer rewrites of the tiers that keep the instance but break the format.
VERBOSE = ("Sure! The answer is {y}. Let me know if you need anything else.",
           "Great question. After thinking it through carefully, I believe it is {y}.",
           "Of course! Here you go: {y}\nI hope this helps!",
           "Let me work this out step by step for you. The result: {y}.")
OFF_FORMAT = ("Answer: {y}", "[{y}]", "The result is {y}.", "{y} (final answer)", "'{y}'")
REFUSALS = ("I'm sorry, but I can't help with that request.",
            "As an AI language model, I am not able to answer this.",
            "I cannot do that. Is there something else I can help you with?")


def select_tasks(names: str) -> tuple[Task, ...]:
  """The tasks named in a comma-separated list, in `TASKS` order; "" = all."""
  wanted = [n.strip() for n in names.split(",") if n.strip()]
  known = {t.name for t in TASKS}
  unknown = [n for n in wanted if n not in known]
  if unknown:
    raise ValueError(f"data.synthetic.tasks: unknown task(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(t.name for t in TASKS)}")
  return tuple(t for t in TASKS if not wanted or t.name in wanted)


def task_weights(chosen: tuple[Task, ...], weights: str) -> np.ndarray:
  """Each chosen task's share weight: its own `Task.weight`, or the value of
  `weights` ("name:w,name:w", w > 0) for the tasks it names."""
  out = {t.name: float(t.weight) for t in chosen}
  for item in filter(None, (x.strip() for x in weights.split(","))):
    name, sep, value = item.partition(":")
    try:
      w = float(value) if sep else float("nan")
    except ValueError:
      w = float("nan")
    if name.strip() not in out or not w > 0:
      raise ValueError(f"data.synthetic.weights: {item!r} is not <task>:<weight> with a task of "
                       f"the lake ({', '.join(out)}) and a weight > 0; e.g. 'parity:2,size:0.5'")
    out[name.strip()] = w
  return np.array([out[t.name] for t in chosen])


def _params(seed, size, test_per_task, dev_per_task, tasks, weights="") -> dict:
  chosen = select_tasks(tasks)
  names = ",".join(t.name for t in chosen)
  shares = ",".join(f"{t.name}:{w:g}" for t, w in zip(chosen, task_weights(chosen, weights)))
  return {
      "version": LAKE_VERSION, "seed": seed, "size": size, "test_per_task": test_per_task,
      "dev_per_task": dev_per_task, **({"tasks": names} if tasks else {}),
      **({"weights": shares} if weights else {})
  }


def lake_dir(seed: int = 0, size: int = 4000, test_per_task: int = 50, dev_per_task: int = 10,
             tasks: str = "", weights: str = "") -> str:
  """The lake's folder in the cache root, keyed by the generator's version and arguments."""
  fp = artifacts.fingerprint(_params(seed, size, test_per_task, dev_per_task, tasks, weights))
  return os.path.join(cache.cache_root(), "lakes", f"lake-{fp}")


def write_lake(out_dir: str, seed: int = 0, size: int = 4000, test_per_task: int = 50,
               dev_per_task: int = 10, tasks: str = "", weights: str = "") -> dict[str, str]:
  """Writes the lake into out_dir (reused when already there); returns its paths.
  `tasks`: a comma-separated subset of the task names ("" = every task);
  `weights`: "name:w,..." share weights replacing those tasks' own ("" = none)."""
  params = _params(seed, size, test_per_task, dev_per_task, tasks, weights)
  paths = {k: os.path.join(out_dir, f"{k}.jsonl") for k in ("train", "test", "dev")}
  paths["manifest"] = os.path.join(out_dir, "lake.json")
  if _is_written(paths, params):
    return paths
  train, test, dev, counts = generate(seed, size, test_per_task, dev_per_task, tasks, weights)
  os.makedirs(out_dir, exist_ok=True)
  for key, rows in (("train", train), ("test", test), ("dev", dev)):
    _write_jsonl(paths[key], rows)
  manifest = dict(
      params, task_info={
          t.name: {"difficulty": t.difficulty, "noise": t.noise, "tiers": counts[t.name]}
          for t in select_tasks(tasks)
      })
  artifacts.write_json(paths["manifest"], manifest)
  return paths


def generate(seed: int, size: int, test_per_task: int, dev_per_task: int, tasks: str = "",
             weights: str = ""):
  """(train, test, dev) lists of records and per-task tier counts."""
  chosen = select_tasks(tasks)
  weights_T = task_weights(chosen, weights)
  per_task = np.floor(size * weights_T / weights_T.sum()).astype(int)
  per_task[:size - per_task.sum()] += 1
  train, test, dev, counts = [], [], [], {}
  for task, n in zip(chosen, per_task):
    rng = np.random.default_rng([seed, zlib.crc32(task.name.encode())])
    held = _held_out(task, rng, test_per_task + dev_per_task)
    test += held[:test_per_task]
    dev += held[test_per_task:]
    rows = _task_pool(task, rng, int(n))
    counts[task.name] = {tier: sum(r["tier"] == tier for r in rows) for tier in TIERS}
    train += rows
  order = np.random.default_rng([seed, 1]).permutation(len(train))
  train = [dict(train[i], id=f"lake-{k:05d}") for k, i in enumerate(order)]
  for prefix, rows in (("test", test), ("dev", dev)):
    for k, r in enumerate(rows):
      r["id"] = f"{prefix}-{k:04d}"
      del r["tier"]
  return train, test, dev, counts


def _held_out(task: Task, rng, n: int):
  rows, seen = [], set()
  while len(rows) < n:
    x, answer = task.make(rng, "normal")
    if reserved(task.name, x) and instance_key(x) not in seen:
      seen.add(instance_key(x))
      rows.append(_record(task, x, _prompt(task, rng, x), answer, "clean"))
  return rows


def _rewrite(rng, tier: str, answer: str) -> str:
  """The answer of a verbose, off-format or refusal sample."""
  options = {"verbose": VERBOSE, "off_format": OFF_FORMAT, "refusal": REFUSALS}[tier]
  return options[int(rng.integers(len(options)))].replace("{y}", answer)


def _task_pool(task: Task, rng, n: int) -> list[dict]:
  n_tier = {k: int(round(v * n)) for k, v in SHARES.items()}
  n_base = n - sum(n_tier.values())
  n_noisy = int(round(task.noise * n_base))
  rewritten = ("verbose", "off_format", "refusal")
  rows = []
  for size, tier, count in (("trivial", "trivial", n_tier["trivial"]), ("long", "overlong",
                                                                        n_tier["overlong"]),
                            *(("normal", t, n_tier[t]) for t in rewritten), ("normal", "base",
                                                                             n_base)):
    made = 0
    while made < count:
      x, answer = task.make(rng, size)
      if reserved(task.name, x):  # the held-out sets stay unseen
        continue
      if tier in rewritten:
        answer = _rewrite(rng, tier, answer)
      rows.append(_record(task, x, _prompt(task, rng, x), answer, tier))
      made += 1
  base = [r for r in rows if r["tier"] == "base"]
  for k, r in enumerate(base):
    if k < n_noisy:
      r["messages"][1]["content"] = task.corrupt(rng, r["input"], r["messages"][1]["content"])
    r["tier"] = "noisy" if k < n_noisy else "clean"
  clean = base[n_noisy:]
  dups = 0
  while dups < n_tier["duplicate"] and clean:
    r = clean[int(rng.integers(len(clean)))]
    x, answer = r["input"], r["messages"][1]["content"]
    for _ in range(min(int(rng.integers(2, 6)), n_tier["duplicate"] - dups)):
      rows.append(_record(task, x, _perturb(rng, _prompt(task, rng, x)), answer, "duplicate"))
      dups += 1
  return rows


def _prompt(task: Task, rng, x: str) -> str:
  return task.prompts[int(rng.integers(len(task.prompts)))].replace("{x}", x)


def _perturb(rng, prompt: str) -> str:
  """A near-duplicate: the same instance with spacing, case or punctuation changed."""
  choice = int(rng.integers(4))
  if choice == 0:
    return prompt + " "
  if choice == 1:
    return prompt[0].swapcase() + prompt[1:]
  if choice == 2:
    return prompt.replace(": ", ":  ", 1) if ": " in prompt else prompt + "."
  return "Please. " + prompt


def _record(task: Task, x: str, prompt: str, answer: str, tier: str) -> dict:
  # `input` stays in memory (tests check disjointness on it); it is not written.
  return {
      "dataset": task.name, "id": "", "tier": tier, "input": x,
      "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
  }


def _is_written(paths: dict, params: dict) -> bool:
  if not all(os.path.exists(p) for p in paths.values()):
    return False
  with open(paths["manifest"], encoding="utf-8") as f:
    manifest = json.load(f)
  return all(manifest.get(k) == v for k, v in params.items())


def _write_jsonl(path: str, rows: list[dict]) -> None:
  artifacts.write_text(
      path, "".join(
          json.dumps({k: v for k, v in r.items() if k != "input"}, ensure_ascii=False) +
          "\n" for r in rows))
