"""MMLU: CSV reading, the exact 5-shot prompt, and the evaluator end to end."""

import os

import jax
import numpy as np
import pytest

from lead_jax.model import decoder as model
from lead_jax.evals import mmlu


def test_read_csv_reads_cells_like_pandas(tmp_path):
  path = tmp_path / "x_test.csv"
  path.write_text(
      '"Q, with ""quotes""\nand a newline",None,1,0.5,True,A\n'
      'Plain?,NA,2,,False,B\n'
      'Third?,text,3,7,True,C\n', encoding="utf-8")
  qs = mmlu.read_csv(str(path))
  assert qs[0].question == 'Q, with "quotes"\nand a newline'
  assert [q.choices for q in qs] == [("nan", "1", "0.5", "True"), ("nan", "2", "nan", "False"),
                                     ("text", "3", "7.0", "True")]
  assert [q.answer for q in qs] == ["A", "B", "C"]


def test_read_csv_rejects_bad_rows(tmp_path):
  path = tmp_path / "bad_test.csv"
  path.write_text("q,a,b,c,d\n", encoding="utf-8")
  with pytest.raises(ValueError, match="question,A,B,C,D,answer"):
    mmlu.read_csv(str(path))
  path.write_text("q,a,b,c,d,E\n", encoding="utf-8")
  with pytest.raises(ValueError, match="not one of"):
    mmlu.read_csv(str(path))


EXPECTED_PROMPT = (
    "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
    "Find the order of the element 2 in the group Z_6 under addition.\n"
    "A. 1\nB. 2\nC. 3\nD. 6\nAnswer: C\n\n"
    "Which of the following is a field?\nA. Z_4\nB. Z_6\nC. Z_7\nD. Z_8\nAnswer: C\n\n"
    "Statement 1 | Every group of order 4 is cyclic. Statement 2 | Every cyclic group is "
    "abelian.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: D\n\n"
    "How many elements does the symmetric group S_3 have?\nA. 3\nB. 6\nC. 9\nD. 12\n"
    "Answer: B\n\n"
    "The identity element of the group of nonzero rationals under multiplication is\n"
    "A. 0\nB. 1\nC. -1\nD. 2\nAnswer: B\n\n"
    "Let H be a subgroup of G, with |G| = 12.\nWhich order can H have?\n"
    "A. 5\nB. 7\nC. 8\nD. 6\nAnswer:")


def test_five_shot_prompt_is_exact(fixtures_dir, tok):
  d = os.path.join(fixtures_dir, "mmlu")
  dev = mmlu.read_csv(os.path.join(d, "dev", "abstract_algebra_dev.csv"))
  test = mmlu.read_csv(os.path.join(d, "test", "abstract_algebra_test.csv"))
  assert mmlu.build_prompt(tok, dev, "abstract_algebra", test[3], 5, 2048) == EXPECTED_PROMPT


def test_long_prompts_drop_shots_from_the_end(fixtures_dir, tok):
  d = os.path.join(fixtures_dir, "mmlu")
  dev = mmlu.read_csv(os.path.join(d, "dev", "abstract_algebra_dev.csv"))
  test = mmlu.read_csv(os.path.join(d, "test", "abstract_algebra_test.csv"))
  two_shots = mmlu.few_shot_prefix(dev, "abstract_algebra", 2) + mmlu.format_example(
      test[3], include_answer=False)
  limit = len(tok.encode(two_shots, add_special_tokens=False))  # bytes = tokens here
  assert mmlu.build_prompt(tok, dev, "abstract_algebra", test[3], 5, limit) == two_shots
  assert mmlu.build_prompt(tok, dev, "abstract_algebra", test[3], 5,
                           limit - 1).count("Answer: ") == 1


def test_limit_draws_like_pandas_sample():
  # DataFrame.sample(n, random_state=42) calls RandomState(42).choice(N, n, replace=False).
  want = np.random.RandomState(42).choice(20, 5, replace=False)
  np.testing.assert_array_equal(mmlu.sample_indices(20, 5), want)
  np.testing.assert_array_equal(mmlu.sample_indices(3, 5), [0, 1, 2])


def test_candidates_are_the_last_tokens_of_space_letter(tok):
  assert mmlu.candidate_ids(tok) == [ord(c) for c in "ABCD"]


def test_evaluate_end_to_end_with_lora(fixtures_dir, tiny, tok, eval_cfg):
  config, params = tiny
  data_dir = os.path.join(fixtures_dir, "mmlu")
  result = mmlu.evaluate(config, params, tok, data_dir, eval_cfg.mmlu)
  assert result["num_questions"] == 7
  assert set(result["per_subject"]) == {"abstract_algebra", "high_school_geography"}
  # The same accuracy from a plain forward pass over right-padded prompts.
  prompts, answers = [], []
  for subject in ("abstract_algebra", "high_school_geography"):
    dev = mmlu.read_csv(os.path.join(data_dir, "dev", f"{subject}_dev.csv"))
    for q in mmlu.read_csv(os.path.join(data_dir, "test", f"{subject}_test.csv")):
      prompts.append(tok.encode(mmlu.build_prompt(tok, dev, subject, q, 5, 2048)))
      answers.append(q.answer)
  tokens = np.zeros((len(prompts), max(map(len, prompts))), np.int32)
  for row, ids in enumerate(prompts):
    tokens[row, :len(ids)] = ids
  logits = np.asarray(jax.jit(model.forward, static_argnums=0)(config, params, tokens))
  picks = [
      int(np.argmax(logits[r, len(ids) - 1][mmlu.candidate_ids(tok)]))
      for r, ids in enumerate(prompts)
  ]
  correct = [mmlu.CHOICES[p] == a for p, a in zip(picks, answers)]
  assert result["accuracy"] == pytest.approx(np.mean(correct))
  limited = mmlu.evaluate(config, params, tok, data_dir, eval_cfg.mmlu, limit=2)
  assert limited["num_questions"] == 4
