"""HumanEval: problems, the check program, sandboxed scoring and pass@k, end to end."""

import os

import jax
import pytest

from lead_jax.evals import humaneval


@pytest.fixture(scope="module")
def problems(fixtures_dir):
  path = humaneval.find_file(os.path.join(fixtures_dir, "humaneval"))
  assert path.endswith("HumanEval.jsonl.gz")
  return humaneval.read_problems(path)


def test_read_problems(problems):
  assert [p["task_id"] for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
  assert problems[0]["entry_point"] == "add_one"


def test_check_program_is_human_evals(problems):
  p = problems[0]
  program = humaneval.check_program(p, "    return x + 1\n")
  assert program == p["prompt"] + "    return x + 1\n" + "\n" + p["test"] + "\n" + "check(add_one)"


def test_canonical_solutions_pass_and_wrong_ones_fail(problems, eval_cfg):
  cfg = eval_cfg.humaneval  # 2 samples per problem, k in (1, 2)
  completions = [
      problems[0]["canonical_solution"],
      "    return x + 2\n",  # 1 of 2 correct
      problems[1]["canonical_solution"],
      problems[1]["canonical_solution"],  # 2 of 2
      "    while True:\n        pass\n",
      "    import os\n    os._exit(0)\n",  # 0 of 2
  ]
  cfg.timeout_s = 1.0
  result = humaneval.score(problems, completions, cfg)
  assert result["per_problem"] == {"HumanEval/0": 1, "HumanEval/1": 2, "HumanEval/2": 0}
  assert result["pass@1"] == pytest.approx((0.5 + 1 + 0) / 3)
  assert result["pass@2"] == pytest.approx((1 + 1 + 0) / 3)
  assert result["statuses"] == {"passed": 3, "failed": 2, "timeout": 1}


def test_completions_and_problems_must_agree(problems, eval_cfg):
  with pytest.raises(ValueError, match="completions"):
    humaneval.score(problems, ["x"], eval_cfg.humaneval)


def test_evaluate_end_to_end_with_lora(fixtures_dir, tiny, tok, eval_cfg):
  config, params = tiny
  result = humaneval.evaluate(config, params, tok, os.path.join(fixtures_dir, "humaneval"),
                              eval_cfg.humaneval, key=jax.random.PRNGKey(0), limit=2)
  assert result["num_problems"] == 2 and result["samples_per_problem"] == 2
  assert sum(result["statuses"].values()) == 4
  assert set(result) >= {"pass@1", "pass@2"}
  assert 0.0 <= result["pass@1"] <= 1.0
