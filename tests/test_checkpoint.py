"""Composite checkpoints: host state round trip, resume, interrupted saves, keep N."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import base as base_config
from lead_jax.train import checkpoint
from lead_jax.train import step as train
from test_train import close, make_batch, setup, tiny_config


def _ckpt_cfg(every=1, keep=3):
  c = base_config.get_checkpoint()
  c.every_steps, c.keep = every, keep
  return c


def _host(seed=0):
  rng = np.random.default_rng(seed)
  rng.random(3)
  return {
      "rng": rng.bit_generator.state, "iteration": 3, "name": "lead",
      "idu": {"table_N": rng.random(5), "uses_N": np.arange(5, dtype=np.uint8)}, "history": [[1, 2],
                                                                                             [0.5]],
      "beta": np.float32(0.25), "flag_N": np.array([True]), "empty": {}, "none": None
  }


def test_host_state_round_trip(tmp_path):
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  state = {"w": np.arange(4.0, dtype=np.float32)}
  assert manager.save(1, state, _host())
  restored_state, host = manager.restore(checkpoint.abstract(state))
  np.testing.assert_array_equal(restored_state["w"], state["w"])
  want = _host()
  np.testing.assert_array_equal(host["idu"]["table_N"], want["idu"]["table_N"])
  assert host["idu"]["uses_N"].dtype == np.uint8 and host["flag_N"].dtype == bool
  assert host["beta"].dtype == np.float32 and host["beta"].shape == ()
  assert host["history"] == [[1, 2], [0.5]] and host["name"] == "lead" and host["none"] is None
  rng, ref = np.random.default_rng(), np.random.default_rng()
  rng.bit_generator.state, ref.bit_generator.state = host["rng"], want["rng"]
  assert rng.random(4).tolist() == ref.random(4).tolist()
  manager.close()


def test_bad_host_state_is_rejected(tmp_path):
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  with pytest.raises(TypeError, match="host/ids"):
    manager.save(1, {"w": np.zeros(2)}, {"ids": np.array(["a", "b"])})
  with pytest.raises(TypeError, match="not a string"):
    manager.save(1, {"w": np.zeros(2)}, {3: 1})
  with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
    manager.restore({"w": jax.ShapeDtypeStruct((2,), np.float32)})


def test_keep_n_and_every_steps(tmp_path):
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg(every=2, keep=2))
  for step in range(1, 8):
    manager.save(step, {"w": np.full(2, step, np.float32)}, {"step": step})
  assert manager.all_steps() == [4, 6]
  assert manager.save(7, {"w": np.zeros(2, np.float32)}, force=True)
  assert manager.all_steps() == [6, 7]
  manager.close()


def test_resume_after_an_interrupted_save_gives_the_same_next_step(tmp_path):
  state, base, steps, _ = setup(tiny_config(), lr=1e-3)
  abstract = checkpoint.abstract(state)
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  state, _ = steps.train(state, base, make_batch(1), jax.random.key(1))
  host = {"rng": np.random.default_rng(5).bit_generator.state, "seen_N": np.arange(3)}
  manager.save(1, state, host)
  want_state, want = steps.train(state, base, make_batch(2), jax.random.key(2))  # uninterrupted
  # A save of step 2 killed half way: its temporary directory is left behind.
  tmp = tmp_path / "2.orbax-checkpoint-tmp"
  shutil.copytree(tmp_path / "1", tmp)
  shutil.rmtree(tmp / "state")
  (tmp_path / "3").mkdir()  # and a step directory that never got its contents
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  assert manager.latest_step() == 1
  saved = ocp.StandardCheckpointer().metadata(tmp_path / "1" / "state").item_metadata.tree
  assert set(saved) == {"step", "lora", "opt_state"}  # the frozen base is never written
  restored, host2 = manager.restore(abstract)
  assert restored.lora is not None and host2["rng"] == host["rng"]
  np.testing.assert_array_equal(host2["seen_N"], host["seen_N"])
  got_state, got = steps.train(restored, base, make_batch(2), jax.random.key(2))
  close(train.fetch(got), train.fetch(want), rtol=0, atol=0)
  close(jax.device_get(got_state), jax.device_get(want_state), rtol=0, atol=0)


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from configs import base
    from lead_jax.train import checkpoint
    c = base.get_checkpoint(); c.every_steps, c.keep = 1, 100
    m = checkpoint.Manager(sys.argv[1], c)
    for step in range(1, 10000):
      m.save(step, {"w": np.full((1 << 21,), step, np.float32)}, {"step": step})
""")


