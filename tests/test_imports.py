"""The lead_jax package has no import cycle.

The graph is built from the source (no import is executed): an edge from a
module to every lead_jax module it names in an `import` or `from ... import`
statement anywhere in the file, function-level (lazy) imports included, since
a lazy import only hides a cycle. `from pkg import name` points at
`pkg.name` when that is a module, else at `pkg`. A package's `__init__` is not
implied by importing one of its submodules (each package's `__init__`
re-exports its submodules, which would make every package a cycle).
"""

from __future__ import annotations

import ast
import os

import lead_jax

ROOT = os.path.dirname(lead_jax.__file__)
PACKAGE = "lead_jax"


def _modules() -> dict[str, str]:
  """Module name -> file, for every .py file under lead_jax/."""
  out = {}
  for directory, _, files in os.walk(ROOT):
    for name in files:
      if not name.endswith(".py"):
        continue
      rel = os.path.relpath(os.path.join(directory, name), os.path.dirname(ROOT))
      parts = rel[:-len(".py")].split(os.sep)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join(parts)] = os.path.join(directory, name)
  return out


def _imports(module: str, path: str, known: set[str]) -> set[str]:
  """The lead_jax modules `module` imports."""
  is_package = path.endswith("__init__.py")
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against this module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        origin = ".".join(base + ([node.module] if node.module else []))
      else:
        origin = node.module or ""
      names = [
          f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names
      ]
    else:
      continue
    out.update(n for n in names if n in known and n != module)
  return out


def import_graph() -> dict[str, set[str]]:
  modules = _modules()
  known = set(modules)
  return {m: _imports(m, p, known) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of `graph` as [a, b, ..., a], or None (iterative depth-first search)."""
  color = dict.fromkeys(graph, 0)  # 0 unvisited, 1 on the stack, 2 done
  for root in sorted(graph):
    if color[root]:
      continue
    stack, path = [(root, iter(sorted(graph[root])))], [root]
    color[root] = 1
    while stack:
      node, children = stack[-1]
      child = next(children, None)
      if child is None:
        color[node] = 2
        stack.pop()
        path.pop()
      elif color[child] == 1:
        return path[path.index(child):] + [child]
      elif color[child] == 0:
        color[child] = 1
        stack.append((child, iter(sorted(graph[child]))))
        path.append(child)
  return None


def test_graph_sees_the_package():
  graph = import_graph()
  assert "lead_jax.offline.stage" in graph and "lead_jax.data.cache" in graph
  assert "lead_jax.data.pool" in graph["lead_jax.data.cache"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
  """The same graph between lead_jax's second-level parts (subpackages and
  top-level modules: `lead_jax.train.step` counts as `train`)."""
  part = lambda m: m.split(".")[1] if m.count(".") else "__init__"
  out = {part(m): set() for m in graph}
  for m, targets in graph.items():
    out[part(m)].update(part(t) for t in targets if part(t) != part(m))
  return out


def test_no_cycle_between_subpackages():
  """Layers, bottom up: artifacts, paths; data, outputs, metrics, accounting;
  model; train; offline, evals, selection; loop; api (the public API for other
  trainers, on top of everything). No part imports one above it."""
  graph = package_graph(import_graph())
  assert {"model", "train", "offline", "selection", "loop", "evals", "data", "api"} <= set(graph)
  assert not graph["model"] & {"train", "offline", "loop", "evals", "selection", "api"}
  assert not graph["train"] & {"offline", "loop", "evals", "selection", "api"}
  assert not {part for part, targets in graph.items() if "api" in targets} - {"api"}
  cycle = find_cycle(graph)
  assert cycle is None, "subpackage cycle: " + " -> ".join(cycle)
