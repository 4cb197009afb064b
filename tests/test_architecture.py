"""The rooms of ../shared/DESIGN.md, enforced: every module's imports are parsed, so a rule is
broken the moment a module imports what its room never imports, an import cycle appears between
modules (imports inside functions count: they hide cycles, they do not remove them), a package
`__init__` imports anything, or a module that must stay light loads torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("training", "db", "worker", "cli", "gateway")

# DESIGN's "never imports" column, plus the arrows of its drawing: a room imports only the
# rooms it points at.
NEVER = {
    "training": {"celery", "sqlalchemy", "click", "db", "worker", "cli", "gateway"},
    "db": {"torch", "torchvision", "celery", "click", "training", "worker", "cli", "gateway"},
    "worker": {"click", "cli", "gateway"},
    "cli": set(),
    "gateway": {"click", "cli"},
}
# Inside training/: data/ is the ground floor (files, decoding, splits); it imports no other
# subpackage, so every other one can build on it.
TRAINING_SUBPACKAGES = ("models", "fitting", "evaluation", "scoring", "explain", "review")
NEVER_IN = {"training.data": {f"training.{p}" for p in TRAINING_SUBPACKAGES}}
# Never at import time (module level); inside a function is allowed.
NEVER_AT_IMPORT = {
    "cli": {"torch", "torchvision", "training"},
    "gateway": {"torch", "torchvision", "training"},
}
# Modules that must import without torch: the CLI's entry point, job creation, the database and
# the torch-free drawing and decoding helpers the CLI uses.
LIGHT = (
    "cli.main",
    "worker.jobs",
    "db.scoring",
    "db.lookups",
    "db.reports",
    "db.job_answers",
    "db.store",
    "training.data.data_files",
    "training.data.crop",
    "training.data.bitdepth",
    "training.explain.grid",
    "training.explain.overlay",
    "training.scoring.answers",
    # The DICOM listener process: torch loads only when it scores a study itself (embedded).
    "gateway.listener",
    "gateway.outbox",
    "gateway.results",
)


def _modules() -> dict[str, Path]:
    found = {}
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")) if (ROOT / room).is_dir() else []:
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, package: str) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import that runs (TYPE_CHECKING skipped)."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against the package
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1])
                    base = f"{base}.{child.module}" if child.module else base
                found.append((base, top))
                found.extend((f"{base}.{a.name}", top) for a in child.names)
            inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, top and not inner)

    visit(ast.parse(path.read_text()), True)
    return found


MODULES = _modules()


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_keeps_its_rooms_rules(name: str) -> None:
    room, path = name.split(".")[0], MODULES[name]
    broken = []
    for imported, top in _imports(path, _package(name, path)):
        first = imported.split(".")[0]
        below = {p for sub, banned in NEVER_IN.items() if name.startswith(sub) for p in banned}
        if first in NEVER[room] or any(imported.startswith(b) for b in below):
            broken.append(imported)
        elif top and first in NEVER_AT_IMPORT.get(room, set()):
            broken.append(f"{imported} (at import time)")
    assert not broken, f"{name} imports what {room}/ never imports: {sorted(set(broken))}"


def test_package_inits_import_nothing() -> None:
    for path in MODULES.values():
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text())
            imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
            assert not imports, f"{path.relative_to(ROOT)} imports: keep package inits empty"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for imported, _ in _imports(path, _package(name, path)):
            # "from a.b import c" names module a.b.c when there is one, else a.b's attribute c.
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and MODULES[imported].name != "__init__.py":
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_import_parser_sees_imports_inside_functions(tmp_path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from torch import nn\n")
    assert _imports(source, "pkg") == [("os", True), ("torch", False), ("torch.nn", False)]


@pytest.mark.parametrize("name", [m for m in LIGHT if m in MODULES])
def test_light_modules_load_without_torch(name: str) -> None:
    code = f"import sys, {name}; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", f"importing {name} loads torch"
