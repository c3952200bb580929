"""The package layout contract: folders map onto the p1lora namespace, and nothing is forgotten."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject():
    config = _pyproject()["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for namespace, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([namespace, *rel.parts]) if rel.parts else namespace)
    assert found == listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_every_package_imports():
    for name in _pyproject()["tool"]["setuptools"]["packages"]:
        importlib.import_module(name)


def test_console_scripts_point_at_callables():
    for target in _pyproject()["project"]["scripts"].values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
