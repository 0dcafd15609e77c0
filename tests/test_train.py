"""The jitted steps: outputs, the update term, guards, accumulation, tracing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base as base_config
from lead_jax.train import build
from lead_jax.train import optim
from lead_jax.train import step as train

B, L = 8, 16


def tiny_config(**train_overrides):
  c = base_config.get_config()
  m = c.model
  m.hidden_size, m.intermediate_size, m.num_layers, m.num_heads, m.num_kv_heads = 32, 64, 2, 2, 1
  c.lora.rank, c.lora.targets = 4, (r"(q|v|down)_proj/kernel$",)
  c.optim.clip_norm = 0.0
  c.train.batch_size, c.train.projection_dim, c.train.projection_targets = B, 64, (r".*",)
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


def make_batch(seed=0, lengths=(16, 12, 9, 16, 5, 14, 16, 0)):
  rng = np.random.default_rng(seed)
  lengths = np.asarray(lengths)
  attn = np.arange(L)[None] < lengths[:, None]
  loss = attn & (np.arange(L)[None] >= (lengths // 2)[:, None])
  return {
      "tokens_BxL": np.where(attn, rng.integers(0, 200, (B, L)), 257).astype(np.int32),
      "attention_mask_BxL": attn, "loss_mask_BxL": loss, "is_pad_B": lengths == 0,
      "index_B": np.where(lengths > 0, np.arange(B), -1)
  }


def setup(c, lr=1e-3, accum_steps=1):
  c.optim.lr, c.optim.accum_steps = lr, accum_steps
  mc, base = build.load_base(c.model, c.lora, jax.random.key(0))
  tx, lr_fn = optim.make(c.optim)
  state, _ = build.init_state(mc, base, tx, jax.random.key(1))
  # b = 0 at init; give it a value so every adapter has a gradient.
  state = state.replace(lora=jax.tree.map(lambda x: x + 0.03, state.lora))
  state = state.replace(opt_state=tx.init(state.lora))
  spec = train.spec_from_config(mc, c.train, c.optim, c.seed)
  return state, base, train.compile(spec, tx, lr_fn), spec


def copy(state):
  return jax.tree.map(jnp.copy, state)


def close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.fixture(scope="module")
def main():
  """One LEAD step at lr 1e-4 (first order), shared by several tests."""
  state, base, steps, spec = setup(tiny_config(), lr=1e-4)
  batch = make_batch()
  before = copy(state)
  score_before = train.fetch(steps.score(train.params(base, before.lora), batch))
  new, out = steps.train(copy(state), base, batch, jax.random.key(9))
  return dict(state=before, base=base, steps=steps, spec=spec, batch=batch, new=new,
              out=train.fetch(out), score_before=score_before)


def test_outputs_padding_and_flags(main):
  out, batch = main["out"], main["batch"]
  np.testing.assert_allclose(out["loss_B"], main["score_before"]["loss_B"], rtol=1e-5)
  pad = batch["is_pad_B"]
  assert out["valid_B"].tolist() == (~pad).tolist() and bool(out["finite"])
  assert out["loss_B"][pad].sum() == 0 and out["dL_B"][pad].sum() == 0
  assert np.all(out["g_BxK"][pad] == 0) and out["g_BxK"].shape == (B, 64)
  np.testing.assert_allclose(out["g_mean_K"], out["g_BxK"][~pad].mean(0), rtol=1e-5, atol=1e-6)
  m = out["metrics"]
  np.testing.assert_allclose(m["loss"], out["loss_B"][~pad].mean(), rtol=1e-5)
  assert m["skipped"] == 0 and m["examples"] == 7 and m["boundary"] == 1
  assert m["tokens"] == int(batch["loss_mask_BxL"][:, 1:].sum())
  np.testing.assert_allclose(m["lr"], 1e-4)
  assert int(main["new"].step) == 1


def test_dl_is_the_first_order_change_of_each_loss(main):
  """dL_i = <g_i, delta> vs loss_i(theta + delta) - loss_i(theta), delta = applied update."""
  after = train.fetch(main["steps"].score(
      train.params(main["base"], main["new"].lora), main["batch"]))
  fd = after["loss_B"] - main["score_before"]["loss_B"]
  dl, valid = main["out"]["dL_B"], main["out"]["valid_B"]
  assert np.all(dl[valid] < 0)  # a descent step on this very batch lowers each loss
  np.testing.assert_allclose(dl[valid], fd[valid], rtol=0.03)


def test_plain_step_applies_the_same_update(main):
  state, _ = main["state"], main["steps"]
  new_plain, out = main["steps"].plain(copy(state), main["base"], main["batch"], jax.random.key(9))
  out = train.fetch(out)
  close(new_plain.lora, main["new"].lora)
  np.testing.assert_allclose(out["loss_B"], main["out"]["loss_B"], rtol=1e-5)
  np.testing.assert_allclose(out["metrics"]["grad_norm"], main["out"]["metrics"]["grad_norm"],
                             rtol=1e-5)


def test_step_traces_once_for_batches_of_one_shape(main):
  state, steps = copy(main["state"]), main["steps"]
  for seed in (1, 2, 3):
    state, _ = steps.train(state, main["base"], make_batch(seed, (16, 3, 9, 0, 0, 0, 0, 0)),
                           jax.random.key(0))
  assert steps.train._cache_size() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize("dl_method", ["jvp", "stored", "auto"])
def test_micro_batched_step_equals_single_chunk(main, dl_method):
  c = tiny_config(micro_batch=2, dl_method=dl_method)
  _, _, steps, _ = setup(c, lr=1e-4)
  base = main["base"]
  new, out = steps.train(copy(main["state"]), base, main["batch"], jax.random.key(9))
  out = train.fetch(out)
  assert int(out["metrics"]["dl_jvp"]) == (dl_method == "jvp")  # auto: the tiny LoRA fits
  for k in ("loss_B", "dL_B", "g_BxK", "valid_B"):
    np.testing.assert_allclose(out[k], main["out"][k], rtol=1e-4, atol=1e-6)
  close(new.lora, main["new"].lora)
  if dl_method == "jvp":  # the chunked plain step and forward-only paths too
    new_plain, _ = steps.plain(copy(main["state"]), base, main["batch"], jax.random.key(9))
    close(new_plain.lora, main["new"].lora)
    score = train.fetch(steps.score(train.params(base, main["state"].lora), main["batch"]))
    np.testing.assert_allclose(score["loss_B"], main["score_before"]["loss_B"], rtol=1e-5)
    proj = train.fetch(steps.project(train.params(base, main["state"].lora), main["batch"]))
    np.testing.assert_allclose(proj["g_BxK"], main["out"]["g_BxK"], rtol=1e-4, atol=1e-6)
    assert proj["valid_B"].tolist() == main["out"]["valid_B"].tolist()


def test_auto_dl_method_keeps_gradients_only_within_the_memory_cap(main):
  lora = main["state"].lora
  size = sum(x.size for x in jax.tree.leaves(lora))
  fits = train.DL_STORED_MAX_BYTES // (4 * size)  # rows whose gradients fit the cap
  model = main["spec"].model
  spec = lambda method, micro: train.StepSpec(model, micro, None, method)
  assert train.keeps_grads(spec("auto", 1), lora, fits)
  assert not train.keeps_grads(spec("auto", 1), lora, fits + 1)
  assert train.keeps_grads(spec("stored", 1), lora, fits + 1)
  assert not train.keeps_grads(spec("jvp", 1), lora, 2)
  assert train.keeps_grads(spec("jvp", 2), lora, 2)  # one chunk: the gradients are there
  with pytest.raises(ValueError, match="dl_method"):
    spec("fast", 1)


def test_non_finite_step_is_skipped_and_flagged(main):
  state, batch = copy(main["state"]), dict(main["batch"])
  batch["tokens_BxL"] = batch["tokens_BxL"].copy()
  batch["tokens_BxL"][1, 2] = 250  # the only row holding token 250
  embed = main["base"]["embed"]["embedding"].at[250].set(jnp.nan)
  base = {**main["base"], "embed": {"embedding": embed}}
  kept = copy(state)
  new, out = main["steps"].train(state, base, batch, jax.random.key(9))
  out = train.fetch(out)
  assert not out["finite"] and out["metrics"]["skipped"] == 1
  assert out["finite_B"].tolist() == [True, False] + [True] * 6
  assert not out["valid_B"].any()
  for k in ("loss_B", "dL_B", "g_BxK", "g_mean_K"):
    assert np.isfinite(out[k]).all() and not out["dL_B"].any()
  assert int(new.step) == int(kept.step)
  close(new.lora, kept.lora, rtol=0, atol=0)
  close(new.opt_state, kept.opt_state, rtol=0, atol=0)


def test_accumulation_applies_once_per_window(main):
  state, base, steps, _ = setup(tiny_config(), lr=1e-3, accum_steps=2)
  lora0 = copy(state.lora)
  state, out1 = steps.train(state, base, main["batch"], jax.random.key(0))
  out1 = train.fetch(out1)
  close(state.lora, lora0, rtol=0, atol=0)  # inside the window: zero update
  assert out1["metrics"]["boundary"] == 0 and not out1["dL_B"].any() and out1["valid_B"].any()
  state, out2 = steps.train(state, base, make_batch(4), jax.random.key(1))
  out2 = train.fetch(out2)
  assert out2["metrics"]["boundary"] == 1 and np.all(out2["dL_B"][out2["valid_B"]] < 0)
  assert not np.allclose(jax.tree.leaves(state.lora)[0], jax.tree.leaves(lora0)[0])


def test_score_step_with_response_view(main):
  steps, batch = main["steps"], main["batch"]
  view = dict(batch, loss_mask_BxL=batch["loss_mask_BxL"] & (np.arange(L) >= 10))
  params = train.params(main["base"], main["state"].lora)
  both = train.fetch(steps.score(params, batch, view))
  np.testing.assert_allclose(both["loss_B"], main["score_before"]["loss_B"], rtol=1e-6)
  alone = train.fetch(steps.score(params, view))
  np.testing.assert_allclose(both["response_loss_B"], alone["loss_B"], rtol=1e-6)
  assert both["response_tokens_B"].tolist() == alone["tokens_B"].tolist()


def test_schedules():
  c = base_config.get_optim()
  c.lr, c.schedule, c.decay_every, c.decay_rate = 1.0, "step_decay", 8, 0.995
  f = optim.schedule(c)
  assert [float(f(s)) for s in (0, 7, 8, 17)] == pytest.approx([1, 1, 0.995, 0.995**2])
  c.schedule, c.warmup_steps, c.total_steps = "linear", 4, 12
  f = optim.schedule(c)
  assert [float(f(s)) for s in (0, 2, 4, 8, 12)] == pytest.approx([0, 0.5, 1, 0.5, 0])
  c.schedule = "cosine"
  with pytest.raises(ValueError, match="optim.schedule"):
    optim.schedule(c)


def test_bad_batch_is_rejected_with_a_clear_error(main):
  batch = dict(main["batch"])
  del batch["loss_mask_BxL"]
  with pytest.raises(KeyError, match="loss_mask_BxL"):
    main["steps"].score(train.params(main["base"], main["state"].lora), batch)
