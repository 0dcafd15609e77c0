r"""Write a run's selected samples as a JSONL dataset, in the pool's own record format.

  python -m experiments.export_selection --workdir W --out FILE.jsonl [--unique | --with-repeats]

--unique (the default) writes each selected sample once, in first-selection
order; --with-repeats once per time it was trained. The records are the pool
file's own (every field; `lead_jax.selection.export`), loadable with
`datasets.load_dataset("json", data_files=FILE.jsonl)`. Prints
`wrote N records to FILE.jsonl (sha256 HEX; FILE.jsonl.sha256)` and writes
that checksum beside the file (`sha256sum -c FILE.jsonl.sha256`). A workdir
without selected.jsonl, or a selected sample the pool file no longer holds,
ends with one line and status 2 (docs/export.md).
"""

from absl import app, flags

from experiments import cli
from lead_jax.selection import export


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  f = flags.FLAGS
  with_repeats, unique, out = f["with-repeats"].value, f.unique, f.out
  if with_repeats and f["unique"].present and unique:
    raise app.UsageError("--unique and --with-repeats exclude each other; pass one")
  n, digest = cli.guarded(export.write, f.workdir, out, with_repeats or not unique)
  print(f"wrote {n} records to {out} (sha256 {digest}; {out}.sha256)")


if __name__ == "__main__":  # the flags only here, so that importing the module defines none
  flags.DEFINE_string("workdir", None, "the run's workdir (selected.jsonl, config.json)")
  flags.DEFINE_string("out", None, "the JSONL file to write")
  flags.DEFINE_bool("unique", True, "each selected sample once (the default)")
  flags.DEFINE_bool("with-repeats", False, "each sample once per time it was trained")
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main)