@pytest.mark.slow
def test_a_killed_writer_never_leaves_a_restorable_partial_checkpoint(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen([sys.executable, "-c", _WRITER,
                           str(tmp_path)], cwd=root, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=root))
  deadline = time.time() + 60
  while time.time() < deadline and len([p for p in os.listdir(tmp_path) if p.isdigit()]) < 3:
    time.sleep(0.05)
  time.sleep(0.13)  # land somewhere inside a later save
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  step = manager.latest_step()
  assert step is not None and step >= 3
  state, host = manager.restore({"w": jax.ShapeDtypeStruct((1 << 21,), np.float32)})
  assert host["step"] == step and np.all(np.asarray(state["w"]) == step)
  assert not any("tmp" in p for p in os.listdir(tmp_path))  # cleaned up by the new manager
  manager.close()


def _largest_file(step_dir):
  files = [
      os.path.join(d, f) for d, _, names in os.walk(step_dir) for f in names if f != checkpoint.SEAL
  ]
  return max(files, key=os.path.getsize)


def _flip_byte(path):
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 1)


def _unseal(step_dir):
  os.remove(os.path.join(step_dir, checkpoint.SEAL))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "unseal", "bad_seal"])
def test_a_corrupt_newest_checkpoint_is_skipped_and_the_previous_restored(tmp_path, caplog, damage):
  saver = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  for step in (1, 2, 3):
    assert saver.save(step, {"w": np.full(1000, step, np.float32)},
                      {"step": step, "ids_N": np.arange(step)})
  saver.close()
  newest = str(tmp_path / "3")
  assert os.path.exists(os.path.join(newest, checkpoint.SEAL))
  assert checkpoint.seal_problem(checkpoint.epath.Path(newest)) is None
  if damage == "flip":
    _flip_byte(_largest_file(newest))
  elif damage == "truncate":
    _truncate(_largest_file(newest))
  elif damage == "delete":
    os.remove(_largest_file(newest))
  elif damage == "unseal":
    _unseal(newest)
  else:
    with open(os.path.join(newest, checkpoint.SEAL), "w") as f:
      f.write("{not json")
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  assert manager.latest_step() == 2
  assert f"checkpoint {newest} is corrupt" in caplog.text and "skipping it" in caplog.text
  assert os.path.isdir(newest + ".corrupt") and not os.path.exists(newest)
  state, host = manager.restore({"w": jax.ShapeDtypeStruct((1000,), np.float32)})
  np.testing.assert_array_equal(state["w"], np.full(1000, 2, np.float32))
  assert host["step"] == 2 and host["ids_N"].tolist() == [0, 1]
  assert manager.save(3, {"w": np.full(1000, 3, np.float32)}, {"step": 3})  # step 3 again
  assert manager.latest_step() == 3
  manager.close()


def test_every_checkpoint_corrupt_means_a_fresh_start(tmp_path, caplog):
  saver = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  for step in (1, 2):
    saver.save(step, {"w": np.full(8, step, np.float32)}, {"step": step})
  saver.close()
  for step in (1, 2):
    _flip_byte(_largest_file(str(tmp_path / str(step))))
  manager = checkpoint.Manager(str(tmp_path), _ckpt_cfg())
  assert manager.latest_step() is None and caplog.text.count("is corrupt") == 2
  with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
    manager.restore({"w": jax.ShapeDtypeStruct((8,), np.float32)})


def test_async_saves_are_sealed_before_they_are_used(tmp_path):
  cfg = _ckpt_cfg()
  cfg.async_save = True
  manager = checkpoint.Manager(str(tmp_path), cfg)
  for step in (1, 2):
    manager.save(step, {"w": np.full(8, step, np.float32)}, {"step": step})
  assert manager.latest_step() == 2  # waits for the save, then seals it
  manager.close()
  for step in (1, 2):
    assert checkpoint.seal_problem(checkpoint.epath.Path(str(tmp_path / str(step)))) is None
