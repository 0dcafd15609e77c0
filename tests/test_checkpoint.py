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
