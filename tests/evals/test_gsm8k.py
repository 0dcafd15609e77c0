"""GSM8K: answers, the exact 8-shot chat prompt, scoring, and the evaluator end to end."""

import json
import os
import random

import jax
import pytest

from lead_jax.evals import gsm8k, lm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_read_test_takes_the_number_after_hashes(fixtures_dir):
  test = gsm8k.read_test(os.path.join(fixtures_dir, "gsm8k", "test.jsonl"))
  assert [ex["answer"] for ex in test] == ["7", "1550", "72", "20", "32"]
  assert test[0]["question"].startswith("A baker makes 12 loaves")


def test_read_test_rejects_a_missing_final_answer(tmp_path):
  path = tmp_path / "test.jsonl"
  path.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
  with pytest.raises(ValueError, match="####"):
    gsm8k.read_test(str(path))


def test_eight_shot_chat_prompt_is_exact(fixtures_dir, tok, template):
  question = gsm8k.read_test(os.path.join(fixtures_dir, "gsm8k", "test.jsonl"))[0]["question"]
  prefix = gsm8k.prompt_prefix(gsm8k.load_exemplars("open_instruct", ""), 8, random.Random(42))
  ids = lm.chat_prompt_ids(template, tok, prefix + "Question: " + question.strip(), "Answer:")
  shots = "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in gsm8k.EXEMPLARS)
  assert gsm8k.EXEMPLARS[0][1].endswith("21 - 15 = 6. So the answer is 6.")
  assert gsm8k.EXEMPLARS[7][0].startswith("Olivia has $23.")
  assert tok.decode(ids) == (
      "<|user|>\nAnswer the following questions.\n\n" + shots + "\n\nQuestion: A baker makes 12 "
      "loaves in the morning and 15 in the afternoon. She sells 20. How many loaves are left?\n"
      "<|assistant|>\nAnswer:")


def test_fewer_shots_are_drawn_with_seed_42():
  want = random.Random(42).sample(list(gsm8k.EXEMPLARS), 2)
  prefix = gsm8k.prompt_prefix(list(gsm8k.EXEMPLARS), 2, random.Random(42))
  assert prefix == ("Answer the following questions.\n\n" +
                    "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in want) + "\n\n")
  assert gsm8k.prompt_prefix([], 0, random.Random(42)) == "Answer the following question.\n\n"


def test_embedded_exemplars_are_lm_evals_with_open_instructs_wording():
  path = os.path.join(REPO, "assets", "eval", "gsm8k", "cot_exemplars.jsonl")
  if not os.path.isfile(path):
    pytest.skip("assets not fetched (python -m experiments.fetch_assets --only lm_eval)")
  shots = gsm8k.load_exemplars("file", os.path.dirname(path))
  assert [q for q, _ in shots] == [q for q, _ in gsm8k.EXEMPLARS]
  assert [a.replace("The answer is", "So the answer is") for _, a in shots
         ] == [a for _, a in gsm8k.EXEMPLARS]


def test_score_uses_the_last_number(fixtures_dir):
  test = gsm8k.read_test(os.path.join(fixtures_dir, "gsm8k", "test.jsonl"))
  outputs = [
      "27 - 20 = 7. So the answer is 7.", "So the answer is 1,550.", "maybe 71",
      "The price is $20.00", "I am not sure"
  ]
  result = gsm8k.score(test, outputs)
  assert result["exact_match"] == pytest.approx(2 / 5)  # "20.00" -> "2000" != "20"
  assert [e["prediction"] for e in result["examples"]
         ] == ["7", "1550", "71", "20.00", "I am not sure"]


def test_evaluate_end_to_end_with_lora(fixtures_dir, tiny, tok, template, eval_cfg):
  config, params = tiny
  d = os.path.join(fixtures_dir, "gsm8k")
  eval_cfg.gsm8k.n_shot = 2  # a shorter prompt keeps the test fast
  result = gsm8k.evaluate(config, params, tok, d, eval_cfg.gsm8k, template=template,
                          key=jax.random.PRNGKey(0), limit=3)
  assert result["num_questions"] == 3 and 0.0 <= result["exact_match"] <= 1.0
  drawn = random.Random(42).sample(gsm8k.read_test(os.path.join(d, "test.jsonl")), 3)
  assert [e["question"] for e in result["examples"]] == [ex["question"] for ex in drawn]
  assert all(isinstance(e["output"], str) for e in result["examples"])
