"""lead_jax.api.LeadSelector driven by hand with a loop run's per-example
outputs makes the loop's selections, probabilities, rewards and IDU table.

The loop runs in-process on tests/loop_config.py, shrunk further (one layer,
one bucket, 120 samples, no warmup epoch: about 15 s on 2 shared cores, mostly
compilation). The loop does not write its per-example outputs, so the fixture
wraps `iteration._train_pass` to keep each iteration's `idu.StepOutputs` and
learning rate, exactly what its IDU update reads; selections and
probabilities come from the loop's own selected.jsonl and bandit.jsonl.
"""

import os

import loop_config
import numpy as np
import pytest

from lead_jax import api, loop, metrics, outputs
from lead_jax.loop import host, iteration

BATCH = 8  # train.batch_size of tests/loop_config.py: observe one step's rows at a time


def _config():
  c = loop_config.get_config()
  m = c.model
  m.hidden_size, m.intermediate_size, m.num_layers = 32, 64, 1
  c.data.buckets, c.data.max_length, c.data.synthetic.size = (64,), 64, 120
  c.offline.score_batch_size, c.offline.warmup_fraction = 40, 0.1
  c.offline.warmup_epochs = 0  # IFD under the untrained warmup adapters: no warmup step to compile
  c.select.sample_rate, c.select.budget_fraction = 0.08, 0.3
  c.loop.plots = False
  return c


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
  config, workdir = _config(), str(tmp_path_factory.mktemp("api_loop"))
  captured, original = [], iteration._train_pass

  def capture(run, state, h, orders, replay_R):
    out = original(run, state, h, orders, replay_R)
    captured.append((out[1], out[2]["lr"]))  # (StepOutputs or None, lr)
    return out

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(iteration, "_train_pass", capture)
    run, state, _, ledger = loop.setup(config, workdir)
    h = host.initial(run, ledger)
    files, writer = outputs.Files(workdir), metrics.Writer(workdir)
    while not run.selector.done(h.sel):
      state, h = iteration.run_iteration(run, state, h, files, writer)
    writer.close()
  return {
      "config": config, "run": run, "host": h, "captured": captured,
      "selected": outputs.read_jsonl(os.path.join(workdir, "selected.jsonl")),
      "bandit": outputs.read_jsonl(os.path.join(workdir, "bandit.jsonl"))
  }


def _selector(loop_run, **kwargs) -> api.LeadSelector:
  run = loop_run["run"]
  return api.LeadSelector.from_offline(run.offline, run.pool.task_N, loop_run["config"],
                                       loop_run["config"].seed, proj_dim=run.proj_dim,
                                       num_tasks=len(run.pool.task_names), **kwargs)


def _observe(sel, outs, lr, rows=slice(None), batch=BATCH):
  """Feeds the loop's rows `rows` of one iteration (default: all, padding
  included), `batch` rows (a training step's) at a time."""
  infos = []
  index = np.arange(outs.index_B.shape[0])[rows]
  for s in range(0, index.size, batch):
    r = index[s:s + batch]
    infos.append(
        sel.observe(outs.index_B[r], outs.loss_B[r], outs.dL_B[r], outs.g_BxK[r],
                    valid_B=outs.finite_B[r], lr=lr))
  return infos


def test_the_selector_repeats_the_loop(loop_run):
  sel, h = _selector(loop_run), loop_run["host"]
  assert len(loop_run["bandit"]) == len(loop_run["captured"]) >= 3
  p_first, p_last = (loop_run["bandit"][t]["probabilities"] for t in (0, -1))
  assert p_first != p_last  # the bandit learnt something: the comparison is not of constants
  for t, (line, (outs, lr)) in enumerate(zip(loop_run["bandit"], loop_run["captured"])):
    assert not sel.done
    ids_S = sel.propose()
    picked = [r["id"] for r in loop_run["selected"] if r["iteration"] == t]
    assert sorted(ids_S.tolist()) == sorted(picked)
    if outs is None:  # an exhausted cluster: nothing proposed, nothing learnt
      assert ids_S.size == 0
      continue
    np.testing.assert_array_equal(ids_S, outs.index_B[outs.index_B >= 0])  # the training order
    infos = _observe(sel, outs, lr)
    assert [i.ended for i in infos] == [False] * (len(infos) - 1) + [True]
    last = infos[-1]
    assert (last.iteration, last.arm) == (t, line["arm"])
    assert last.p_C.tolist() == line["probabilities"]  # exactly, as the loop wrote them
    assert last.reward == line["reward"] and last.log_w_C.tolist() == line["log_weights"]
  assert sel.done and sel.iteration == h.sel.iteration
  np.testing.assert_array_equal(sel.idu_N, h.table.idu_N)
  np.testing.assert_array_equal(sel.use_count_N, h.sel.use_count_N)
  assert not np.array_equal(sel.idu_N, loop_run["run"].offline.idu0_N)  # the utility moved
  np.testing.assert_allclose(sel.probabilities().sum(), 1.0)


