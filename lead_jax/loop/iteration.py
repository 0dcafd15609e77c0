"""One iteration of the loop: select, train, learn, write the outputs.

With select.clusters_per_iteration = m > 1 the bandit draws m distinct arms,
each cluster is selected as one alone, the union trains in one pass and every
arm gets its own IDU update, reward and bandit update (`_learn_arms`); with
loop.replay_fraction > 0 the pass also replays earlier selected samples,
which neither update the IDU table nor enter the reward (`lead_jax.loop.schedule`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from lead_jax import accounting, bandit, data, idu, metrics, outputs
from lead_jax.offline import clustering
from lead_jax.train import passes
from lead_jax.train import scoring
from lead_jax import selection
from lead_jax.loop import schedule as schedule_lib
from lead_jax.loop.host import Host, generator
from lead_jax.loop.setup import Run


def _schedule(run: Run, ids_S: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
  """The training order of S_t by the method's registry schedule: one
  shuffled pass (iterative), static_epochs passes (one-shot; a fractional last
  pass takes a fresh permutation's head), or one shuffled pass over the
  replayed multiset (replay: each id as often as the source run trained it)."""
  schedule = selection.get(run.config.method).schedule
  if schedule == selection.REPLAY:
    return [rng.permutation(run.selector.passes_M)]
  epochs = run.config.loop.static_epochs if schedule == selection.ONE_SHOT else 1.0
  if epochs <= 0:
    raise ValueError(f"loop.static_epochs={epochs} must be positive")
  whole = int(math.floor(epochs + 1e-9))
  orders = [rng.permutation(ids_S) for _ in range(whole)]
  extra = int(round((epochs - whole) * len(ids_S)))
  if extra:
    orders.append(rng.permutation(ids_S)[:extra])
  return orders


def uses_lead_step(config) -> bool:
  """The LEAD step (per-example outputs) when `loop.train_step` resolves to it
  (`selection.train_step`: auto is the method's registry default, the LEAD
  step for IDU methods, whose update reads the per-example outputs). It
  applies the same update as the plain step, and on CPU its vmapped
  per-example backward is the faster one."""
  return selection.train_step(config.method, config.select, config.loop.train_step) == "lead"


def _train_pass(run: Run, state, h: Host, orders: list[np.ndarray], replay_R: np.ndarray):
  """`(state, StepOutputs, stats, counts)`: the jitted steps over the orders;
  the rows of `replay_R` (loop.replay_fraction) are booked as `replay_train`."""
  b, lead = run.config.train.batch_size, uses_lead_step(run.config)
  batches = (
      data.gather(run.pool, order[s:s + b], b) for order in orders for s in range(0, len(order), b))
  parts, losses, counts, skipped, lr = [], [], {}, 0, float("nan")
  for done in passes.train(run.steps.train if lead else run.steps.plain, state, run.base, batches,
                           mesh=run.mesh, step_key=run.step_key, start=h.train_steps, total=sum(
                               -(-len(o) // b) for o in orders), desc=f"iteration {h.iteration}"):
    state, out, m = done.state, done.out, done.out["metrics"]
    counts = passes.add(counts,
                        schedule_lib.split_counts(done, replay_R) if replay_R.size else done.counts)
    skipped += int(m["skipped"])
    lr = float(m["lr"])
    losses.append(float(m["loss"]))
    parts.append(
        idu.StepOutputs(done.batch["index_B"], out["loss_B"], out["valid_B"], out.get("dL_B"),
                        out.get("g_BxK")))
  stats = {
      "train_steps": len(parts), "skipped": skipped, "lr": lr,
      "train_loss": float(np.mean(losses)) if losses else None
  }
  outs = idu.StepOutputs.concatenate(parts) if parts else None
  return state, outs, stats, counts


def _dev_loss(run: Run, params) -> tuple[float, dict]:
  out, counts = scoring.losses(run.steps.score, params, run.dev_pool, np.arange(len(run.dev_pool)),
                               run.config.offline.score_batch_size, run.mesh, desc="dev loss")
  return float(np.mean(out["loss"])), counts


def _learn(run: Run, h: Host, arm: int, outs, stats: dict, params):
  """`(table, arms, summary, counts, dev_loss)`: IDU update, reward, bandit update."""
  cfg, summary, counts, dev_loss = run.config, {}, {}, h.dev_loss
  table, info = h.table, None
  if run.needs.idu:
    table, info = schedule_lib.update_idu(cfg, run.layout, h.table, outs, arm, stats["lr"])
    summary.update(beta=info.beta, mean_dL=info.mean_dL, idu_updated=int(info.ids_S.size),
                   invalid_rows=info.num_invalid, propagated=info.num_propagated)
  if not run.needs.bandit:
    return table, h.arms, summary, counts, dev_loss
  kind = _reward_kind(run)
  if kind == "dev_gain":
    after, counts = _dev_loss(run, params)
    reward = idu.reward(kind, info, h.dev_loss, after)
    dev_loss = after
  else:
    reward = _sample_reward(kind, info, outs)
  arms = bandit.update(h.arms, cfg.bandit, arm, reward)
  summary.update(reward=reward, reward_normalised=bandit.normalise(arms.rewards_H),
                 log_weights=arms.log_w_C.tolist())
  return table, arms, summary, counts, dev_loss


def _reward_kind(run: Run) -> str:
  return run.config.bandit.reward if run.needs.idu else "loss"  # ODM's reward: its training loss


def _sample_reward(kind: str, info, outs) -> float:
  """A reward over trained samples: `idu.reward` from the IDU update's info,
  or (no IDU table: ODM) the mean loss of the valid rows."""
  if info is not None:
    return idu.reward(kind, info)
  ok = outs.finite_B & (outs.index_B >= 0)
  return float(outs.loss_B[ok].mean()) if ok.any() else 0.0


def _learn_arms(run: Run, h: Host, drawn, outs, stats: dict, params):
  """`_learn` for several drawn arms (select.clusters_per_iteration > 1):
  `drawn` holds (arm, ids_A, p_C) in draw order, ids_A empty for an exhausted
  cluster. Each arm with samples gets the IDU update of its own rows (from the
  same G_t-1, the previous iteration's; G_t is then the mean over all of S_t)
  and its own reward over them (dev_gain: the iteration's dev gain, shared),
  then one bandit update, in draw order. Returns `_learn`'s tuple plus the
  bandit.jsonl lines, one per drawn arm."""
  cfg, counts, dev_loss = run.config, {}, h.dev_loss
  table, infos, trained = h.table, [], [(a, ids) for a, ids, _ in drawn if ids.size]
  per_arm = {a: schedule_lib.rows_of(outs, ids) for a, ids in trained}
  if run.needs.idu:
    prev_K = table.grad_prev_K
    for a, _ in trained:
      table, info = schedule_lib.update_idu(cfg, run.layout,
                                            dataclasses.replace(table, grad_prev_K=prev_K),
                                            per_arm[a], a, stats["lr"])
      infos.append(info)
    grad_prev = prev_K
    if outs.g_BxK is not None and sum(i.ids_S.size for i in infos):
      grad_prev = schedule_lib.iteration_mean_gradient(table, infos, [a for a, _ in trained])
    table = dataclasses.replace(table, grad_prev_K=grad_prev)
  summary = {"arms": [int(a) for a, _, _ in drawn]}
  if infos:
    summary.update(beta=[i.beta for i in infos], mean_dL=[i.mean_dL for i in infos],
                   idu_updated=sum(int(i.ids_S.size) for i in infos),
                   invalid_rows=sum(i.num_invalid for i in infos),
                   propagated=sum(i.num_propagated for i in infos))
  if not run.needs.bandit:
    return table, h.arms, summary, counts, dev_loss, []
  kind, rewards = _reward_kind(run), {}
  if kind == "dev_gain":
    after, counts = _dev_loss(run, params)
    shared = idu.reward(kind, None, h.dev_loss, after)
    rewards, dev_loss = {a: shared for a, _ in trained}, after
  else:
    info_of = dict(zip([a for a, _ in trained], infos)) if infos else {}
    rewards = {a: _sample_reward(kind, info_of.get(a), per_arm[a]) for a, _ in trained}
  arms, lines = h.arms, []
  for j, (a, _, q_C) in enumerate(drawn):
    line = {"arm": int(a), "draw": j, "drawn_with": [float(p) for p in q_C]}
    if a in rewards:
      p_C = bandit.probabilities(arms, cfg.bandit)  # the update's importance weight: p_a
      arms = bandit.update(arms, cfg.bandit, a, rewards[a])
      line.update(probabilities=[float(p) for p in p_C], reward=rewards[a],
                  reward_normalised=bandit.normalise(arms.rewards_H),
                  log_weights=arms.log_w_C.tolist())
    else:  # an exhausted cluster: no reward, no update
      line.update(probabilities=[float(p) for p in bandit.probabilities(arms, cfg.bandit)],
                  reward=None, reward_normalised=None, log_weights=arms.log_w_C.tolist())
    lines.append(line)
  summary.update(rewards=[rewards.get(int(a)) for a, _, _ in drawn],
                 log_weights=arms.log_w_C.tolist())
  return table, arms, summary, counts, dev_loss, lines


def _rescore(run: Run, params) -> tuple[np.ndarray, dict]:
  """Fresh scores of the whole pool under the current model, for selectors
  whose `needs.rescore` asks for them (iterative re-scoring): the response
  loss (N forward passes) or IFD (2N: with and without the prompt)."""
  kind = run.needs.rescore
  if kind not in selection.RESCORE_SCORES:
    raise ValueError(f"needs.rescore={kind!r}; the loop re-scores by {selection.RESCORE_SCORES}")
  out, counts = scoring.losses(run.steps.score, params, run.pool, np.arange(len(run.pool)),
                               run.config.offline.score_batch_size, run.mesh,
                               response=kind == "ifd", desc=f"rescore ({kind})")
  if kind == "ifd":
    return clustering.ifd_from_losses(out["loss"], out["response_loss"],
                                      run.config.offline.ifd_clip), counts
  return out["loss"], counts


def _select(run: Run, h: Host, rng: np.random.Generator, params):
  """`(drawn, ids_S, scores_S, extra_S, counts)` of iteration h.iteration:
  `drawn` holds (arm, ids_A, p_C) per drawn arm in draw order (arm -1 and p_C
  None without a bandit), S_t is the union of the ids_A in that order.

  An IDU method ranks by `idu.ranking_scores` (the IDU itself, or with
  idu.reference = warmup IDU - w IL); then `scores_S` is still the picks'
  IDU and `extra_S` holds their `reference` (IL) and `reducible` score (the
  one they were ranked by), for selected.jsonl; otherwise extra_S is None.

  With select.clusters_per_iteration = m > 1 the bandit draws m distinct
  arms first (`bandit.draw_distinct`), then each cluster is selected exactly
  as one alone, seeing the distinct budget the arms before it spent."""
  m = run.config.select.clusters_per_iteration if run.needs.bandit else 1
  if run.needs.bandit:
    arms, p_MxC = bandit.draw_distinct(h.arms, run.config.bandit, rng, m)
  else:
    arms, p_MxC = [-1], [None]
  scores_N, counts, reference_N = None, {}, run.offline.reference_N
  if run.needs.idu:  # the IDU, or with idu.reference = warmup IDU - w IL
    scores_N = idu.ranking_scores(h.table.idu_N, run.config.idu, reference_N)
  if run.needs.rescore:
    scores_N, counts = _rescore(run, params)
  drawn, scores, extras, sel = [], [], [], h.sel
  for arm, p_C in zip(arms, p_MxC):
    inputs = selection.Inputs(arm, scores_N)
    ids_A = run.selector.select(sel, inputs, rng)
    drawn.append((arm, ids_A, p_C))
    scores.append(run.selector.scores_of(ids_A, inputs))
    if run.needs.idu and reference_N is not None:  # selected.jsonl: the IDU, IL and ranking
      extras.append({"reference": reference_N[ids_A], "reducible": scores[-1]})
      scores[-1] = h.table.idu_N[ids_A]
    if m > 1:  # the next arm sees this one's picks against the budget
      sel = selection.record(sel, ids_A)
  extra_S = {k: np.concatenate([e[k] for e in extras]) for k in extras[0]} if extras else None
  if m == 1:
    return drawn, drawn[0][1], scores[0], extra_S, counts
  ids_S = np.concatenate([ids for _, ids, _ in drawn])
  return drawn, ids_S, None if scores[0] is None else np.concatenate(scores), extra_S, counts


def _orders(run: Run, h: Host, ids_S: np.ndarray, rng: np.random.Generator):
  """`(orders, replay_R)`: the training order of S_t (`_schedule`) or, with
  loop.replay_fraction > 0 on an iterative schedule, one shuffled pass over S_t
  and the replayed earlier samples R_t (`schedule.replay_ids`)."""
  if not ids_S.size:
    return [], np.zeros(0, np.int64)
  f = run.config.loop.replay_fraction
  replay_R = np.zeros(0, np.int64)
  if f > 0 and selection.get(run.config.method).schedule == selection.ITERATIVE:
    replay_R = schedule_lib.replay_ids(h.sel.use_count_N, ids_S, f, rng)
  if not replay_R.size:
    return _schedule(run, ids_S, rng), replay_R
  return [rng.permutation(np.concatenate([ids_S, replay_R]))], replay_R


def _monitor_dev(run: Run, h: Host, state, record: dict, ledger):
  """The dev loss every loop.dev_every iterations (evaluation phase), unless
  the reward already measured it this iteration."""
  every = run.config.loop.dev_every
  if run.dev_pool is None or not every or (h.iteration + 1) % every or "dev_loss" in record:
    return ledger
  t0 = time.monotonic()
  record["dev_loss"], counts = _dev_loss(run, run.params(state))
  ledger = accounting.add(ledger, "evaluation", "dev_loss", counts)
  return accounting.add_seconds(ledger, "evaluation", time.monotonic() - t0)


def run_iteration(run: Run, state, h: Host, files: outputs.Files, writer: metrics.Writer):
  """One iteration: select, train, learn, write its outputs. Returns (state, host)."""
  ledger, t = h.ledger, h.iteration
  rng = generator(h.rng_state)
  t0 = time.monotonic()
  drawn, ids_S, scores_S, extra_S, rescore_counts = _select(run, h, rng, run.params(state))
  if rescore_counts:
    ledger = accounting.add(ledger, "selection", "rescore", rescore_counts)
  sel = selection.record(h.sel, ids_S)
  dev_before, dev_counts = h.dev_loss, {}
  if run.needs.bandit and run.needs.idu and run.config.bandit.reward == "dev_gain" \
      and dev_before is None and ids_S.size:
    dev_before, dev_counts = _dev_loss(run, run.params(state))
  ledger = accounting.add_seconds(ledger, "selection", time.monotonic() - t0)
  t0 = time.monotonic()
  orders, replay_R = _orders(run, h, ids_S, rng)
  state, outs, stats, train_counts = _train_pass(run, state, h, orders, replay_R)
  ledger = accounting.add_seconds(ledger, "training", time.monotonic() - t0)
  t0 = time.monotonic()
  h = dataclasses.replace(h, dev_loss=dev_before)
  if replay_R.size:  # the IDU table and the reward see S_t only
    replayed = schedule_lib.rows_of(outs, replay_R)
    ok = replayed.finite_B
    stats.update(
        replayed=int(replayed.index_B.size),
        replay_loss=float(replayed.loss_B[ok].mean()) if ok.any() else None)
    outs = schedule_lib.rows_of(outs, ids_S)
  bandit_lines = None
  if len(drawn) > 1:
    table, arms, summary, learn_counts, dev_loss, bandit_lines = _learn_arms(
        run, h, drawn, outs, stats, run.params(state)) if ids_S.size else (
            h.table, h.arms, {"arms": [int(a) for a, _, _ in drawn], "exhausted": True}, {},
            h.dev_loss, None)
  elif ids_S.size:
    table, arms, summary, learn_counts, dev_loss = _learn(run, h, drawn[0][0], outs, stats,
                                                          run.params(state))
  else:  # an exhausted cluster: nothing trained, nothing learnt
    table, arms, summary, learn_counts, dev_loss = h.table, h.arms, {"exhausted": True}, {}, \
        h.dev_loss
  ledger = passes.book(ledger, "training", train_counts)
  for c in (dev_counts, learn_counts):
    if c:
      ledger = accounting.add(ledger, "selection", "dev_loss", c)
  ledger = accounting.add_seconds(ledger, "selection", time.monotonic() - t0)
  record = {"iteration": t} if len(drawn) > 1 else {"iteration": t, "arm": drawn[0][0]}
  record.update({
      "selected": int(ids_S.size), "new": int(sel.num_distinct - h.sel.num_distinct),
      "distinct": sel.num_distinct, **{k: v for k, v in stats.items() if k != "skipped"}, **summary
  })
  if dev_loss is not None and dev_loss != h.dev_loss:
    record["dev_loss"] = dev_loss
  ledger = _monitor_dev(run, h, state, record, ledger)
  if table is not None:
    record["idu_mean"] = float(np.mean(table.idu_N))
  trained_N = h.trained_N.copy()
  for order in orders:
    trained_N[order] = True
  record["trained"] = int(trained_N.sum())
  new_h = dataclasses.replace(h, iteration=t + 1, train_steps=h.train_steps + stats["train_steps"],
                              skipped_steps=h.skipped_steps + stats["skipped"],
                              rng_state=rng.bit_generator.state, sel=sel, trained_N=trained_N,
                              arms=arms, table=table, ledger=ledger, history=h.history + (record,),
                              dev_loss=dev_loss)
  _write(run, files, writer, new_h, record, ids_S, scores_S, extra_S, drawn, bandit_lines, orders)
  return state, new_h


def _selected(run: Run, h: Host, t: int, ids_S, scores_S, extra_S, orders):
  """selected.jsonl lines; a replay's also carry `passes` (times trained)."""
  lines = outputs.selected_records(ids_S, run.pool, t, run.clusters, scores_S,
                                   h.sel.use_count_N[ids_S], extra_S)
  if selection.get(run.config.method).schedule != selection.REPLAY:
    return lines
  passes_N = np.bincount(np.concatenate(orders), minlength=len(run.pool)) if orders else \
      np.zeros(len(run.pool), np.int64)
  return [dict(r, passes=int(passes_N[r["id"]])) for r in lines]


def _write(run: Run, files: outputs.Files, writer: metrics.Writer, h: Host, record: dict, ids_S,
           scores_S, extra_S, drawn, bandit_lines, orders) -> None:
  """The iteration's lines: selected.jsonl; bandit.jsonl, one line per drawn
  arm (several arms: each with its `draw` index, the distribution it was drawn
  from, `drawn_with`, and its own update's `probabilities`, reward and
  log-weights); metrics.jsonl; the IDU snapshot."""
  t, p_C = record["iteration"], drawn[0][2]
  files.append(outputs.SELECTED, _selected(run, h, t, ids_S, scores_S, extra_S, orders))
  if len(drawn) > 1 and p_C is not None:
    if bandit_lines is None:  # every drawn cluster exhausted: no update
      p_now = [float(p) for p in bandit.probabilities(h.arms, run.config.bandit)]
      bandit_lines = [{
          "arm": int(a), "draw": j, "drawn_with": [float(p) for p in q], "probabilities": p_now,
          "reward": None, "reward_normalised": None, "log_weights": h.arms.log_w_C.tolist()
      } for j, (a, _, q) in enumerate(drawn)]
    files.append(outputs.BANDIT, [dict({"iteration": t}, **line) for line in bandit_lines])
  elif p_C is not None:
    files.append(outputs.BANDIT, [{
        "iteration": t, "arm": record["arm"], "probabilities": [float(p) for p in p_C], **
        {k: record.get(k) for k in ("reward", "reward_normalised", "log_weights")}
    }])
  every = run.config.loop.idu_snapshot_every
  if h.table is not None and every and (t + 1) % every == 0:
    files.snapshot(f"{t:04d}", h.table.idu_N)
  writer.write(t + 1,
               {k: v for k, v in record.items() if isinstance(v, (int, float)) and v is not None},
               split="iteration")
