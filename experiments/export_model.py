r"""Export a run's final model for other frameworks: merged Hugging Face weights and PEFT adapters.

  python -m experiments.export_model --workdir W --out DIR

Restores the newest checkpoint of the LEAD workdir W (the final one of a
finished run; `lead_jax.evals.checkpoints.load_workdir`: the base rebuilt as
the run built it, its trained adapters) and writes DIR/merged (config.json,
model.safetensors, tokenizer), DIR/adapter (adapter_config.json,
adapter_model.safetensors), DIR/base when the run's base is no local
Hugging Face directory, and DIR/export.json (`lead_jax.train.export`,
docs/export.md): what `loop.export_dir` writes at the end of a run. DIR must
be new, empty or an earlier export. Bad input ends with one line and status 2.
"""

import os

from absl import app, flags, logging

from experiments import cli
from lead_jax.data import DataError
from lead_jax.evals import checkpoints
from lead_jax.model import tokenizer
from lead_jax.train import base_cache, export


def export_workdir(workdir: str, out: str) -> dict:
  """Exports the newest checkpoint of `workdir` into `out`; returns export.json's content."""
  if not checkpoints.is_workdir(workdir):
    raise DataError(f"{workdir}: not a LEAD workdir (no checkpoints/ and config.json); pass "
                    "the workdir of a run")
  why = export.problem(out)
  if why:
    raise DataError(f"{out}: {why}; choose a new or empty directory (or an earlier export)")
  model_config, params, run = checkpoints.load_workdir(workdir)
  meta = {
      "workdir": os.path.abspath(workdir), "method": run.method,
      "finished": os.path.isfile(os.path.join(workdir, "final_metrics.json"))
  }
  return export.write(out, model_config, params, tokenizer.load(run.data.tokenizer),
                      base_cache.resolve_model(run).checkpoint, meta)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every restore at INFO
    logging.set_verbosity(logging.WARNING)
  out = flags.FLAGS.out
  manifest = cli.guarded(export_workdir, flags.FLAGS.workdir, out)
  print(f"wrote {out}: merged/ (Hugging Face), adapter/ (PEFT) on base {manifest['base']}")


if __name__ == "__main__":  # the flags only here: tests import export_workdir
  flags.DEFINE_string("workdir", None, "the run's workdir (checkpoints/, config.json)")
  flags.DEFINE_string("out", None, "the directory to write the export into")
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main)
