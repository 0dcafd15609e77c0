"""GSM8K: 8-shot chain of thought in the chat format, greedy (open-instruct).

File: <dir>/test.jsonl, one `{"question": ..., "answer": "... #### 72"}` per
line (openai/grade-school-math's layout). The reference answer is the text
after "####" with `x,xxx` separators removed.

The user turn is
  "Answer the following questions.\\n\\n"
  + "\\n\\n".join("Question: {q}\\nAnswer: {cot}" for the 8 exemplars)
  + "\\n\\nQuestion: {question.strip()}"
rendered with the project's chat template up to the assistant header, then
"Answer:" (" Answer:" when the header does not end in a newline or space).
Generation is greedy, up to 512 new tokens, stopped by EOS / end of turn only
(no stop strings in the chat format). The prediction is the last number of
the output; the metric is exact match ignoring case and punctuation.

`limit` keeps `random.Random(42).sample(test, limit)`, the reference's draw.
The exemplars are the 8 of Wei et al. (2022, Table 20) in open-instruct's
wording ("So the answer is N."); `exemplars="file"` reads
<dir>/cot_exemplars.jsonl (`question`, `answer`) instead, e.g. the lm-eval
exemplars that `experiments.fetch_assets` writes ("The answer is N.").
"""

from __future__ import annotations

import json
import os
import random

import jax

from lead_jax.data import templates
from lead_jax.evals import lm, metrics

EXEMPLARS = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
     "After they are done, there will be 21 trees. How many trees did the grove workers "
     "plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. "
     "So there must have been 21 - 15 = 6. So the answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
     "the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they "
     "have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = "
     "74. After eating 35, they had 74 - 35 = 39. So the answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How "
     "many lollipops did Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave "
     "Denny 20 - 12 = 8. So the answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How "
     "many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 "
     "more toys. 5 + 4 = 9. So the answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each "
     "day, from monday to thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So "
     "5 * 4 = 20 computers were added. 9 + 20 is 29. So the answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 "
     "more. How many golf balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
     "After losing 2 more, he had 35 - 2 = 33 golf balls. So the answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she "
     "has 23 - 15 dollars left. 23 - 15 is 8. So the answer is 8."),
)
EXEMPLAR_SOURCES = ("open_instruct", "file")


def read_test(path: str) -> list[dict]:
  """[{question, answer}] with the answer after '####', separators removed."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"GSM8K: {path} not found; put grade-school-math's "
                            "test.jsonl there")
  out = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      row = json.loads(line)
      if "####" not in row.get("answer", ""):
        raise ValueError(f"{path}:{n}: the answer has no '#### <number>' line")
      answer = metrics.strip_thousands(row["answer"].split("####")[1].strip())
      try:
        float(answer)
      except ValueError as e:
        raise ValueError(f"{path}:{n}: final answer {answer!r} is not a number") from e
      out.append({"question": row["question"], "answer": answer})
  return out


def load_exemplars(source: str, data_dir: str) -> list[tuple[str, str]]:
  if source == "open_instruct":
    return list(EXEMPLARS)
  if source != "file":
    raise ValueError(f"gsm8k.exemplars={source!r}; use one of {EXEMPLAR_SOURCES}")
  path = os.path.join(data_dir, "cot_exemplars.jsonl")
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [(r["question"], r["answer"]) for r in rows]


def prompt_prefix(exemplars, n_shot: int, rng: random.Random) -> str:
  if not n_shot:
    return "Answer the following question.\n\n"
  if len(exemplars) > n_shot:
    exemplars = rng.sample(exemplars, n_shot)
  shots = [f"Question: {q}\nAnswer: {a}" for q, a in exemplars]
  return "Answer the following questions.\n\n" + "\n\n".join(shots) + "\n\n"


def evaluate(model_config, params, tokenizer, data_dir: str, cfg, *, template, key: jax.Array,
             limit: int | None = None):
  """Exact match (0-1) of the last number; `cfg` is the `gsm8k` sub-config."""
  rng = random.Random(42)
  test = read_test(os.path.join(data_dir, "test.jsonl"))
  if limit and len(test) > limit:
    test = rng.sample(test, limit)
  prefix = prompt_prefix(load_exemplars(cfg.exemplars, data_dir), cfg.n_shot, rng)
  ids = [
      lm.chat_prompt_ids(template, tokenizer, prefix + "Question: " + ex["question"].strip(),
                         "Answer:") for ex in test
  ]
  outputs = lm.generate(model_config, params, tokenizer, ids, key, batch_size=cfg.batch_size,
                        max_new_tokens=cfg.max_new_tokens,
                        extra_eos_ids=templates.stop_token_ids(template, tokenizer), desc="gsm8k")
  return score(test, outputs)


def score(test: list[dict], outputs: list[str]) -> dict:
  """Exact match of the outputs' last numbers against the test answers."""
  predictions = [metrics.last_number(o) for o in outputs]
  return {
      "exact_match":
          metrics.exact_match(predictions, [ex["answer"] for ex in test]), "num_questions":
              len(test), "examples": [{
                  "question": ex["question"], "answer": ex["answer"], "output": o, "prediction": p
              } for ex, o, p in list(zip(test, outputs, predictions))[:5]]
  }
