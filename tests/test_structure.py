"""The shape of the code base: the library is grouped by stage with no import cycles, it never imports the CLI, and
plug-in estimators reach the library only through ``nre``."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports, at module level or inside functions (``from a import b``
    counts as a.b when that is a module, else as a)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or ({node.module} & known)
    return out


def _graph() -> dict[str, set[str]]:
    mods = {**_modules("nre"), **_modules("baselines")}
    return {m: _imports(p, set(mods)) - {m} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_cli():
    graph = _graph()
    bad = {
        m: sorted(d for d in deps if d == "nre.cli" or d.startswith("nre.commands"))
        for m, deps in graph.items()
        if not (m == "nre.cli" or m.startswith("nre.commands"))
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_nothing_in_the_library_imports_a_plug_in():
    """The registry finds baselines/ by name; no library module imports a baseline statically."""
    graph = _graph()
    bad = {m: sorted(d for d in deps if d.startswith("baselines")) for m, deps in graph.items() if m.startswith("nre")}
    assert {m: d for m, d in bad.items() if d} == {}


@pytest.mark.parametrize("path", sorted((REPO / "baselines").glob("*.py")), ids=lambda p: p.name)
def test_plug_ins_import_from_nre_only(path):
    """A baseline imports the library (``nre``) and third-party packages, never another baseline's helpers."""
    mods = set(_modules("baselines"))
    assert _imports(path, mods) == set()


@pytest.mark.parametrize("path", sorted((REPO / "nre" / "commands").glob("[a-z]*.py")), ids=lambda p: p.stem)
def test_commands_only_parse_arguments(path):
    """A command is a thin shell over the library: at most 80 lines, parsing its arguments and calling it."""
    assert len(path.read_text().splitlines()) <= 80
