"""The synthetic lake's tasks: instance generators, paraphrases, wrong answers.

Each task makes an instance `(x, answer)` at one of three sizes:
  normal   the distribution of the clean pool and of the held-out test sets
  trivial  a degenerate instance (one letter, one pair, "+ 0"): learnt at once
  long     an over-long instance: a long input whose answer runs past the
           length limit, or a long background preamble before the question
and a wrong answer of the right type (`corrupt`) for the noisy tier. The
prompt is one of several paraphrases (`prompts`) wrapped around `x`.

Difficulty (for a 2-4 layer byte-level model trained for minutes):
  easy    last_letter, parity, vowel, last_digit, size: the answer depends on
          the prompt's last characters only (every paraphrase ends with the
          input); all but last_letter answer from a small label set
  medium  copy, uppercase, format, lookup, max: copying or matching at
          varying positions (induction-style attention)
  hard    reverse, sort, add, count, word_problem: position arithmetic,
          comparison or arithmetic
Noise rates rise with difficulty, as in scraped data.
"""

from __future__ import annotations

import dataclasses
import json
import string
import zlib
from typing import Callable

import numpy as np

from lead_jax.data import synthetic_world as world

LETTERS = string.ascii_lowercase
NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun")
ITEMS = ("apples", "books", "coins", "shells", "pens", "stamps", "cards", "marbles")
CITIES = ("rome", "oslo", "lima", "kyiv", "doha", "bern", "riga", "quito")
FIELDS = ("name", "age", "city", "pet", "color", "job", "team", "size")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOWELS = "aeiou"
WORDS = ("river", "stone", "green", "table", "light", "music", "paper", "cloud", "north", "glass",
         "bread", "tower", "quiet", "sugar", "field", "train", "smile", "ocean")

RESERVE_MOD = 8  # one instance in RESERVE_MOD (by a hash of its identity) is test-reserved
KNOWLEDGE = ("city", "job", "pet", "color")  # tasks about the people of synthetic_world


def instance_key(x: str) -> str:
  """An instance's identity: its input without a background preamble."""
  return x.rsplit("\n\n", 1)[-1]


def reserved(task_name: str, x: str) -> bool:
  """True for the instances kept for held-out sets (lake test and dev sets,
  the corpus's held-out documents); the pool never draws them, nor does the
  corpus for the skill tasks, so held-out sets are disjoint from both by
  construction. Knowledge tasks reserve people (`synthetic_world`): the pool
  never asks about them, the corpus states their facts like everyone's."""
  if task_name in KNOWLEDGE:
    return world.is_held_out(world.person_of(x))
  return zlib.crc32(f"{task_name}\0{instance_key(x)}".encode()) % RESERVE_MOD == 0


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  difficulty: str  # easy | medium | hard
  weight: float  # relative share of the pool
  noise: float  # fraction of the task's base samples given a wrong answer
  prompts: tuple[str, ...]  # paraphrases; "{x}" is replaced by the instance
  make: Callable[[np.random.Generator, str], tuple[str, str]]  # (rng, size) -> (x, answer)
  corrupt: Callable[[np.random.Generator, str, str], str]  # (rng, x, answer) -> wrong


def _letters(rng, lo: int, hi: int, alphabet: str = LETTERS) -> str:
  return "".join(rng.choice(list(alphabet), size=int(rng.integers(lo, hi + 1))))


def _preamble(rng) -> str:
  words = rng.choice(WORDS, size=int(rng.integers(40, 56)))
  return "Background: " + " ".join(words) + ".\n\n"


def _other(rng, answer: str, make_wrong: Callable[[], str]) -> str:
  """A wrong answer different from the right one (a few tries, then a marker)."""
  for _ in range(20):
    wrong = make_wrong()
    if wrong != answer:
      return wrong
  return answer + "x"


def _string_task(fn: Callable[[str], str], lo: int, hi: int, long_lo: int, long_hi: int):

  def make(rng, size):
    if size == "trivial":
      x = _letters(rng, 1, 1)
    else:
      x = _letters(rng, *((long_lo, long_hi) if size == "long" else (lo, hi)))
    return x, fn(x)

  def corrupt(rng, x, answer):
    return _other(rng, answer, lambda: fn(_letters(rng, len(x), len(x))))

  return make, corrupt


def _last_letter(rng, size):
  x = _letters(rng, *{"trivial": (1, 1), "normal": (3, 9), "long": (3, 9)}[size])
  return (_preamble(rng) + x if size == "long" else x), x[-1]


def _parity(rng, size):
  n = int(rng.integers(0, 10)) if size == "trivial" else int(rng.integers(10, 10000))
  x = str(n)
  return (_preamble(rng) + x if size == "long" else x), ("even" if n % 2 == 0 else "odd")


def _vowel(rng, size):
  """A word whose last letter is a vowel half of the time (balanced labels)."""
  n = 1 if size == "trivial" else int(rng.integers(3, 10))
  last = str(
      rng.choice(list(VOWELS) if rng.random() < 0.5 else [c for c in LETTERS if c not in VOWELS]))
  x = _letters(rng, n - 1, n - 1) + last
  return (_preamble(rng) + x if size == "long" else x), ("vowel" if last in VOWELS else "consonant")


