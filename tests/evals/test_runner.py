"""The runner: benchmark names, the report, missing inputs."""

import pytest

from lead_jax.evals import runner


def test_unknown_benchmark_is_an_error():
  with pytest.raises(ValueError, match="unknown benchmarks"):
    runner.parse_benchmarks("mmlu,bbh")


def test_run_reports_every_benchmark(fixtures_dir, tiny, tok, eval_cfg, data_cfg):
  config, params = tiny
  eval_cfg.benchmarks = "mmlu,humaneval"
  eval_cfg.data_dir = fixtures_dir
  eval_cfg.limit = 1
  report = runner.run(config, params, tok, eval_cfg, data_cfg)
  assert set(report["summary"]) == {"mmlu", "humaneval"}
  assert report["summary"]["humaneval"] == report["benchmarks"]["humaneval"]["pass@2"]
  assert report["benchmarks"]["mmlu"]["num_questions"] == 2
  assert all(r["seconds"] >= 0 for r in report["benchmarks"].values())
  assert report["template"] == "tulu"


def test_synthetic_without_a_test_set_is_an_error(tiny, tok, eval_cfg, data_cfg):
  eval_cfg.benchmarks = "synthetic"
  with pytest.raises(ValueError, match="held-out test set"):
    runner.run(*tiny, tok, eval_cfg, data_cfg)
