"""The layout holds: imports flow one way (no cycle between modules or between the pipeline's
folders, imports inside functions included) and no module grows past ~500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import einrel

SRC = Path(einrel.__file__).parent
MAX_LINES = 520


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """einrel module -> the einrel modules it imports anywhere in its body."""
    mods = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name.startswith("einrel") and name != mod:
                    graph[mod].add(name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w) :] + [w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def _ancestors(mod: str) -> set[str]:
    parts = mod.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycle_between_modules() -> None:
    # a package's __init__ re-exporting its children is not a cycle: drop edges to ancestors
    graph = {m: {d for d in deps if d not in _ancestors(m)} for m, deps in _imports().items()}
    assert _cycle(graph) is None


def test_no_import_cycle_between_the_pipelines_folders() -> None:
    def stage(mod: str) -> str:
        return ".".join(mod.split(".")[:2])

    folders: dict[str, set[str]] = {}
    for mod, deps in _imports().items():
        if mod == "einrel":
            continue
        folders.setdefault(stage(mod), set()).update(
            stage(d) for d in deps if d != "einrel" and stage(d) != stage(mod)
        )
    assert _cycle(folders) is None


def test_the_checker_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_over_500_lines() -> None:
    big = {
        p.name: n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big
