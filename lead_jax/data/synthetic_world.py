"""A fixed synthetic world: people and their facts, the knowledge the tiny base learns.

A real pretrained model answers instructions with knowledge it read in
pretraining; instruction tuning teaches it to answer in the asked form. The
lake's knowledge tasks (`synthetic_tasks`: city, job, pet, color) ask about
the people of this world; the pretraining corpus states their facts in prose
(`lead_jax.data.corpus`), unevenly: cities and jobs often, pets rarely,
colors never. The world is one fixed draw (`WORLD_SEED`), the same for every
lake and corpus seed, as the real world is the same for every dataset.

Held-out people: every `HELD_OUT_EVERY`-th person is test-reserved. The
corpus states their facts like everyone's (that is the knowledge tested),
but the pool never asks about them, so the lake's test and dev questions
are disjoint from the pool, and no question-answer text is in the corpus.
"""

from __future__ import annotations

import numpy as np

WORLD_SEED = 2026  # the one draw of the world
NUM_PEOPLE = 240
HELD_OUT_EVERY = 4  # people 0, 4, 8, ... are test-reserved (60 of 240)
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
ATTRIBUTES = {
    "city": ("oslo", "lima", "rome", "kyiv", "doha", "bern", "riga", "quito", "cairo", "delhi",
             "seoul", "paris"),
    "job": ("baker", "nurse", "pilot", "tailor", "farmer", "judge", "miner", "singer", "potter",
            "sailor", "barber", "weaver"),
    "pet": ("cat", "dog", "owl", "fox", "goat", "frog", "crab", "mole"),
    "color": ("red", "blue", "green", "gold", "pink", "gray", "teal", "plum", "rust", "navy"),
}


def _names(rng) -> list[str]:
  names: dict[str, None] = {}
  while len(names) < NUM_PEOPLE:
    syllables = int(rng.integers(2, 4))
    name = "".join(
        str(rng.choice(list(CONSONANTS))) + str(rng.choice(list(VOWELS))) for _ in range(syllables))
    names.setdefault(name.capitalize())
  return list(names)


def _world() -> tuple[list[str], dict[str, dict[str, str]]]:
  rng = np.random.default_rng(WORLD_SEED)
  people = _names(rng)
  facts = {a: {p: str(rng.choice(values)) for p in people} for a, values in ATTRIBUTES.items()}
  return people, facts


PEOPLE, FACTS = _world()
_HELD_OUT = frozenset(PEOPLE[::HELD_OUT_EVERY])


def is_held_out(name: str) -> bool:
  return name in _HELD_OUT


def maker(attribute: str):
  """`make(rng, size) -> (x, answer)` of the task asking for `attribute`:
  normal, a person's name; trivial, the fact stated in the input; long, a
  long background preamble before the name."""

  def make(rng, size):
    person = PEOPLE[int(rng.integers(NUM_PEOPLE))]
    answer = FACTS[attribute][person]
    if size == "trivial":
      return f"{person} ({attribute}: {answer})", answer
    if size == "long":
      words = " ".join(str(w) for w in rng.choice(sum(ATTRIBUTES.values(), ()), size=60))
      return f"Background: {words}.\n\n{person}", answer
    return person, answer

  return make


def corrupter(attribute: str):
  """A wrong value of the same attribute (the noisy tier)."""
  values = ATTRIBUTES[attribute]

  def corrupt(rng, x, answer):
    return str(rng.choice([v for v in values if v != answer]))

  return corrupt


def person_of(x: str) -> str:
  """The person an instance asks about (its input without preamble or stated fact)."""
  return x.rsplit("\n\n", 1)[-1].split(" (", 1)[0]
