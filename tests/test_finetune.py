"""The finetune job end to end: runs, writes its outputs, resumes exactly."""

import json
import os
import signal

import pytest

from lead_jax import metrics, preempt
from lead_jax.train import finetune
from lead_jax.data import synthetic
from test_train import tiny_config


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
  return synthetic.write_lake(
      str(tmp_path_factory.mktemp("lake")), seed=0, size=96, test_per_task=2, dev_per_task=1)


def _config(lake, max_steps):
  c = tiny_config()
  c.train.max_steps, c.train.log_every = max_steps, 1
  c.checkpoint.every_steps = 2
  c.data.train_path, c.data.test_path = lake["train"], lake["test"]
  c.data.max_length = 96
  return c


def test_finetune_resumes_to_the_same_result(lake, tmp_path):
  whole = finetune.run(_config(lake, 3), str(tmp_path / "whole"))
  assert whole["test_loss"] < whole["test_loss_initial"]
  assert os.path.exists(tmp_path / "whole" / "config.json")
  assert os.listdir(tmp_path / "whole" / metrics.TENSORBOARD)

  finetune.run(_config(lake, 2), str(tmp_path / "cut"))  # stops (as if killed) after step 2
  resumed = finetune.run(_config(lake, 3), str(tmp_path / "cut"))
  for key in ("test_loss_initial", "test_loss", "train_steps", "skipped_steps"):
    assert resumed[key] == whole[key], key
  train_records = lambda d: [r for r in metrics.read(str(d)) if r["split"] == "train"]
  assert train_records(tmp_path / "cut") == train_records(tmp_path / "whole")
  assert [r["split"] for r in metrics.read(str(tmp_path / "cut"))].count("final") == 1
  saved = json.load(open(tmp_path / "cut" / "final_metrics.json"))
  assert saved["test_loss"] == whole["test_loss"]
  books = [json.load(open(tmp_path / d / "accounting.json")) for d in ("whole", "cut")]
  assert books[0]["phases"] == books[1]["phases"]  # the resumed run continues the count
  trained = books[0]["phases"]["training"]["activities"]["train"]
  assert trained["forward_samples"] == trained["backward_samples"] == (
      3 * _config(lake, 3).train.batch_size)
  scored = books[0]["phases"]["evaluation"]["activities"]["test_loss"]["forward_samples"]
  assert scored == 2 * sum(1 for _ in open(lake["test"]))  # before and after training


def test_a_signal_checkpoints_the_step_and_the_rerun_resumes(lake, tmp_path, monkeypatch):
  whole = finetune.run(_config(lake, 3), str(tmp_path / "whole"))
  gather, calls = finetune.data.gather, [0]

  def gather_and_signal(*args, **kwargs):  # SIGTERM while the batch of step 2 is drawn
    calls[0] += 1
    if calls[0] == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return gather(*args, **kwargs)

  monkeypatch.setattr(finetune.data, "gather", gather_and_signal)
  with pytest.raises(preempt.Preempted,
                     match="stopped by SIGTERM after step 2; checkpoint in") as e:
    finetune.run(_config(lake, 3), str(tmp_path / "cut"))
  assert e.value.exit_status == 143
  assert not os.path.exists(tmp_path / "cut" / "final_metrics.json")
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone again
  monkeypatch.setattr(finetune.data, "gather", gather)
  resumed = finetune.run(_config(lake, 3), str(tmp_path / "cut"))
  for key in ("test_loss_initial", "test_loss", "train_steps", "skipped_steps"):
    assert resumed[key] == whole[key], key
