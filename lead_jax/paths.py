"""`/`-joined parameter paths and `(regex, value)` rules over them.

Parameter subsets (LoRA targets, projected parameters, sharding rules) are
lists of `(regex, value)` pairs matched with `re.search` against paths such as
`layers/attn/q_proj/kernel`. A rule that matches nothing is an error: a typo in
a target list must fail loudly instead of silently training nothing.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import jax

Rules = Sequence[tuple[str, Any]]


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(key_path) -> str:
  return "/".join(_key_name(k) for k in key_path)


def flatten(tree) -> dict[str, Any]:
  """Returns {path: leaf} in the tree's leaf order."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_str(p): leaf for p, leaf in leaves}


def unflatten(flat: Mapping[str, Any]) -> dict:
  """Inverse of `flatten` for trees of nested dicts."""
  tree: dict = {}
  for path, leaf in flat.items():
    node = tree
    *parents, last = path.split("/")
    for name in parents:
      node = node.setdefault(name, {})
    node[last] = leaf
  return tree


def map_with_path(fn: Callable[[str, Any], Any], tree):
  return jax.tree_util.tree_map_with_path(lambda p, x: fn(path_str(p), x), tree)


def first_match(rules: Rules, path: str, default=None):
  for pattern, value in rules:
    if re.search(pattern, path):
      return value
  return default


def select(patterns: Sequence[str], paths: Sequence[str], what: str) -> list[str]:
  """Paths matched by any pattern; raises if a pattern matches nothing."""
  unused = [p for p in patterns if not any(re.search(p, x) for x in paths)]
  if unused:
    raise ValueError(f"{what}: pattern(s) {unused} match no parameter path. Known paths "
                     f"look like {list(paths)[:6]}; fix the regex list in the config.")
  return [x for x in paths if any(re.search(p, x) for p in patterns)]


def check_rules_used(rules: Rules, paths: Sequence[str], what: str) -> None:
  select([pattern for pattern, _ in rules], paths, what)
