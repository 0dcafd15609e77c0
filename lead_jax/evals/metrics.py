"""Benchmark metrics, re-implemented to give open-instruct's numbers exactly.

  SQuAD v1.1 (TyDiQA GoldP): answers normalised by lower-casing, removing
    ASCII punctuation, removing the English articles a/an/the and collapsing
    whitespace; EM and bag-of-tokens F1 are maxed over the gold answers and
    averaged, in percent (0-100).
  GSM8K: the prediction is the last number in the output after `x,xxx`
    thousands separators are removed; exact match ignores case and ASCII
    punctuation (so "-5" matches "5" and "3.0" does not match "3"), as a
    fraction (0-1).
  HumanEval: the unbiased pass@k estimator 1 - C(n - c, k) / C(n, k), averaged
    over problems, as a fraction (0-1).
"""

from __future__ import annotations

import collections
import re
import string
from typing import Sequence

import numpy as np

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_THOUSANDS = re.compile(r"(\d),(\d)")
_NUMBER = re.compile(r"[-+]?\d*\.\d+|\d+")
_STRIP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
  """SQuAD v1.1 answer normalisation."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact_match(prediction: str, truth: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_f1(prediction: str, truth: str) -> float:
  pred_tokens = normalize_answer(prediction).split()
  truth_tokens = normalize_answer(truth).split()
  same = sum((collections.Counter(pred_tokens) & collections.Counter(truth_tokens)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred_tokens), same / len(truth_tokens)
  return 2 * precision * recall / (precision + recall)


def squad(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
  """{"exact_match", "f1"} in percent; each prediction is scored against its best answer."""
  if len(predictions) != len(answers):
    raise ValueError(f"{len(predictions)} predictions for {len(answers)} answer lists")
  if not predictions:
    return {"exact_match": 0.0, "f1": 0.0}
  em = [max(squad_exact_match(p, a) for a in refs) for p, refs in zip(predictions, answers)]
  f1 = [max(squad_f1(p, a) for a in refs) for p, refs in zip(predictions, answers)]
  return {"exact_match": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f1))}


def answer_recall(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
  """Percent of predictions that contain some gold answer (case-insensitive)."""
  hits = [
      any(a.strip().lower() in p.strip().lower()
          for a in refs)
      for p, refs in zip(predictions, answers)
  ]
  return 100.0 * float(np.mean(hits)) if hits else 0.0


def strip_thousands(text: str) -> str:
  """`1,234` -> `1234` (the same left-to-right substitution as open-instruct)."""
  return _THOUSANDS.sub(r"\1\2", text)


def last_number(output: str) -> str:
  """The last number in a model output; the whole output when it has none."""
  numbers = _NUMBER.findall(strip_thousands(output))
  return numbers[-1] if numbers else output


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
  """Fraction of equal strings after lower-casing and removing ASCII punctuation."""
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
  if not predictions:
    return 0.0
  same = [
      p.lower().translate(_STRIP_PUNCTUATION) == r.lower().translate(_STRIP_PUNCTUATION)
      for p, r in zip(predictions, references)
  ]
  return float(np.mean(same))


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased pass@k of one problem with `c` correct out of `n` samples."""
  if not 0 <= c <= n or k < 1:
    raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
  if n - c < k:
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(n_B: Sequence[int], c_B: Sequence[int], ks: Sequence[int]) -> dict[str, float]:
  """{"pass@k": mean over problems} for every k that every problem has samples for."""
  return {
      f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in zip(n_B, c_B)]))
      for k in ks
      if len(n_B) and min(n_B) >= k
  }
