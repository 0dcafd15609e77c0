"""The selected samples' own records, for other frameworks (experiments.export_selection).

  write(workdir, out, repeats=False) -> (records written, sha256 of `out`)

reads the run's `selected.jsonl` (`lead_jax.outputs`) and the pool file its
`config.json` names (data.train_path, or the synthetic lake of its
data.synthetic fields, written again when it is gone: the same fields give
the same bytes) with the run's own data.format, task_name, on_error and
max_record_bytes, so every `source_id` names the record it named in the run.
It writes each selected sample's record as the pool file holds it (every
field, in its order: a messages pool keeps dataset, id, messages and any
extra field such as the lake's tier; alpaca and sharegpt records stay
alpaca and sharegpt), one JSON object per line:

  unique (default)  each selected sample once, in first-selection order
  repeats           once per time it was trained, in selection order: a line
                    of selected.jsonl counts `passes` times (replay runs),
                    else once; the total must equal final_metrics.json's
                    train_sample_passes, so a one-shot run of more than one
                    epoch or a run with loop.replay_fraction > 0 (passes that
                    selected.jsonl does not list) is an error, not a guess

A prepared (tfds) pool keeps no JSON records; its records are written as
messages records `{"dataset", "id", "messages"}`. `out` is written
atomically, then `<out>.sha256` beside it, in `sha256sum -c` format. A
missing selected.jsonl or config.json, a selected sample that is not in the
pool or is there under another task (the pool file changed since the run),
and an `out` that is the pool file or selected.jsonl raise `DataError` (one
line: the file, what is wrong, what to do).
"""

from __future__ import annotations

import json
import os

import ml_collections

from lead_jax import artifacts
from lead_jax.data import DataError, cache, jsonio, load, tfds_builder
from lead_jax.selection import diagnostics

SELECTED = diagnostics.SELECTED
CONFIG = "config.json"
FIX = "pass --workdir a LEAD run's workdir"


def _data_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG)
  if not os.path.isfile(path):
    raise DataError(f"{path}: not found; {FIX} (a run writes config.json when it starts)")
  with open(path, encoding="utf-8") as f:
    data = json.load(f).get("data")
  if not isinstance(data, dict):
    raise DataError(f"{path}: has no `data` section; {FIX}")
  return ml_collections.ConfigDict(data)


def pool_path(workdir: str, data_cfg) -> str:
  """The pool file the run read (the lake is written again if it is gone)."""
  path = load.train_path_of(data_cfg.to_dict(), workdir)
  if not os.path.exists(tfds_builder.dataset_dir(path)) and not data_cfg.train_path:
    path = load.resolve_paths(data_cfg, workdir)["train"]
  if not os.path.exists(tfds_builder.dataset_dir(path)):
    raise DataError(f"{path}: the pool file of {os.path.join(workdir, CONFIG)} (data.train_path) "
                    "is not there; restore it at that path")
  return path


def _picks(workdir: str, repeats: bool) -> list[tuple[int, str, str]]:
  """`(line number, source_id, task)` per record to write, in order."""
  path = os.path.join(workdir, SELECTED)
  if not os.path.isfile(path):
    raise DataError(f"{path}: not found; {FIX} that has run at least one iteration")
  lines = diagnostics.read_selected(path, FIX)
  if not lines:
    raise DataError(f"{path}: lists no selected sample; export a run that selected something")
  if not repeats:
    first = {}
    for line_no, sid, task, _ in lines:
      first.setdefault(sid, (line_no, sid, task))
    return list(first.values())
  final = os.path.join(workdir, diagnostics.FINAL)
  if not os.path.isfile(final):
    raise DataError(f"{final}: not found, the run has not finished; repeats are counted against "
                    "a finished run's train_sample_passes (or export each sample once)")
  with open(final, encoding="utf-8") as f:
    metrics = json.load(f)
  picks = [(n, sid, task) for n, sid, task, passes in lines for _ in range(passes)]
  diagnostics.check_passes(path, len(picks), metrics)
  return picks


def _originals(data_cfg, path: str, picks, selected: str) -> dict[str, dict]:
  """{source_id: the pool's record} of every picked sample."""
  records, _ = load.read_records(data_cfg, path)
  by_id = {r.id: r for r in records}
  for line_no, sid, task in picks:
    record = by_id.get(sid)
    if record is None or (task and task != record.task):
      raise DataError(f"{selected}:{line_no}: sample {sid!r} ({task or 'no task'}) is not in the "
                      f"pool {path}; the pool file changed since the run: restore the one it read")
  wanted = {sid: by_id[sid] for _, sid, _ in picks}
  if load.is_tfds(data_cfg, path):
    return {
        sid: {
            "dataset": r.task, "id": r.id, "messages": [{"role": role, "content": text}
                                                        for role, text in r.messages]
        } for sid, r in wanted.items()
    }
  where = {r.where: sid for sid, r in wanted.items()}
  items = {
      where[w]: item for w, item in jsonio.items(path, data_cfg.max_record_bytes) if w in where
  }
  return {sid: items[sid] for sid in wanted}


def write(workdir: str, out: str, repeats: bool = False) -> tuple[int, str]:
  """Writes the selected samples' records to `out` and `<out>.sha256`; returns
  (number of records, the sha256 of `out`)."""
  data_cfg = _data_config(workdir)
  picks = _picks(workdir, repeats)
  path = pool_path(workdir, data_cfg)
  for source in (path, os.path.join(workdir, SELECTED)):
    if os.path.realpath(out) == os.path.realpath(source):
      raise DataError(f"{out}: is the file the export reads; write the export to another file")
  originals = _originals(data_cfg, path, picks, os.path.join(workdir, SELECTED))
  with artifacts.atomic_write(out) as f:
    for _, sid, _ in picks:
      f.write(json.dumps(originals[sid], ensure_ascii=False) + "\n")
  digest = cache.file_digest(out)
  artifacts.write_text(out + ".sha256", f"{digest}  {os.path.basename(out)}\n")
  return len(picks), digest
