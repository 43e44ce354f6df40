"""A real `dml sources add` then `dml sources sync` in a process of its own, killed with
kill -9 once it has stored some documents: what the kill tests of every kind of source
share (the source's stand-in and what is checked afterwards are each test's own)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import REPO


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without DML's, Slack's and the database's settings, with
    ``settings``, a shared model export folder, and batches of 64 passages (the kill lands
    between two stored batches of a few hundred documents)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DML_", "SLACK_")) and k != "DATABASE_URL"}
    env.update(DML_EXPORT_DIR=os.environ.get("DML_EXPORT_DIR", str(tmp_path / "exports")),
               DML_INGEST_BATCH="64", **settings)
    return env


def add_then_kill_sync(data: Path, env: dict[str, str], add: list[str], name: str, *,
                       stored_at_least: int = 20, within_s: float = 240) -> None:
    """``dml sources add *add --name name``, then ``dml sources sync name`` killed with
    SIGKILL as soon as ``stored_at_least`` documents are in its SQLite database."""
    dml = [sys.executable, "-m", "shell.cli", "--data-dir", str(data), "sources"]
    added = subprocess.run([*dml, "add", *add, "--name", name], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    process = subprocess.Popen([*dml, "sync", name, "--no-progress"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stored = 0
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and process.poll() is None:
            with sqlite3.connect(data / "dml.sqlite3", timeout=5) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            if stored >= stored_at_least:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None and stored < stored_at_least:
            process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the sync was killed while it was writing"
