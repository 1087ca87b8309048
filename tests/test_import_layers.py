"""The package's import graph: no circle between modules, and every import runs down the floors below.

A room is a subsystem folder of ``cleangpt_core`` (``model``, ``trainers``, ...) or one of its top-level modules.
Each room stands on a floor; a module may import its own room and the rooms of lower floors, never a room of its
own floor or of a higher one. Every ``import`` statement counts, the ones inside functions and under
``TYPE_CHECKING`` too: an import deferred to run time is still a dependency. The one exception is ``compat``,
which serves earlier releases' names from wherever they live now: the package's ``__init__`` installs it, and
nothing else may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cleangpt_core

PACKAGE = "cleangpt_core"
ROOT = Path(cleangpt_core.__file__).parent
PACKAGE_INIT = "<package>"  # cleangpt_core/__init__.py: the version, and compat's installation
EXEMPT = "compat"

# Lowest first. The plugin core at the bottom; then what configs and files are; the model and what it needs; the
# machinery that trains, shards and inspects it; the experiments built on training; the ways in (plugins, serve,
# the scaffold); the command line on top.
FLOORS: tuple[tuple[str, ...], ...] = (
    (PACKAGE_INIT, "errors", "lazy_exports", "plugin_api", "isolation"),
    ("hookspecs", "checkpoints"),
    ("registry",),
    ("config",),
    ("tokenizers", "inference", "kernels"),
    ("model",),
    ("distributed", "inspection", "huggingface"),
    ("data",),
    ("trainers", "utils"),
    ("experiments", "testing"),
    ("serving", "core_plugins", "scaffold"),
    ("cli",),
    ("__main__",),
)
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in ROOT.rglob("*.py")
        if "templates" not in path.relative_to(ROOT).parts  # the scaffold's files, not the package's
    }


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `module` imports (a name imported from a package counts as the package,
    unless it is a submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != module)
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return PACKAGE_INIT if len(parts) == 1 else parts[1]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def test_every_room_has_a_floor():
    rooms = {_room(module) for module in _modules()}
    unplaced = sorted(rooms - set(FLOOR) - {EXEMPT})
    assert not unplaced, f"place these rooms on a floor of FLOORS in this test: {unplaced}"


def test_imports_run_down_the_floors():
    upward = sorted(
        f"{module} -> {target} ({_room(module)} on floor {FLOOR[_room(module)]}, {_room(target)} on "
        f"{FLOOR[_room(target)]})"
        for module, targets in _graph().items()
        if _room(module) != EXEMPT
        for target in targets
        if _room(target) not in (_room(module), EXEMPT) and FLOOR[_room(target)] >= FLOOR[_room(module)]
    )
    assert not upward, "imports that do not run down:\n" + "\n".join(upward)


def test_only_the_package_installs_compat():
    importers = sorted(
        module for module, targets in _graph().items() if f"{PACKAGE}.{EXEMPT}" in targets and module != PACKAGE
    )
    assert not importers, f"the core's own code never imports an old name; these import compat: {importers}"


def test_no_circle_between_modules():
    graph = {module: targets for module, targets in _graph().items() if _room(module) != EXEMPT}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not circles, f"modules that import each other, directly or round a circle: {circles}"


def test_the_rules_catch_an_upward_import(tmp_path, monkeypatch):
    """The walk sees an import inside a function: the kind that hid the model's import of the trainers."""
    source = "def f():\n    from cleangpt_core.trainers.optimizers import adamw\n"
    path = tmp_path / "probe.py"
    path.write_text(source, encoding="utf-8")
    modules = {**_modules(), f"{PACKAGE}.model.probe": path}
    assert _imports(f"{PACKAGE}.model.probe", path, modules) == {f"{PACKAGE}.trainers.optimizers"}
    assert FLOOR["trainers"] > FLOOR["model"]
