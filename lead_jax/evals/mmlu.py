"""MMLU: 5-shot, no chat template, answer by next-token probability (open-instruct).

Files (the layout of the original `data.tar` from hendrycks/test):
  <dir>/dev/<subject>_dev.csv    few-shot examples, the first `n_shot` rows used
  <dir>/test/<subject>_test.csv  questions; subjects are the test files found
Each CSV row is `question,A,B,C,D,answer` with no header. Cells are read the
way pandas' `read_csv(header=None)` reads them (numeric columns become
numbers, "None"/"NA"/empty cells become "nan"), because the reference prompts
were built from such a DataFrame.

Prompt for a test question (k = n_shot shots, in file order):
  "The following are multiple choice questions (with answers) about {s}.\\n\\n"
  + k x "{question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {X}\\n\\n"
  + "{question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:"
where {s} is the subject with "_" replaced by " " and a leading space (so
"about  abstract algebra." has two spaces, as in the reference). While the
prompt is over `max_prompt_tokens` tokens, k drops by one. The prompt is
tokenised with the tokenizer's special tokens (BOS where it adds one); the
prediction is the most probable of the last tokens of " A", " B", " C", " D".
`limit` keeps that many questions per subject, drawn like pandas'
`sample(n, random_state=42)`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re

import numpy as np

from lead_jax.evals import lm

CHOICES = ("A", "B", "C", "D")
# pandas' default missing-value strings (read_csv na_values).
_NA = frozenset([
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"
])
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|Inf|INF|infinity)")
_BOOL = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


@dataclasses.dataclass(frozen=True)
class Question:
  question: str
  choices: tuple[str, ...]
  answer: str  # "A".."D"


def _column_as_pandas(cells: list[str]) -> list[str]:
  """How `str()` prints a cell of a pandas column inferred from these strings."""
  present = [c for c in cells if c not in _NA]
  has_na = len(present) < len(cells)
  if present and all(_INT.fullmatch(c) for c in present):
    if not has_na:
      return [str(int(c)) for c in cells]
    return ["nan" if c in _NA else repr(float(int(c))) for c in cells]
  if present and all(_FLOAT.fullmatch(c) for c in present):
    return ["nan" if c in _NA else repr(float(c)) for c in cells]
  if present and all(c in _BOOL for c in present):
    return ["nan" if c in _NA else str(_BOOL[c]) for c in cells]
  return ["nan" if c in _NA else c for c in cells]


def read_csv(path: str) -> list[Question]:
  """Questions of one MMLU CSV file (no header; question, 4 choices, answer)."""
  with open(path, encoding="utf-8-sig", newline="") as f:
    rows = [r for r in csv.reader(f) if r]
  bad = [i for i, r in enumerate(rows) if len(r) != 6]
  if bad:
    raise ValueError(f"{path}: row {bad[0] + 1} has {len(rows[bad[0]])} fields; MMLU rows "
                     "are question,A,B,C,D,answer")
  columns = [_column_as_pandas([r[j] for r in rows]) for j in range(6)]
  questions = [Question(c[0], tuple(c[1:5]), c[5]) for c in zip(*columns)]
  wrong = [q.answer for q in questions if q.answer not in CHOICES]
  if wrong:
    raise ValueError(f"{path}: answer {wrong[0]!r} is not one of {CHOICES}")
  return questions


def format_subject(subject: str) -> str:
  return "".join(" " + part for part in subject.split("_"))


def format_example(q: Question, include_answer: bool = True) -> str:
  text = q.question + "".join(f"\n{c}. {x}" for c, x in zip(CHOICES, q.choices)) + "\nAnswer:"
  return text + f" {q.answer}\n\n" if include_answer else text


def few_shot_prefix(dev: list[Question], subject: str, k: int) -> str:
  head = ("The following are multiple choice questions (with answers) about "
          f"{format_subject(subject)}.\n\n")
  return head + "".join(format_example(q) for q in dev[:k])


def build_prompt(tokenizer, dev: list[Question], subject: str, question: Question, n_shot: int,
                 max_prompt_tokens: int) -> str:
  """The k-shot prompt, k lowered from n_shot until it fits max_prompt_tokens."""
  end = format_example(question, include_answer=False)
  k = n_shot
  prompt = few_shot_prefix(dev, subject, k) + end
  while k > 0 and len(tokenizer.encode(prompt, add_special_tokens=False)) > max_prompt_tokens:
    k -= 1
    prompt = few_shot_prefix(dev, subject, k) + end
  return prompt


def sample_indices(n: int, limit: int | None) -> np.ndarray:
  """Rows kept by `limit`: pandas' `DataFrame.sample(limit, random_state=42)` order."""
  if not limit or limit >= n:
    return np.arange(n)
  return np.random.RandomState(42).permutation(n)[:limit]


def list_subjects(data_dir: str) -> list[str]:
  test_dir = os.path.join(data_dir, "test")
  if not os.path.isdir(test_dir):
    raise FileNotFoundError(f"MMLU: {test_dir} not found; put the test CSVs of MMLU's "
                            "data.tar there (<subject>_test.csv), and dev/ beside it")
  return sorted(f[:-len("_test.csv")] for f in os.listdir(test_dir) if f.endswith("_test.csv"))


def candidate_ids(tokenizer) -> list[int]:
  return [tokenizer.encode(" " + c, add_special_tokens=False)[-1] for c in CHOICES]


def evaluate(model_config, params, tokenizer, data_dir: str, cfg, *, limit: int | None = None):
  """Accuracy per subject and overall (mean over all questions), in [0, 1].

  `cfg`: the `mmlu` sub-config (n_shot, max_prompt_tokens, batch_size, subjects).
  """
  subjects = list_subjects(data_dir)
  if cfg.subjects:
    unknown = sorted(set(cfg.subjects) - set(subjects))
    if unknown:
      raise ValueError(f"MMLU subjects {unknown} have no test file in {data_dir}/test")
    subjects = [s for s in subjects if s in set(cfg.subjects)]
  prompts, answers, owner = [], [], []
  for subject in subjects:
    dev = read_csv(os.path.join(data_dir, "dev", f"{subject}_dev.csv"))[:cfg.n_shot]
    test = read_csv(os.path.join(data_dir, "test", f"{subject}_test.csv"))
    for i in sample_indices(len(test), limit):
      prompts.append(
          build_prompt(tokenizer, dev, subject, test[i], cfg.n_shot, cfg.max_prompt_tokens))
      answers.append(CHOICES.index(test[i].answer))
      owner.append(subject)
  ids = [tokenizer.encode(p) for p in prompts]
  probs = lm.next_token_probs(model_config, params, ids, candidate_ids(tokenizer),
                              batch_size=cfg.batch_size, desc="mmlu")
  correct = np.argmax(probs, axis=1) == np.asarray(answers)
  owner = np.asarray(owner)
  per_subject = {s: float(np.mean(correct[owner == s])) for s in subjects}
  return {
      "accuracy": float(np.mean(correct)) if len(correct) else 0.0, "per_subject": per_subject,
      "num_questions": int(len(correct))
  }
