"""Pure parts of synced sources: credentials out of URLs, access rules, web links to a file
at a commit, notebooks read as text, and a vendor's file (an attachment, a file block, a
Drive file) read as a document."""

from __future__ import annotations

import json
import re

import pytest

from ingest.connectors import contract
from ingest.connectors.contract import file_document
from ingest.connectors.git_repo import web_link
from ingest.connectors.notebooks import parse_notebook
from knowledge.errors import DMLError, SourceError
from knowledge.sources import AccessRule, redact_credentials, strip_credentials

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("url,clean,had", [
    ("https://ada:ghp_tok@github.com/o/r.git", "https://github.com/o/r.git", True),
    ("https://x-access-token:tok@gitlab.example.org:8443/g/r", "https://gitlab.example.org:8443/g/r", True),
    ("https://github.com/o/r", "https://github.com/o/r", False),
    ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git", False),
    ("ssh://git:pw@host/o/r.git", "ssh://git@host/o/r.git", True),
    ("git@github.com:o/r.git", "git@github.com:o/r.git", False),
    ("/srv/repos/handbook", "/srv/repos/handbook", False),
])
def test_credentials_are_stripped_from_urls(url, clean, had):
    assert strip_credentials(url) == (clean, had)


def test_credentials_are_redacted_from_messages():
    message = "fatal: unable to access 'https://ada:tok@github.com/o/r.git/': 403"
    assert redact_credentials(message) == "fatal: unable to access 'https://github.com/o/r.git/': 403"


@pytest.mark.parametrize("message,shown", [
    ("invalid_auth for xoxb-1234567890-abcdefGHIJ", "invalid_auth for [redacted]"),
    ("push refused (ghp_abcdefghijklmnopqrstuvwxyz0123456789)", "push refused ([redacted])"),
    ("401 with glpat-abcdefghij0123456789", "401 with [redacted]"),
    ("header Authorization: Bearer s3cr3t-value-xyz failed", "header Authorization: Bearer [redacted] failed"),
    ("GET /api?token=abcdefgh12345&page=2", "GET /api?token=[redacted]&page=2"),
    ("channel_not_found in #ml-help (xox is not a token)", "channel_not_found in #ml-help (xox is not a token)"),
])
def test_tokens_are_redacted_from_messages(message, shown):
    assert redact_credentials(message) == shown


@pytest.mark.parametrize("remote,link", [
    ("https://github.com/o/r.git", f"https://github.com/o/r/blob/{SHA}/docs/a%20b.md"),
    ("git@github.com:o/r.git", f"https://github.com/o/r/blob/{SHA}/docs/a%20b.md"),
    ("ssh://git@github.com/o/r", f"https://github.com/o/r/blob/{SHA}/docs/a%20b.md"),
    ("https://gitlab.com/group/sub/r.git", f"https://gitlab.com/group/sub/r/-/blob/{SHA}/docs/a%20b.md"),
    ("https://bitbucket.org/team/r.git", f"https://bitbucket.org/team/r/src/{SHA}/docs/a%20b.md"),
    ("https://git.example.org/r.git", None),
    ("/srv/repos/handbook", None),
])
def test_web_links_point_at_the_file_at_the_synced_commit(remote, link):
    assert web_link(remote, SHA, "docs/a b.md") == link


def test_access_rules_sort_slack_ids_and_live_in_metadata():
    assert AccessRule().public and AccessRule().to_metadata() == {}
    rule = AccessRule.of(["C02", "U01", "#C01", "S09", "<@U01>"])
    assert rule == AccessRule(channels=("C01", "C02"), users=("U01",), groups=("S09",))
    assert rule.to_metadata() == {"access": {"channels": ["C01", "C02"], "users": ["U01"], "groups": ["S09"]}}
    assert AccessRule.from_metadata(rule.to_metadata()) == rule
    assert AccessRule.from_metadata({}) == AccessRule()
    # A team answer captured in a private channel (before access rules) reads as that channel.
    assert AccessRule.from_metadata({"private_channel": "G7"}) == AccessRule(channels=("G7",))
    # Unreadable: never public.
    assert not AccessRule.from_metadata({"access": "everyone"}).public
    assert not AccessRule.from_metadata({"access": {}}).public
    with pytest.raises(DMLError, match="'general' is not a Slack channel"):
        AccessRule.of(["general"])


def notebook(*cells) -> bytes:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}).encode()


def test_a_notebook_reads_as_markdown_code_and_short_outputs():
    document = parse_notebook(notebook(
        {"cell_type": "markdown", "source": "# Early stopping\n\nStop when validation loss rises."},
        {"cell_type": "code", "source": ["x = 1\n", "print(x)"],
         "outputs": [{"output_type": "execute_result", "data": {"text/plain": "1"}},
                     {"output_type": "error", "ename": "ValueError", "traceback": ["boom"]},
                     {"output_type": "display_data", "data": {"text/html": "<table>"}}]},
        {"cell_type": "raw", "source": "ignored"}), "nb.ipynb", fallback_title="nb")
    assert document.title == "Early stopping"
    assert document.text.split("\n\n") == ["Early stopping", "Stop when validation loss rises.",
                                           "x = 1\nprint(x)", "1"]


@pytest.mark.parametrize("data,problem", [
    (b"{not json", "is not a Jupyter notebook (not JSON"),
    (b"[1, 2]", "is not a Jupyter notebook (no cells)"),
    (notebook({"cell_type": "code", "source": "", "outputs": []}), "has no text"),
])
def test_a_notebook_that_cannot_be_read_says_why(data, problem):
    with pytest.raises(SourceError, match="^" + re.escape(f"nb.ipynb: {problem}")):
        parse_notebook(data, "nb.ipynb", fallback_title="nb")


def test_a_vendors_file_is_titled_by_where_it_was_found_unless_it_has_a_title():
    untitled = file_document(b"Warmup for five percent of the steps.", "lr-notes.md", "wiki: lr-notes.md",
                             limit=1000, title="lr-notes.md (Training tips)")
    assert untitled.title == "lr-notes.md (Training tips)"
    titled = file_document("# Learning rates\n\nWarmup first.", "lr-notes.md", "wiki: lr-notes.md",
                           limit=1000, title="lr-notes.md (Training tips)")  # an export is text
    assert titled.title == "Learning rates"


@pytest.mark.parametrize("data, problem", [
    (None, "could not be downloaded (no content)"),
    ({"error": "not a file"}, "could not be downloaded (no content)"),
    (b"x" * 1001, "is larger than 1000 bytes"),
])
def test_a_vendors_file_that_cannot_be_used_says_why(data, problem):
    with pytest.raises(SourceError, match=re.escape(problem)) as raised:
        file_document(data, "notes.txt", "wiki: notes.txt", limit=1000, title="notes.txt")
    assert raised.value.where == "wiki: notes.txt"


def test_a_parsers_crash_on_a_vendors_file_is_that_files_problem(monkeypatch):
    def crash(*args, **kwargs):
        raise ValueError("bad xref table")

    monkeypatch.setattr(contract, "load_bytes", crash)
    with pytest.raises(SourceError, match=re.escape("could not be read (ValueError: bad xref table)")):
        file_document(b"%PDF-1.7 ...", "paper.pdf", "wiki: paper.pdf", limit=1000, title="paper.pdf")
