"""Dependencies point one way: ops -> layers -> cache -> models -> convert/conversation -> speech -> train -> distill,
evalsuite above ttt_omni, the dashboard above evalsuite, the two command lines on top. Every import counts, also one
inside a function (that is where cycles used to hide); imports under `if TYPE_CHECKING:` do not, they never run."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ttt_omni", "evalsuite", "dashboards")
# Lowest first. A module belongs to the longest prefix listed; it may import its own layer and the ones below.
LAYERS = [
    ["ttt_omni", "ttt_omni.hf_compat", "ttt_omni.resources", "ttt_omni.atomic", "ttt_omni.extras", "ttt_omni.labels",
     "ttt_omni.checkpoint_files", "ttt_omni.data_manifest", "ttt_omni.tokenizer"],
    ["ttt_omni.ops"],
    ["ttt_omni.layers"],
    ["ttt_omni.cache"],
    ["ttt_omni.models"],
    ["ttt_omni.convert", "ttt_omni.conversation", "ttt_omni.delta", "ttt_omni.smollm2"],
    ["ttt_omni.speech"],
    ["ttt_omni.train"],
    ["ttt_omni.distill"],
    ["evalsuite"],
    ["dashboards"],
    ["ttt_omni.cli", "evalsuite.cli", "ttt_omni.__main__", "evalsuite.__main__"],
]


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes inside `if TYPE_CHECKING:` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imports(known: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (at module level or in a function)."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip, targets = _type_checking_only(tree), set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                candidates = [f"{base}.{a.name}" for a in node.names] + [base]
            for candidate in candidates:
                while candidate and candidate not in known:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def layer(module: str) -> int:
    best = max(((len(p), i) for i, names in enumerate(LAYERS) for p in names
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_points_upward():
    graph = imports(modules())
    upward = sorted(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
                    for a, targets in graph.items() for b in targets if layer(b) > layer(a))
    assert not upward, "imports that point upward:\n" + "\n".join(upward)


def test_no_import_cycles():
    found = cycles(imports(modules()))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_walker_sees_function_level_and_relative_imports():
    graph = imports(modules())
    assert "ttt_omni.ops.triton_scan" in graph["ttt_omni.ops"]  # imported inside a function
    assert "evalsuite.task" in graph["evalsuite.registry"]  # relative
    assert "evalsuite.registry" not in graph["evalsuite.task"]  # only under TYPE_CHECKING
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
