"""Every package the product imports is declared in pyproject.toml, and HTML ingest works
in the installed environment as a fresh one would have it (lxml 6 moved ``lxml.html.clean``
out into ``lxml_html_clean``, which trafilatura's justext imports)."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from ..conftest import REPO

LOCAL = {"bot", "knowledge", "ingest", "shell"}


def declared() -> set[str]:
    """The dependencies and the optional features' extras (an optional backend is imported
    only when chosen); the dev extra does not count: the product must not need it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for name, group in project.get("optional-dependencies", {}).items()
              if name != "dev" for r in group]
    return {normalise(Requirement(r).name) for r in project["dependencies"] + extras}


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def imported_top_levels(paths: list[Path]) -> dict[str, str]:
    """Top-level module -> first file:line that imports it, for third-party modules."""
    found: dict[str, str] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".", 1)[0]
                if top in LOCAL or top in sys.stdlib_module_names or top == "__future__":
                    continue
                where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
                found.setdefault(top, f"{where}:{node.lineno}")
    return found


def undeclared(modules: dict[str, str], wanted: set[str]) -> list[str]:
    owners = packages_distributions()
    problems = []
    for module, where in sorted(modules.items()):
        dists = {normalise(d) for d in owners.get(module, [])}
        if not dists:
            problems.append(f"{where} imports {module}, which no installed package provides")
        elif not dists & wanted:
            problems.append(f"{where} imports {module} ({', '.join(sorted(dists))}), "
                            "not declared in pyproject.toml")
    return problems


def product_files() -> list[Path]:
    return [p for package in sorted(LOCAL) for p in sorted((REPO / package).rglob("*.py"))]


def test_every_imported_package_is_declared():
    assert undeclared(imported_top_levels(product_files()), declared()) == []


def test_the_audit_catches_an_undeclared_import(tmp_path):
    module = tmp_path / "uses_yaml.py"
    module.write_text("import yaml\nimport json\nfrom knowledge import kb\n")
    modules = imported_top_levels([module])
    assert set(modules) == {"yaml"}  # stdlib and the product's own packages are not counted
    problems = undeclared(modules, {"numpy"})
    assert len(problems) == 1 and "uses_yaml.py:1 imports yaml" in problems[0]
    assert undeclared(modules, {"pyyaml"}) == []


def test_html_cleaner_that_justext_needs_is_declared():
    assert "lxml-html-clean" in declared()
