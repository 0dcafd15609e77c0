"""The plain-text pretraining corpus of the tiny base: the lake's skills in prose.

The synthetic lake (`lead_jax.data.synthetic`) asks for skills in instruction
form ("Reverse the letters: stone"). This corpus states the same skills as
plain sentences with other surface forms ("Read backwards, stone is enots."),
with no chat template and no instruction paraphrase, so a model pretrained on
it has the skills latent and instruction tuning has to connect the prompts to
them, as it does for a real pretrained model.

Coverage is uneven on purpose (`COVERAGE`, relative sentence frequency):
well-covered skills (copy, uppercase, last letter, parity, vowel, lookup,
format), thinly covered ones (last digit, max, reverse, add, word problems)
and three the corpus never states (size, sort, count), so the base's
competence differs by task. The
same holds for knowledge (`synthetic_world`): every person's city and job
are stated often, pets rarely, favorite colors never.

Instances come from the lake's own generators at the `normal` size and are
never test-reserved (`synthetic_tasks.reserved`), so the lake's held-out
test and dev sets of the skill tasks are disjoint from the corpus by
construction; for the knowledge tasks the corpus states the facts of every
person, held-out ones included (that is the knowledge the test asks for),
and never a question about them. `heldout`
draws test-reserved instances: documents the base has not seen, split where
the skill's answer starts, for the base's per-task held-out loss.

  documents(seed, num_docs) -> list[str]      training documents (a paragraph each)
  heldout(seed, per_task)   -> {task: [(context, continuation), ...]}
"""

from __future__ import annotations

import zlib
import numpy as np

from lead_jax.data import synthetic_tasks as tasks_lib

VERSION = 4  # bump when the generator's output changes
SENTENCES_PER_DOC = (3, 8)  # sentences per document, inclusive range

# Relative frequency of each task's sentences; 0 = never stated.
COVERAGE = {
    "copy": 1.0, "uppercase": 1.0, "last_letter": 1.0, "parity": 1.0, "vowel": 1.0,
    "last_digit": 0.4, "size": 0.0, "lookup": 1.0, "format": 0.8, "max": 0.4, "reverse": 0.4,
    "add": 0.25, "word_problem": 0.25, "sort": 0.0, "count": 0.0, "city": 2.5, "job": 2.5,
    "pet": 0.6, "color": 0.0
}

# Per task: sentence openings, short so that most of the corpus's tokens are
# the skills themselves; the continuation is always "{y}." (the answer and the
# sentence's end), so the context never contains the answer. Fields besides
# {x} come from `_fields`.
PROSE: dict[str, tuple[str, ...]] = {
    "copy": ("{x} twice: {x} ", "The code {x} read back: ", "Again, {x} is "),
    "uppercase": ("In capitals {x} is ", "Shouted, {x} is ", "Big letters for {x}: "),
    "last_letter": ("{x} ends with ", "The end of {x} is ", "Last of {x}: "),
    "parity": ("{x} is ", "In pairs {x} is ", "Ending in {last}, {x} is "),
    "vowel": ("The last letter of {x} is a ", "{x} closes on a ", "At the end of {x} sits a "),
    "last_digit": ("{x} ends on the digit ", "The final figure of {x} is "),
    "size": ("As numbers go, {x} is ",),
    "lookup":
        ("With {pairs}, {key} holds ", "In {pairs}, {key} is ", "Ledger {pairs}; {key} says "),
    "format": ("Record {x} as data: ", "Stored, {x} is ", "The object for {x} is "),
    "max": ("Biggest of {x} is ", "Top of {x} is ", "Of {x} the most is "),
    "reverse": ("Backwards {x} is ", "Mirrored, {x} is ", "From the end, {x} is "),
    "sort": ("In alphabetical order {x} is ",),
    "add": ("{a} and {b} make ", "{a} plus {b} is ", "Adding {a} to {b} gives "),
    "count": ("In {body} the letter {letter} appears this many times: ",),
    "word_problem": ("{story} In the end the count was ",),
    "city": ("{x} lives in ", "The home of {x} is ", "{x} moved to "),
    "job": ("{x} works as a ", "By trade {x} is a ", "{x} earns a living as a "),
    "pet": ("{x} keeps a ", "The pet of {x} is a "),
    "color": ("The favorite color of {x} is ",),
}


def _fields(name: str, x: str) -> dict[str, str]:
  """The pieces of an instance that a task's sentences name."""
  if name == "lookup":
    pairs, key = x.split("\nKey: ")
    return {"pairs": pairs, "key": key}
  if name == "add":
    a, b = x.split(" + ")
    return {"a": a, "b": b}
  if name == "count":
    parts = x.split("'")
    return {"letter": parts[1], "body": parts[3]}
  if name == "word_problem":
    return {"story": x.split(" How many")[0]}
  return {"last": x[-1:]}


def _task_by_name() -> dict[str, tasks_lib.Task]:
  return {t.name: t for t in tasks_lib.TASKS}


def _instance(task: tasks_lib.Task, rng, reserved: bool):
  """A normal-size instance on the requested side of the test reservation
  (knowledge tasks: any person; the corpus states everyone's facts)."""
  while True:
    x, answer = task.make(rng, "normal")
    if task.name in tasks_lib.KNOWLEDGE or tasks_lib.reserved(task.name, x) == reserved:
      return x, answer


def _sentence(task: tasks_lib.Task, rng, reserved: bool = False) -> tuple[str, str]:
  x, answer = _instance(task, rng, reserved)
  options = PROSE[task.name]
  opening = options[int(rng.integers(len(options)))]
  return opening.format(x=x, **_fields(task.name, x)), f"{answer}."


def documents(seed: int, num_docs: int) -> list[str]:
  """`num_docs` paragraphs of 3-8 sentences, tasks drawn by `COVERAGE`."""
  by_name = _task_by_name()
  names = [n for n, w in COVERAGE.items() if w > 0]
  p = np.array([COVERAGE[n] for n in names])
  p = p / p.sum()
  rng = np.random.default_rng([seed, zlib.crc32(b"corpus")])
  docs = []
  for _ in range(num_docs):
    k = int(rng.integers(SENTENCES_PER_DOC[0], SENTENCES_PER_DOC[1] + 1))
    picks = rng.choice(len(names), size=k, p=p)
    docs.append(" ".join("".join(_sentence(by_name[names[i]], rng)) for i in picks))
  return docs


def heldout(seed: int, per_task: int) -> dict[str, list[tuple[str, str]]]:
  """Per task (every task, covered or not): `per_task` (context, continuation)
  pairs on test-reserved instances, so none of them occurs in `documents`."""
  out = {}
  for task in tasks_lib.TASKS:
    rng = np.random.default_rng([seed, zlib.crc32(f"heldout/{task.name}".encode())])
    out[task.name] = [_sentence(task, rng, reserved=True) for _ in range(per_task)]
  return out
