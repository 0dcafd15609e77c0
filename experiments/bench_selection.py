r"""Benchmark of one LEAD selection step on a large synthetic pool.

  python -m experiments.bench_selection            # N = 10M, K = 7, 8 tasks

Host only (NumPy), a few seconds on a 2-core CPU including the pool set-up. One
step = bandit draw + two-stage selection + use-count update (the per-iteration
host work between training passes); the IDU-table update for the selected set
is timed separately. The last line printed is a JSON object with
`seconds_per_step` (median over steps) and `bytes_per_sample` (persistent
per-sample host state: IDU, use count, cluster, task, strata order).
"""

import json
import time

from absl import app
from absl import flags
import numpy as np

from configs import base_lead
from lead_jax import bandit
from lead_jax import idu
from lead_jax import selection

_N = flags.DEFINE_integer("num_pool", 10_000_000, "Pool size N.")
_K = flags.DEFINE_integer("num_clusters", 7, "Clusters (bandit arms).")
_T = flags.DEFINE_integer("num_tasks", 8, "Source tasks.")
_STEPS = flags.DEFINE_integer("steps", 20, "Selection steps at most (T_max; stops at the budget).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic pool and draws.")


def _synthetic_pool(rng, n, k, t):
  cluster_N = rng.integers(0, k, n, dtype=np.uint8)
  task_N = rng.integers(0, t, n, dtype=np.uint16)
  idu0_N = rng.gamma(2.0, 1.0, n).astype(np.float32)
  return cluster_N, task_N, idu0_N


def _fake_outputs(rng, ids_S) -> idu.StepOutputs:
  s = ids_S.shape[0]
  return idu.StepOutputs(
      index_B=ids_S.astype(np.int32), loss_B=rng.gamma(2.0, 1.0, s).astype(np.float32),
      finite_B=np.ones(s, bool), dL_B=rng.normal(0.0, 0.01, s).astype(np.float32))


def main(argv):
  del argv
  cfg = base_lead.get()
  cfg.select.budget_fraction = 0.025
  rng = np.random.default_rng(_SEED.value)
  n, k = _N.value, _K.value
  cluster_N, task_N, idu0_N = _synthetic_pool(rng, n, k, _T.value)
  t0 = time.perf_counter()
  layout = selection.build_layout(cluster_N, task_N, k, _T.value)
  layout_seconds = time.perf_counter() - t0
  selector = selection.make("lead", cfg.select, layout)
  sel_state = selection.init_state(n)
  idu_state = idu.init(idu0_N, k, 8)
  bandit_state = bandit.init(k)
  select_times, idu_times, sizes = [], [], []
  for _ in range(_STEPS.value):
    if selector.done(sel_state):
      break
    t0 = time.perf_counter()
    arm, _ = bandit.draw(bandit_state, cfg.bandit, rng)
    ids_S = selector.select(sel_state, selection.Inputs(arm, idu_state.idu_N), rng)
    sel_state = selection.record(sel_state, ids_S)
    select_times.append(time.perf_counter() - t0)
    sizes.append(int(ids_S.size))
    outputs = _fake_outputs(rng, ids_S)
    t0 = time.perf_counter()
    idu_state, info = idu.update(idu_state, cfg.idu, outputs, cluster=arm, lr=2e-5)
    bandit_state = bandit.update(bandit_state, cfg.bandit, arm, idu.reward(cfg.bandit.reward, info))
    idu_times.append(time.perf_counter() - t0)
  state_bytes = (layout.nbytes() + sel_state.use_count_N.nbytes + idu_state.idu_N.nbytes)
  result = {
      "num_pool": n,
      "num_clusters": k,
      "num_tasks": _T.value,
      "steps": len(select_times),
      "seconds_per_step": round(float(np.median(select_times)), 4),
      "max_seconds_per_step": round(float(np.max(select_times)), 4),
      "idu_update_seconds_per_step": round(float(np.median(idu_times)), 4),
      "layout_build_seconds": round(layout_seconds, 3),
      "selected_per_step": int(np.median(sizes)),
      "distinct_selected": sel_state.num_distinct,
      "bytes_per_sample": round(state_bytes / n, 3),
  }
  print(f"LEAD selection step, N={n:,}: {result['seconds_per_step']} s median, "
        f"{result['bytes_per_sample']} bytes/sample of host state")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