def _last_digit(rng, size):
  n = int(rng.integers(0, 10)) if size == "trivial" else int(rng.integers(10, 10000))
  x = str(n)
  return (_preamble(rng) + x if size == "long" else x), DIGITS[n % 10]


def _size(rng, size):
  """A four-digit number, `big` from 5000 on: the rule reads the first digit."""
  n = int(rng.integers(0, 10)) if size == "trivial" else int(rng.integers(1000, 10000))
  x = str(n)
  return (_preamble(rng) + x if size == "long" else x), ("big" if n >= 5000 else "small")


def _flip(a: str, b: str):
  return lambda rng, x, answer: b if answer == a else a


def _letter_wrong(rng, x, answer):
  return _other(rng, answer, lambda: str(rng.choice(list(LETTERS))))


def _lookup(rng, size):
  n = {"trivial": 1, "normal": int(rng.integers(3, 7)), "long": int(rng.integers(30, 40))}[size]
  keys = ["".join(k) for k in rng.choice(list(LETTERS), size=(n * 3, 2))]
  keys = list(dict.fromkeys(keys))[:n]
  values = [str(v) for v in rng.integers(0, 1000, size=len(keys))]
  q = int(rng.integers(len(keys)))
  pairs = ", ".join(f"{k}={v}" for k, v in zip(keys, values))
  return f"{pairs}\nKey: {keys[q]}", values[q]


def _numbers_wrong(spread: int):

  def corrupt(rng, x, answer):

    def wrong():
      return str(max(0, int(answer) + int(rng.integers(1, spread + 1)) * int(rng.choice([-1, 1]))))

    return _other(rng, answer, wrong)

  return corrupt


def _max(rng, size):
  n = {"trivial": 1, "normal": int(rng.integers(3, 7)), "long": 6}[size]
  nums = [int(v) for v in rng.integers(0, 100, size=n)]
  x = ", ".join(map(str, nums))
  return (_preamble(rng) + x if size == "long" else x), str(max(nums))


def _max_wrong(rng, x, answer):
  nums = x.rsplit("\n", 1)[-1].split(", ")
  return _other(rng, answer, lambda: str(rng.choice(nums))
                if len(nums) > 1 else str(int(rng.integers(0, 100))))


def _add(rng, size):
  if size == "trivial":
    a, b = int(rng.integers(0, 10)), 0
  else:
    a, b = (int(v) for v in rng.integers(10, 100, size=2))
  x = f"{a} + {b}"
  return (_preamble(rng) + x if size == "long" else x), str(a + b)


def _count(rng, size):
  letter = str(rng.choice(list("abc")))
  body = _letters(rng, *{"trivial": (1, 1), "normal": (5, 12), "long": (140, 180)}[size],
                  alphabet="abcd")
  return f"letter '{letter}' in '{body}'", str(body.count(letter))


def _word(rng, size):
  name, item = str(rng.choice(NAMES)), str(rng.choice(ITEMS))
  a = int(rng.integers(2, 31))
  if size == "trivial":
    return f"{name} has {a} {item}. How many {item} does {name} have?", str(a)
  b = int(rng.integers(1, 31))
  if rng.random() < 0.5 or b > a:
    x, ans = f"{name} has {a} {item} and gets {b} more.", a + b
  else:
    x, ans = f"{name} has {a} {item} and gives away {b}.", a - b
  x += f" How many {item} does {name} have now?"
  return (_preamble(rng) + x if size == "long" else x), str(ans)


def _format(rng, size):
  n = {"trivial": 1, "normal": int(rng.integers(2, 4)), "long": int(rng.integers(12, 16))}[size]
  keys = [
      FIELDS[i % len(FIELDS)] + ("" if i < len(FIELDS) else str(i))
      for i in rng.permutation(max(n, len(FIELDS)))[:n]
  ]
  record = {k: _field_value(rng, k) for k in keys}
  x = "; ".join(f"{k}: {v}" for k, v in record.items())
  return x, json.dumps(record)


def _field_value(rng, key: str):
  if key.startswith(("age", "size")):
    return int(rng.integers(1, 100))
  if key.startswith("city"):
    return str(rng.choice(CITIES))
  return _letters(rng, 3, 6)


def _format_wrong(rng, x, answer):
  record = json.loads(answer)

  def wrong():
    values = list(record.values())
    rng.shuffle(values)
    out = dict(zip(record, values))
    if len(out) == 1 or out == record:
      out = {k: _field_value(rng, k) for k in record}
    return json.dumps(out)

  return _other(rng, answer, wrong)


