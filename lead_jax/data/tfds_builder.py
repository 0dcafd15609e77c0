"""A tensorflow-datasets builder for instruction pools (array_record, no TensorFlow).

`prepare` validates local pool files (every split, before writing anything)
and writes them as array_record shards under
    <data_dir>/instruction_pool/<name>/1.0.0/
with splits train (and test, dev when given). Every run and every host then
reads the same prepared records by random access with `as_data_source()`:
    data.train_path = <data_dir>/instruction_pool/<name>/1.0.0          (train)
    data.test_path  = <data_dir>/instruction_pool/<name>/1.0.0#test
Records keep their order (shuffling is disabled), ids, source task and the
file:line they came from. Tokenisation stays per run (it depends on the
tokenizer) and is cached by `load_pool`'s fingerprint.
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

import numpy as np

from lead_jax.data.errors import DataError
from lead_jax.data.formats import Record

NAME = "instruction_pool"
VERSION = "1.0.0"


def split_path(path: str) -> tuple[str, str]:
  """'dir#split' -> (dir, split); the split defaults to train."""
  base, _, split = path.partition("#")
  return base, split or "train"


def dataset_dir(path: str) -> str:
  return split_path(path)[0]


def is_prepared(path: str) -> bool:
  return os.path.isfile(os.path.join(dataset_dir(path), "dataset_info.json"))


def prepare(splits: dict[str, Sequence[Record]], data_dir: str, name: str,
            overwrite: bool = False) -> str:
  """Writes validated records per split; returns the prepared dataset directory."""
  import tensorflow_datasets as tfds  # heavy: only when preparing or reading
  target = os.path.join(data_dir, NAME, name, VERSION)
  if os.path.exists(target):
    if not overwrite:
      raise DataError(f"{target}: already prepared; pick another name or pass "
                      "--overwrite to rebuild it")
    shutil.rmtree(target)
  builder = _builder_class(tfds)(config=name, data_dir=data_dir, records=splits,
                                 file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder.data_dir


def read_records(path: str) -> list[Record]:
  """Every record of one split of a prepared pool, in order."""
  import tensorflow_datasets as tfds
  base, split = split_path(path)
  if not is_prepared(path):
    raise DataError(f"{base}: not a prepared pool (no dataset_info.json); run "
                    "python -m experiments.prepare_pool first")
  sources = tfds.builder_from_directory(base).as_data_source()
  if split not in sources:
    raise DataError(f"{path}: no split {split!r} (has {', '.join(sources)}); "
                    "use one of those after '#'")
  source, out = sources[split], []
  for lo in range(0, len(source), 4096):
    for ex in source.__getitems__(list(range(lo, min(lo + 4096, len(source))))):
      roles = [r.decode() for r in ex["messages"]["role"]]
      contents = [c.decode() for c in ex["messages"]["content"]]
      out.append(
          Record(ex["id"].decode(), ex["dataset"].decode(), tuple(zip(roles, contents)),
                 ex["where"].decode()))
  return out


def _builder_class(tfds):

  class InstructionPool(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Validated instruction records: id, dataset (task), messages, where."""
    VERSION = tfds.core.Version(VERSION)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
      # tfds looks the code up through importlib_resources, not installed here.
      return tfds.core.Path(__file__)

    def __init__(self, *, config: str, records=None, **kwargs):
      self._records = records or {}
      super().__init__(config=tfds.core.BuilderConfig(name=config, version=VERSION), **kwargs)

    def _info(self):
      text = tfds.features.Text()
      return tfds.core.DatasetInfo(
          builder=self, disable_shuffling=True, features=tfds.features.FeaturesDict({
              "index": tfds.features.Scalar(dtype=np.int64), "id": text, "dataset": text,
              "where": text, "messages": tfds.features.Sequence({"role": text, "content": text})
          }))

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(recs) for split, recs in self._records.items()}

    def _generate_examples(self, records):
      for i, r in enumerate(records):
        yield i, {
            "index": i, "id": r.id, "dataset": r.task, "where": r.where,
            "messages": {"role": [m[0] for m in r.messages], "content": [m[1] for m in r.messages]}
        }

  InstructionPool.name = NAME
  return InstructionPool
