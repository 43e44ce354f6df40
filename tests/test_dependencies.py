"""Every package the product imports is declared in pyproject.toml, and HTML ingest works
in the installed environment as a fresh one would have it (lxml 6 moved ``lxml.html.clean``
out into ``lxml_html_clean``, which trafilatura's justext imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from .conftest import REPO

LOCAL = {"bot", "knowledge", "ingest", "shell"}


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {normalise(Requirement(r).name) for r in project["dependencies"]}


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


def test_html_page_ingests_in_a_fresh_interpreter(tmp_path):
    """A new process (nothing imported before) parses an HTML page through trafilatura."""
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Calibration notes</title></head><body><article>"
        "<h1>Calibration notes</h1><p>Platt scaling fits a logistic regression on the "
        "scores of a held-out split, so predicted probabilities match observed rates.</p>"
        "<p>Isotonic regression is the non-parametric alternative when there is more data."
        "</p></article></body></html>", encoding="utf-8")
    code = (
        "import sys, trafilatura\n"
        "from pathlib import Path\n"
        "from ingest.loaders import load_file\n"
        "doc = load_file(Path(sys.argv[1]))\n"
        "print(doc.title)\n"
        "print(' '.join(s.text for s in doc.sections))\n")
    out = subprocess.run([sys.executable, "-c", code, str(page)], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Calibration notes" in out.stdout
    assert "Platt scaling fits a logistic regression" in out.stdout


def test_installed_requirements_are_consistent():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_module_imports_in_a_fresh_interpreter():
    """Each module of the product imports on its own (a dependency missing from a fresh
    install, or one only ever imported lazily, shows up here rather than in production)."""
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                     for p in product_files() if "migrations" not in p.parts)
    code = ("import importlib, sys\n"
            "failed = []\n"
            "for name in sys.argv[1:]:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception as exc:\n"
            "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
            "print('\\n'.join(failed))\n"
            "sys.exit(1 if failed else 0)\n")
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert len(modules) > 40