TASKS = (
    # The answer depends on the prompt's last characters only: a fixed-offset
    # lookup that a tiny model learns within a few hundred steps.
    Task("last_letter", "easy", 0.8, 0.10,
         ("Last letter of {x}", "What letter does this end with? {x}", "Final character: {x}",
          "Give the last letter. {x}"), _last_letter, _letter_wrong),
    Task("parity", "easy", 0.8, 0.15, ("Even or odd: {x}", "Is this number even or odd? {x}",
                                       "Parity of {x}", "Say even or odd for {x}"), _parity,
         _flip("even", "odd")),
    Task("vowel", "easy", 0.8, 0.15,
         ("Vowel or consonant at the end: {x}", "Does this word end in a vowel or a "
          "consonant? {x}", "Kind of final letter: {x}", "Ending sound class of {x}"), _vowel,
         _flip("vowel", "consonant")),
    Task("last_digit", "easy", 0.8, 0.15,
         ("Name the last digit: {x}", "Spell out the final digit of {x}",
          "Which digit ends this number? Answer in words. {x}", "Last digit in words: {x}"),
         _last_digit, lambda rng, x, answer: _other(rng, answer, lambda: str(rng.choice(DIGITS)))),
    Task("size", "easy", 0.8, 0.20,
         ("Big or small (big from 5000 on): {x}", "Is this number big or small? {x}",
          "Size class of {x}", "Call it big or small: {x}"), _size, _flip("big", "small")),
    Task("copy", "medium", 1.0, 0.05,
         ("Repeat exactly: {x}", "Copy this text: {x}", "Echo the following string.\n{x}",
          "{x}\nWrite the string above again, unchanged.", "Say back: {x}"),
         *_string_task(lambda s: s, 5, 10, 130, 170)),
    Task("uppercase", "medium", 0.8, 0.10,
         ("Convert to uppercase: {x}", "Write {x} in capital letters.", "Uppercase this: {x}",
          "{x}\nRewrite the word above in upper case."), *_string_task(str.upper, 5, 10, 130, 170)),
    Task("format", "medium", 0.8, 0.10,
         ("Convert to JSON: {x}", "Write these fields as a JSON object.\n{x}",
          "{x}\nTurn the record above into JSON.", "JSON for: {x}"), _format, _format_wrong),
    Task("lookup", "medium", 1.2, 0.20,
         ("Find the value of the key.\n{x}", "{x}\nWhat is the value of that key?",
          "Look up the key in this table.\n{x}", "Table and key:\n{x}\nValue?"), _lookup,
         _numbers_wrong(50)),
    Task("max", "medium", 1.0, 0.20,
         ("Which number is largest: {x}?", "Give the maximum of {x}.",
          "{x}\nWhat is the biggest number above?", "Largest value in the list {x}"), _max,
         _max_wrong),
    Task("reverse", "hard", 1.0, 0.15,
         ("Reverse the letters: {x}", "Write {x} backwards.", "Spell this in reverse: {x}",
          "{x}\nReverse the string above."), *_string_task(lambda s: s[::-1], 4, 8, 130, 170)),
    Task("sort", "hard", 1.0, 0.15,
         ("Sort the letters alphabetically: {x}", "Put the letters of {x} in order.",
          "{x}\nSort these characters from a to z.", "Alphabetize: {x}"),
         *_string_task(lambda s: "".join(sorted(s)), 4, 8, 130, 170)),
    Task("add", "hard", 1.2, 0.30,
         ("What is {x}?", "Compute {x}.", "Add: {x}", "{x} = ?", "Calculate the sum {x}."), _add,
         _numbers_wrong(20)),
    Task("count", "hard", 1.0, 0.25,
         ("Count the {x}.", "How many times does the {x} occur?",
          "Number of occurrences of the {x}:", "Tell me the count of the {x}."), _count,
         _numbers_wrong(3)),
    Task("word_problem", "hard", 1.0, 0.35,
         ("{x}", "Solve: {x}", "Word problem. {x}", "{x} Answer with a number."), _word,
         _numbers_wrong(10)),
    # Knowledge of the synthetic world: the answer is a fact the base read in
    # pretraining (or did not: colors are never stated), not in the prompt.
    # Every paraphrase ends with the name, as the easy skills end with their
    # input: the tiny base cannot carry a name across the prompt (it has no
    # induction), so a question with the name in the middle is unanswerable
    # for it whatever it was trained on (measured: first-token accuracy at
    # chance after instruction tuning).
    Task("city", "recall", 1.2, 0.15, ("Where does this person live? {x}", "Home city of {x}",
                                       "City of: {x}", "Which city is the home of {x}"),
         world.maker("city"), world.corrupter("city")),
    Task("job", "recall", 1.2, 0.15, ("What is the job of {x}", "Occupation of: {x}",
                                      "What does this person do? {x}", "Profession of {x}"),
         world.maker("job"), world.corrupter("job")),
    Task("pet", "recall", 1.0, 0.15,
         ("What pet does this person have? {x}", "Pet of {x}", "Animal kept by {x}"),
         world.maker("pet"), world.corrupter("pet")),
    Task("color", "recall", 1.0, 0.15,
         ("What is the favorite color of {x}", "Favorite color of: {x}",
          "Which color does this person like best? {x}"), world.maker("color"),
         world.corrupter("color")),
)
