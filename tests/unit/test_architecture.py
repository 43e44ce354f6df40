"""The shape of the code: imports go one way (``ingest → knowledge ← bot ← shell``, and
``shell`` may use all three), the bot and the shell use ``ingest`` only through its public
entry point, each feature of ``knowledge`` (``search``, ``drafts``, ``digests``, ``tuning``,
``ops``, ``backup``) is used from outside it only through its public entry point, and only
the settings module reads the environment (once, at start-up)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ..conftest import REPO

ENV_ALLOWED = {"knowledge/settings.py"}  # RootSettings.from_env: the one place that reads it
# os.environ.setdefault only: HF offline mode, and no progress bars under JSON logs.
ENV_WRITES_ALLOWED = {"knowledge/search/embedding.py", "knowledge/search/embedding_backends.py",
                      "shell/cli/root.py"}
PACKAGES = ("knowledge", "ingest", "bot", "shell")


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


def knowledge_features() -> list[str]:
    """The subpackages of ``knowledge`` (its migrations are Alembic's, not a feature)."""
    return sorted(p.parent.name for p in (REPO / "knowledge").glob("*/__init__.py")
                  if p.parent.name != "migrations")


def public_names(feature: str) -> set[str]:
    """``__all__`` of ``knowledge/<feature>/__init__.py``, read from the source."""
    tree = ast.parse((REPO / "knowledge" / feature / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def feature_of(module: str, features: list[str]) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "knowledge" and parts[1] in features else None


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


def deep_feature_imports(path: Path) -> list[str]:
    """Imports of a knowledge feature from outside it that go past its public entry point."""
    features = knowledge_features()
    own = feature_of(".".join(path.relative_to(REPO).with_suffix("").parts), features)
    problems = []
    for line, module, names in imported_modules(path):
        feature = feature_of(module, features)
        if feature is None or feature == own:
            continue
        if module != f"knowledge.{feature}":
            problems.append(f"{rel(path)}:{line} imports {module}")
            continue
        unknown = sorted(set(names) - public_names(feature))
        if unknown:
            problems.append(f"{rel(path)}:{line} imports {unknown}, not in knowledge.{feature}.__all__")
    return problems


# Slack's markup: a user or channel mention, a special mention, a link with its label.
SLACK_MARKUP = re.compile(r"<[@#!][A-Za-z]|<https?://[^>]*\|")


def slack_markup(path: Path) -> list[str]:
    """String literals (f-string parts included) that build Slack markup."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # Docstrings may show what is parsed ("<@U03>" in a setting's value): they build nothing.
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    problems = []
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            text = re.sub(r"\{\}", "X", text)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SLACK_MARKUP.search(text):
            problems.append(f"{rel(path)}:{node.lineno} builds Slack markup: {text[:60]!r}")
    return problems


def cli_cycles(path: Path) -> list[str]:
    commands = {f"shell.cli.{p.stem}" for p in (REPO / "shell" / "cli").glob("*.py")}
    allowed = {"shell.cli.root"}
    return [f"{rel(path)}:{line} imports {module}" for line, module, _ in imported_modules(path)
            if module == "shell.cli" or module in commands - allowed]


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
def test_knowledge_imports_neither_bot_nor_ingest_nor_shell(path):
    assert forbidden_imports(path, {"bot", "ingest", "shell"}) == []


@pytest.mark.parametrize("path", python_files("knowledge") + python_files("ingest"), ids=rel)
def test_library_code_knows_nothing_of_slack_or_the_bot(path):
    assert forbidden_imports(path, {"bot", "shell", "slack_bolt", "slack_sdk"}) == []


@pytest.mark.parametrize("path", python_files("bot"), ids=rel)
def test_the_slack_adapter_never_imports_the_shell(path):
    assert forbidden_imports(path, {"shell"}) == []


@pytest.mark.parametrize("path", python_files("bot") + python_files("shell"), ids=rel)
def test_bot_and_shell_use_ingest_only_through_its_public_entry_point(path):
    import ingest

    assert deep_ingest_imports(path) == []
    for line, module, names in imported_modules(path):
        if module == "ingest":
            unknown = [n for n in names if n not in ingest.__all__]
            assert unknown == [], f"{rel(path)}:{line} imports {unknown}, not in ingest.__all__"


@pytest.mark.parametrize("path", [p for p in python_files("knowledge") + python_files("ingest")
                                  + python_files("bot") + python_files("shell") + python_files("bench")
                                  if "migrations" not in p.parts], ids=rel)
def test_knowledge_features_are_used_only_through_their_public_entry_points(path):
    assert deep_feature_imports(path) == []


@pytest.mark.parametrize("path", python_files("knowledge"), ids=rel)
def test_knowledge_builds_no_slack_markup(path):
    # Mentions, links and formatting are rendered in bot/; knowledge returns structure
    # (the drafts rules' refusals name the people and channels, the bot mentions them).
    assert slack_markup(path) == []


@pytest.mark.parametrize("path", [p for p in python_files("shell/cli")
                                  if p.name not in {"__init__.py", "__main__.py"}], ids=rel)
def test_cli_command_modules_import_the_root_group_not_the_package_or_each_other(path):
    # Subcommands are registered in shell/cli/__init__.py alone: no import cycles.
    assert cli_cycles(path) == []


@pytest.mark.parametrize("path", [p for package in PACKAGES for p in python_files(package)
                                  if rel(p) not in ENV_ALLOWED], ids=rel)
def test_only_the_settings_module_reads_the_environment(path):
    assert environment_reads(path) == []


def test_the_public_entry_point_exports_what_it_lists():
    import ingest

    for name in ingest.__all__:
        assert hasattr(ingest, name), name


@pytest.mark.parametrize("feature", knowledge_features())
def test_each_knowledge_feature_exports_what_it_lists(feature):
    import importlib

    package = importlib.import_module(f"knowledge.{feature}")
    assert sorted(package.__all__) == sorted(public_names(feature))
    for name in package.__all__:
        assert hasattr(package, name), f"knowledge.{feature}.{name}"


# bot/settings.py (Slack's) and knowledge/settings.py move to shell/ on another branch.
NAME_CLASHES_ALLOWED = {"settings"}


def module_name_clashes(files: list[Path]) -> dict[str, list[str]]:
    """Module names used in two places (a package and a module count: bot/drafts.py and
    knowledge/drafts/ are one feature's two sides, so packages are left out)."""
    seen: dict[str, list[str]] = {}
    for path in files:
        if path.name != "__init__.py" and "migrations" not in path.parts:
            seen.setdefault(path.stem, []).append(rel(path))
    return {name: paths for name, paths in seen.items()
            if len(paths) > 1 and name not in NAME_CLASHES_ALLOWED}


def class_name_clashes(files: list[Path]) -> dict[str, list[str]]:
    """Public class names defined in two modules (one type per meaning)."""
    seen: dict[str, list[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                seen.setdefault(node.name, []).append(rel(path))
    return {name: paths for name, paths in seen.items() if len(paths) > 1}


def test_names_say_one_thing_each():
    files = python_files("bot") + python_files("shell") + python_files("ingest") + python_files("knowledge")
    # shell/cli/ modules are named after the subcommand they register (`dml drafts` beside
    # bot/drafts.py: one feature's terminal and Slack sides).
    assert module_name_clashes([p for p in files if p.parent != REPO / "shell" / "cli"]) == {}
    assert class_name_clashes(files) == {}


def test_name_checks_catch_clashes(fake_repo_file):
    files = [fake_repo_file("knowledge/search/text.py", "class Passage:\n    pass\n"),
             fake_repo_file("knowledge/drafts/text.py", "class Passage:\n    pass\n"),
             fake_repo_file("bot/settings.py", "class _Local:\n    pass\n"),
             fake_repo_file("knowledge/settings.py", "class _Local:\n    pass\n")]
    assert module_name_clashes(files) == {"text": ["knowledge/search/text.py", "knowledge/drafts/text.py"]}
    assert class_name_clashes(files) == {"Passage": ["knowledge/search/text.py", "knowledge/drafts/text.py"]}


def test_knowledge_is_organised_by_feature():
    assert knowledge_features() == ["backup", "channels", "digests", "drafts", "ops", "review", "search", "sources", "tuning"]


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
    bad = fake_repo_file("knowledge/bad.py", "def f():\n    from bot.app import build_app\n"
                                             "import ingest.web\nfrom ..ingest import x\n"
                                             "from shell.cli import main\n")
    assert len(forbidden_imports(bad, {"bot", "ingest", "shell"})) == 4

    upward = fake_repo_file("bot/upward.py", "from shell.server import HTTPServer\n"
                                             "def f():\n    from ..shell import scheduler\n"
                                             "from knowledge.kb import KnowledgeBase\n")
    assert forbidden_imports(upward, {"shell"}) == ["bot/upward.py:1 imports shell.server",
                                                    "bot/upward.py:3 imports shell"]

    deep = fake_repo_file("bot/deep.py", "from ingest.web import Fetcher\nimport ingest.pipeline\n"
                                         "from ingest import Ingestor\nfrom . import ingest\n")
    assert len(deep_ingest_imports(deep)) == 2

    fake_repo_file("shell/cli/root.py", "")
    fake_repo_file("shell/cli/serving.py", "")
    cycle = fake_repo_file("shell/cli/tune.py", "from .root import knowledge_base\n"
                                                "from . import serving\nfrom shell.cli import main\n"
                                                "def f():\n    from .serving import run\n")
    assert cli_cycles(cycle) == ["shell/cli/tune.py:2 imports shell.cli",
                                 "shell/cli/tune.py:3 imports shell.cli",
                                 "shell/cli/tune.py:5 imports shell.cli.serving"]

    env = fake_repo_file("ingest/env.py", "import os\nfrom os import environ\n"
                                          "a = os.environ['X']\nb = os.getenv('Y')\n"
                                          "c = os.environ.get('Z')\n")
    assert len(environment_reads(env)) == 4
    bot_env = fake_repo_file("bot/app.py", "import os\ntoken = os.getenv('SLACK_BOT_TOKEN')\n")
    assert environment_reads(bot_env) == ["bot/app.py:2 uses os.getenv"]
    shell_env = fake_repo_file("shell/cli/root.py", "import os\nos.environ.setdefault('A', '1')\n"
                                                    "port = int(os.environ.get('PORT'))\n")
    assert environment_reads(shell_env) == ["shell/cli/root.py:3 uses os.environ"]

    writes = fake_repo_file("knowledge/search/embedding.py",
                            "import os\nos.environ.setdefault('HF_HUB_OFFLINE', '1')\n"
                            "token = os.environ.get('HF_TOKEN')\n")
    assert environment_reads(writes) == ["knowledge/search/embedding.py:3 uses os.environ"]


def test_feature_check_catches_imports_past_the_entry_point(fake_repo_file):
    fake_repo_file("knowledge/search/__init__.py", "from .store import Store\n__all__ = ['Store']\n")
    fake_repo_file("knowledge/drafts/__init__.py", "__all__ = []\n")
    fake_repo_file("knowledge/migrations/__init__.py", "")
    outside = fake_repo_file("bot/deep.py", "from knowledge.search.store import Store\n"
                                            "import knowledge.search.index\n"
                                            "from knowledge.search import Store, visible_in\n"
                                            "from knowledge.search import store\n"
                                            "from knowledge.errors import DMLError\n")
    assert deep_feature_imports(outside) == [
        "bot/deep.py:1 imports knowledge.search.store", "bot/deep.py:2 imports knowledge.search.index",
        "bot/deep.py:3 imports ['visible_in'], not in knowledge.search.__all__",
        "bot/deep.py:4 imports ['store'], not in knowledge.search.__all__"]
    sibling = fake_repo_file("knowledge/drafts/rules.py", "from ..search.store import Store\n"
                                                          "from knowledge.search import Store\n")
    assert deep_feature_imports(sibling) == ["knowledge/drafts/rules.py:1 imports knowledge.search.store"]
    inside = fake_repo_file("knowledge/search/retrieval.py", "from .store import Store\n"
                                                            "from knowledge.search.index import X\n")
    assert deep_feature_imports(inside) == []


def test_markup_check_catches_slack_markup(fake_repo_file):
    bad = fake_repo_file("knowledge/drafts/rules.py",
                         "a = f'Only <@{author}> can'\nb = f'members of <#{channel}>'\n"
                         "c = '<!channel> hi'\nd = f'<{url}|the link>'\ne = '<https://x.org|x>'\n"
                         "ok = f'{a} < {b}, x<y'\n")
    assert [p.split(" builds")[0] for p in slack_markup(bad)] == [
        "knowledge/drafts/rules.py:1", "knowledge/drafts/rules.py:2", "knowledge/drafts/rules.py:3",
        "knowledge/drafts/rules.py:5"]
