"""The shape of the code: imports go one way (``ingest → knowledge ← bot``), the bot uses
``ingest`` only through its public entry point, and library code never reads the
environment (settings are read once, at the edge)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ..conftest import REPO

ENV_ALLOWED = {"knowledge/settings.py"}  # Settings.from_env: the one place that reads it
ENV_WRITES_ALLOWED = {"knowledge/embedding.py"}  # forces HF offline mode; never reads


def python_files(package: str) -> list[Path]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def imported_modules(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, names) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(REPO).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(REPO).parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def top(module: str) -> str:
    return module.split(".", 1)[0]


# -- the checks, as functions so they can be shown to catch what they should ----------------
def forbidden_imports(path: Path, forbidden: set[str]) -> list[str]:
    return [f"{rel(path)}:{line} imports {module}"
            for line, module, _ in imported_modules(path) if top(module) in forbidden]


def deep_ingest_imports(path: Path) -> list[str]:
    problems = []
    for line, module, _names in imported_modules(path):
        if top(module) == "ingest" and module != "ingest":
            problems.append(f"{rel(path)}:{line} imports {module}")
    return problems


def environment_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        where = f"{rel(path)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in {"environ", "getenv", "environb", "getenvb"}:
                    problems.append(f"{where} imports os.{alias.name}")
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb",
                                                              "getenvb"}:
            if rel(path) in ENV_WRITES_ALLOWED and node.attr == "environ":
                call = parents.get(parents.get(node))
                if (isinstance(parents.get(node), ast.Attribute)
                        and parents[node].attr == "setdefault" and isinstance(call, ast.Call)):
                    continue  # os.environ.setdefault(...): a write, not a read
            problems.append(f"{where} uses {ast.unparse(node)}")
    return problems


# -- the rules ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", python_files("knowledge"), ids=rel)
def test_knowledge_imports_neither_bot_nor_ingest(path):
    assert forbidden_imports(path, {"bot", "ingest"}) == []


@pytest.mark.parametrize("path", python_files("knowledge") + python_files("ingest"), ids=rel)
def test_library_code_knows_nothing_of_slack_or_the_bot(path):
    assert forbidden_imports(path, {"bot", "slack_bolt", "slack_sdk"}) == []


@pytest.mark.parametrize("path", python_files("bot"), ids=rel)
def test_bot_uses_ingest_only_through_its_public_entry_point(path):
    import ingest

    assert deep_ingest_imports(path) == []
    for line, module, names in imported_modules(path):
        if module == "ingest":
            unknown = [n for n in names if n not in ingest.__all__]
            assert unknown == [], f"{rel(path)}:{line} imports {unknown}, not in ingest.__all__"


@pytest.mark.parametrize("path", [p for p in python_files("knowledge") + python_files("ingest")
                                  if rel(p) not in ENV_ALLOWED], ids=rel)
def test_library_code_never_reads_the_environment(path):
    assert environment_reads(path) == []


def test_the_public_entry_point_exports_what_it_lists():
    import ingest

    for name in ingest.__all__:
        assert hasattr(ingest, name), name


# -- the checks themselves catch what they should -------------------------------------------
@pytest.fixture
def fake_repo_file(tmp_path, monkeypatch):
    import tests.unit.test_architecture as this

    monkeypatch.setattr(this, "REPO", tmp_path)

    def write(relative: str, source: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        return path

    return write


def test_checks_catch_violations(fake_repo_file):
    bad = fake_repo_file("knowledge/bad.py", "def f():\n    from bot.cli import main\n"
                                             "import ingest.web\nfrom ..ingest import x\n")
    assert len(forbidden_imports(bad, {"bot", "ingest"})) == 3

    deep = fake_repo_file("bot/deep.py", "from ingest.web import Fetcher\nimport ingest.pipeline\n"
                                         "from ingest import Ingestor\nfrom . import ingest\n")
    assert len(deep_ingest_imports(deep)) == 2

    env = fake_repo_file("ingest/env.py", "import os\nfrom os import environ\n"
                                          "a = os.environ['X']\nb = os.getenv('Y')\n"
                                          "c = os.environ.get('Z')\n")
    assert len(environment_reads(env)) == 4

    writes = fake_repo_file("knowledge/embedding.py",
                            "import os\nos.environ.setdefault('HF_HUB_OFFLINE', '1')\n"
                            "token = os.environ.get('HF_TOKEN')\n")
    assert environment_reads(writes) == ["knowledge/embedding.py:3 uses os.environ"]
