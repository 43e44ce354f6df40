"""Every package the product imports is declared in pyproject.toml, and HTML ingest works
in the installed environment as a fresh one would have it (lxml 6 moved ``lxml.html.clean``
out into ``lxml_html_clean``, which trafilatura's justext imports)."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import REPO
from ..unit.test_dependencies import product_files


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