def test_create_clusters_the_ifd_as_the_offline_stage(loop_run):
  run, config = loop_run["run"], loop_run["config"]
  np.testing.assert_array_equal(
      api.offline.clusters(run.offline.ifd_raw_N, config, config.seed), run.offline.cluster_N)
  sel = api.LeadSelector.create(run.pool.task_N, run.offline.ifd_raw_N, run.offline.idu0_N, config,
                                config.seed, proj_dim=run.proj_dim,
                                num_tasks=len(run.pool.task_names))
  np.testing.assert_array_equal(sel.propose(), _selector(loop_run).propose())


def test_state_round_trips_through_npz_mid_iteration(loop_run, tmp_path):
  outs, lr = loop_run["captured"][0]
  whole, half = _selector(loop_run), _selector(loop_run)
  whole.propose()
  expected = _observe(whole, outs, lr)[-1]
  half.propose()
  real = np.flatnonzero(outs.index_B >= 0)
  assert not _observe(half, outs, lr, real[:3], batch=2)[-1].ended
  np.savez(tmp_path / "sel.npz", **half.state())
  with np.load(tmp_path / "sel.npz", allow_pickle=False) as f:
    resumed = api.LeadSelector.from_state(dict(f), loop_run["config"])
  np.testing.assert_array_equal(resumed.propose(), half.propose())  # the iteration in flight
  got = _observe(resumed, outs, lr, real[3:], batch=2)[-1]
  assert got.ended and got.reward == expected.reward
  np.testing.assert_array_equal(resumed.idu_N, whole.idu_N)
  np.testing.assert_array_equal(resumed.propose(), whole.propose())  # the same next draw


def test_bad_input_is_a_value_error_that_says_what_to_do(loop_run):
  sel = _selector(loop_run)
  with pytest.raises(ValueError, match="call propose"):
    sel.observe([0], [1.0], [0.0])
  ids_S = sel.propose()
  stray = int(np.setdiff1d(np.arange(120), ids_S)[0])
  with pytest.raises(ValueError, match=rf"ids \[{stray}\] were not proposed"):
    sel.observe([stray], [1.0], [0.0])
  with pytest.raises(ValueError, match=r"loss_B has shape \(1,\); expected shape \(2,\)"):
    sel.observe(ids_S[:2], [1.0], [0.0, 0.0])
  with pytest.raises(ValueError, match="g_BxK has shape"):
    sel.observe(ids_S[:1], [1.0], [0.0], np.zeros((1, 3)))
  with pytest.raises(ValueError, match="needs dL_B"):
    sel.observe(ids_S[:1], [1.0])
  with pytest.raises(ValueError, match="nothing observed"):
    sel.end_iteration()
  config = _config()
  config.select.clusters_per_iteration = 2
  with pytest.raises(ValueError, match="clusters_per_iteration=2"):
    _selector(dict(loop_run, config=config))
  config = _config()
  config.idu.reference = "warmup"
  with pytest.raises(ValueError, match="pass reference_N"):
    _selector(dict(loop_run, config=config), reference_N=None)
  with pytest.raises(ValueError, match=r"cluster_N has shape \(3,\)"):
    api.LeadSelector.from_clusters(np.zeros(4, int), np.zeros(3, int), np.ones(4), _config(), 0)
  while not sel.done:  # observe after done
    ids_S = sel.propose()
    if ids_S.size:
      sel.observe(ids_S, np.ones(ids_S.size), np.zeros(ids_S.size), np.zeros((ids_S.size, 64)))
  with pytest.raises(ValueError, match="done"):
    sel.observe(ids_S[:1], [1.0], [0.0])
  with pytest.raises(ValueError, match="done"):
    sel.propose()
