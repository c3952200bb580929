"""The layer contract of docs/architecture.md, checked on every import statement in the tree.

Why an AST walk and not import-linter: the contract is five lines, the walk is a screenful, and
it sees lazy imports inside functions (how the Pi libraries and the daemons' optional parts are
loaded) exactly like top-level ones, without another development dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Which p1lora packages each package may import (itself always). ``tools`` sits above
#: everything and may import all of it; nothing below imports ``tools``.
ALLOWED: dict[str, frozenset[str]] = {
    "common": frozenset(),
    "hardware": frozenset({"common"}),
    "service": frozenset({"common", "hardware"}),
    "transmitter": frozenset({"common", "hardware", "service"}),
    "receiver": frozenset({"common", "hardware", "service"}),
    "tools": frozenset({"common", "hardware", "service", "transmitter", "receiver"}),
}


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, p1lora package) for every import of a p1lora package in one file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "p1lora":
                names = [f"p1lora.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "p1lora" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def _violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    return [
        f"{path.relative_to(ROOT)}:{line} imports p1lora.{target}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, target in _imported_packages(path)
        if target not in allowed
    ]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    assert _violations(package) == []


def test_the_walk_sees_lazy_and_aliased_imports(tmp_path: Path) -> None:
    """The checker itself: a lazy import inside a function and ``from p1lora import x`` count."""
    source = tmp_path / "sample.py"
    source.write_text(
        "import os\n"
        "from p1lora import receiver\n"
        "def f():\n"
        "    from p1lora.tools.sim import Simulation\n"
        "    import p1lora.transmitter.cli\n",
        encoding="utf-8",
    )
    assert _imported_packages(source) == [(2, "receiver"), (4, "tools"), (5, "transmitter")]
