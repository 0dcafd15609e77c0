"""The selection export (lead_jax.selection.export, experiments.export_selection):
the pool's own records, in order, with a checksum; bad input is one line."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs import base_data
from lead_jax.data import DataError
from lead_jax.selection import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL = [{
    "dataset": "math" if i % 2 else "chat", "id": f"s{i}", "tier": "clean",
    "messages": [{"role": "user", "content": f"q{i} é"}, {"role": "assistant", "content": f"a{i}"}]
} for i in range(6)]


def _workdir(tmp_path, pool_text, name="pool.jsonl", lines=(), final=None, run="run", **data):
  pool = tmp_path / name
  pool.write_text(pool_text, encoding="utf-8")
  cfg = base_data.get().to_dict()
  cfg.update(train_path=str(pool), **data)
  work = tmp_path / run
  work.mkdir()
  (work / "config.json").write_text(json.dumps({"data": cfg, "method": "lead"}))
  (work / "selected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
  if final is not None:
    (work / "final_metrics.json").write_text(json.dumps(final))
  return str(work)


def _line(sid, task, it, **extra):
  return {"id": 0, "source_id": sid, "task": task, "iteration": it, **extra}


def _read(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _messages_pool_run(tmp_path, final=None):
  lines = [
      _line("s3", "math", 0),
      _line("s0", "chat", 0),
      _line("s3", "math", 1),
      _line("s5", "math", 1)
  ]
  text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in POOL)
  return _workdir(tmp_path, text, lines=lines, final=final)


def test_unique_keeps_the_pool_records_in_first_selection_order(tmp_path):
  work = _messages_pool_run(tmp_path)
  out = str(tmp_path / "sel.jsonl")
  n, digest = export.write(work, out)
  got = _read(out)
  assert n == 3 and got == [POOL[3], POOL[0], POOL[5]]  # every field, tier included
  for r in got:  # the schema TRL's SFTTrainer and open-instruct read
    assert all(set(m) == {"role", "content"} for m in r["messages"])
  data = pathlib.Path(out).read_bytes()
  assert digest == hashlib.sha256(data).hexdigest()
  assert pathlib.Path(out + ".sha256").read_text() == f"{digest}  sel.jsonl\n"
  assert "é" in data.decode("utf-8")  # written as UTF-8, not escaped


def test_with_repeats_counts_every_training_pass(tmp_path):
  work = _messages_pool_run(tmp_path, final={"train_sample_passes": 4})
  out = str(tmp_path / "rep.jsonl")
  assert export.write(work, out, repeats=True)[0] == 4
  assert [r["id"] for r in _read(out)] == ["s3", "s0", "s3", "s5"]


def test_with_repeats_refuses_a_count_it_cannot_vouch_for(tmp_path):
  work = _messages_pool_run(tmp_path, final={"train_sample_passes": 10})  # e.g. 2.5 epochs
  with pytest.raises(DataError, match=r"selected.jsonl: lists 4 sample-passes but the run "
                     r"trained 10"):
    export.write(work, str(tmp_path / "x.jsonl"), repeats=True)
  os.remove(os.path.join(work, "final_metrics.json"))
  with pytest.raises(DataError, match="final_metrics.json: not found, the run has not finished"):
    export.write(work, str(tmp_path / "x.jsonl"), repeats=True)
  assert not os.path.exists(tmp_path / "x.jsonl")


def test_replay_lines_count_their_passes(tmp_path):
  lines = [_line("s1", "math", 0, passes=3), _line("s2", "chat", 0, passes=0)]
  text = "".join(json.dumps(r) + "\n" for r in POOL)
  work = _workdir(tmp_path, text, lines=lines, final={"train_sample_passes": 3})
  out = str(tmp_path / "rep.jsonl")
  assert export.write(work, out, repeats=True)[0] == 3
  assert export.write(work, out)[0] == 2  # unique: every selected sample, trained or not


def test_an_alpaca_array_stays_alpaca_and_auto_ids_match(tmp_path):
  pool = [{"instruction": f"do {i}", "output": f"done {i}", "extra": i} for i in range(4)]
  lines = [_line("tasks:2", "tasks", 0), _line("tasks:0", "tasks", 0)]  # <stem>:<ordinal> ids
  work = _workdir(tmp_path, json.dumps(pool, indent=1), name="tasks.json", lines=lines)
  out = str(tmp_path / "a.jsonl")
  export.write(work, out)
  assert _read(out) == [pool[2], pool[0]]


def test_a_sample_not_in_the_pool_is_an_error(tmp_path):
  text = "".join(json.dumps(r) + "\n" for r in POOL)
  work = _workdir(tmp_path, text, lines=[_line("s1", "math", 0), _line("gone", "math", 1)])
  with pytest.raises(
      DataError, match=r"selected.jsonl:2: sample 'gone' \(math\) is not in the "
      r"pool .*pool.jsonl; the pool file changed"):
    export.write(work, str(tmp_path / "x.jsonl"))
  work2 = _workdir(tmp_path, text, lines=[_line("s1", "chat", 0)], run="run2")  # s1: math
  with pytest.raises(DataError, match="'s1' \\(chat\\) is not in the pool"):
    export.write(work2, str(tmp_path / "x.jsonl"))


def test_missing_files_are_one_line_errors(tmp_path):
  work = _messages_pool_run(tmp_path)
  os.remove(os.path.join(work, "selected.jsonl"))
  with pytest.raises(DataError, match=r"run/selected.jsonl: not found; pass --workdir"):
    export.write(work, str(tmp_path / "x.jsonl"))
  with pytest.raises(DataError, match=r"config.json: not found"):
    export.write(str(tmp_path), str(tmp_path / "x.jsonl"))
  (tmp_path / "run" / "selected.jsonl").write_text("[1, 2]\n")
  with pytest.raises(DataError, match=r"selected.jsonl:1: not a selected.jsonl line"):
    export.write(work, str(tmp_path / "x.jsonl"))
  (tmp_path / "run" / "selected.jsonl").write_text(json.dumps(_line("s1", "math", 0)) + "\n")
  with pytest.raises(DataError, match=r"pool.jsonl: is the file the export reads"):
    export.write(work, str(tmp_path / "pool.jsonl"))
  os.remove(tmp_path / "pool.jsonl")
  (tmp_path / "run" / "selected.jsonl").write_text(json.dumps(_line("s1", "math", 0)) + "\n")
  with pytest.raises(DataError, match=r"pool.jsonl: the pool file of .* is not there"):
    export.write(work, str(tmp_path / "x.jsonl"))


def test_the_command_prints_the_count_and_checksum_and_fails_in_one_line(tmp_path):
  work = _messages_pool_run(tmp_path, final={"train_sample_passes": 4})
  out = str(tmp_path / "sel.jsonl")
  cmd = [sys.executable, "-m", "experiments.export_selection", "--workdir", work, "--out", out]
  proc = subprocess.run(cmd + ["--with-repeats"], cwd=ROOT, capture_output=True, text=True,
                        check=False)
  assert proc.returncode == 0, proc.stderr
  digest = hashlib.sha256(pathlib.Path(out).read_bytes()).hexdigest()
  assert proc.stdout == f"wrote 4 records to {out} (sha256 {digest}; {out}.sha256)\n"
  os.remove(os.path.join(work, "selected.jsonl"))
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1
  assert proc.stderr.startswith(f"error: {work}/selected.jsonl: not found")
