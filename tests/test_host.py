"""The loop's host state: the settings a checkpoint resumes under (lead_jax/loop/host.py)."""

from configs import default
from lead_jax.loop import host


def test_settings_hold_the_shaping_fields_as_a_checkpoint_stores_them():
  config = default.get_config()
  s = host.settings(config)
  assert s["bandit.gamma"] == config.bandit.gamma and s["seed"] == config.seed
  assert s["lora.targets"] == list(config.lora.targets)  # a tuple comes back as a list
  assert s["train.batch_size"] == config.train.batch_size
  assert not any(k.startswith(("checkpoint.", "mesh.", "eval.")) for k in s)
  assert {k.split(".")[0] for k in s
         } == {"seed", "select", "bandit", "idu", "optim", "lora", "train", "loop"}


def test_changed_names_each_differing_field_and_accepts_old_checkpoints():
  config = default.get_config()
  now = host.settings(config)
  config.unlock()
  config.bandit.gamma, config.select.t_max = 0.3, 7
  saved = host.settings(config)
  assert host.changed(saved, now) == [
      f"bandit.gamma=0.3 (this run: {now['bandit.gamma']!r})",
      f"select.t_max=7 (this run: {now['select.t_max']!r})"
  ]
  assert host.changed(now, now) == [] and host.changed(None, now) == []
