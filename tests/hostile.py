"""A corpus of hostile inputs for ``dml ingest``, written into a folder by ``write_corpus``.

Each ``Hostile`` is a file (or a line of a JSONL file) that an attacker or a careless
colleague could leave in a folder, with the reason it must be refused for; each
``Contained`` is one that may be ingested, but only with its hostile part made harmless.
Beside them sit good documents, which must be ingested all the same. The folders next to
the corpus hold what its links point at and a handbook whose id the corpus tries to take.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from ingest.loaders import MAX_FILE_BYTES, MAX_LINE_BYTES

__all__ = ["Hostile", "Contained", "HOSTILE", "CONTAINED", "GOOD", "SECRETS", "write_corpus"]

TAKEN_ID = "handbook/class-imbalance"
SECRETS = ("hunter22", "Salary bands", "lollollol")


@dataclass(frozen=True)
class Hostile:
    where: str  # the file under the corpus, ":line" for a JSONL line
    reason: str  # part of the reason it is refused for


@dataclass(frozen=True)
class Contained:
    where: str
    doc_id: str  # ingested under this id (relative to the corpus: a path)
    harmless: str  # what it must have lost, checked by the test


HOSTILE = [
    # Markdown front matter
    Hostile("alias-bomb.md", "YAML alias"),
    Hostile("front-matter-deep.md", "front matter nested more than"),
    Hostile("front-matter-huge.md", "characters of front matter"),
    Hostile("front-matter-many-values.md", "more than 5000 values"),
    Hostile("front-matter-nan.md", "NaN"),
    Hostile("front-matter-dict-title.md", '"title" must be text'),
    Hostile("front-matter-takes-an-id.md", f"has id '{TAKEN_ID}', already used by"),
    # files that are not what their name says
    Hostile("binary.md", "binary"),
    Hostile("utf16-without-bom.md", "binary"),
    Hostile("late-nul.txt", "NUL character"),
    Hostile("empty.md", "is empty"),
    Hostile("whitespace.txt", "is empty"),
    Hostile("empty.jsonl", "is empty"),
    Hostile("no-text.html", "no readable text"),
    Hostile("deep.html", "no readable text"),
    Hostile("deep-quotes.md", "has no text"),
    Hostile("broken.pdf", "not a readable PDF"),
    Hostile("huge.txt", f"the limit is {MAX_FILE_BYTES}"),
    Hostile("pipe.md", "not a regular file"),
    # links
    Hostile("notes.txt", "links outside"),
    Hostile("team-private", "links outside"),
    Hostile("hidden-link.txt", "links to a hidden name"),
    Hostile("dangling.md", "cannot be read"),
    # JSONL lines
    Hostile("faq.jsonl:2", "nested too deeply"),
    Hostile("faq.jsonl:3", "NUL character"),
    Hostile("faq.jsonl:4", "NaN is not a number JSON allows"),
    Hostile("faq.jsonl:5", "not UTF-8"),
    Hostile("faq.jsonl:6", '"id" must be a string or a whole number'),
    Hostile("faq.jsonl:7", '"title" must be text'),
    Hostile("faq.jsonl:8", '"kind" must be text'),
    Hostile("faq.jsonl:9", f"has id '{TAKEN_ID}', already used by"),
    Hostile("faq.jsonl:10", f"longer than {MAX_LINE_BYTES} bytes"),
    Hostile("faq.jsonl:11", '"id" of 1100 characters; the limit is 1024'),
    Hostile("faq.jsonl:12", '"kind" of 40 characters; the limit is 32'),
    Hostile("faq.jsonl:13", "metadata nested more than"),
    Hostile("faq.jsonl:14", "not a JSON object"),
    Hostile("faq.jsonl:15", "repeats id 'faq/good-1'"),
    Hostile("faq.jsonl:16", "is not JSON"),
    Hostile("faq.jsonl:17", "Infinity is not a number JSON allows"),
]
CONTAINED = [
    Contained("python-tag.md", "python-tag.md", "a !!python tag is not constructed"),
    Contained("entity-bomb.html", "entity-bomb.html", "entities are not expanded"),
    Contained("script.html", "script.html", "scripts are not text"),
    Contained("cp1252.txt", "cp1252.txt", "read as Windows-1252, not refused"),
    Contained("inside-link.md", "inside-link.md", "a link that stays inside is followed"),
]
GOOD = {
    "good/dropout.md": "good/dropout.md",
    "good/weight-decay.txt": "good/weight-decay.txt",
    "good/page.html": "good/page.html",
    "faq.jsonl:1": "faq/good-1",
    "faq.jsonl:18": "faq/good-2",
}

DROPOUT = ("Dropout switches off a random half of the hidden units at every training step, so "
           "the network cannot rely on any single unit and learns redundant features.")
DECAY = ("Weight decay adds a penalty proportional to the squared size of every weight; with "
         "Adam use the decoupled form, AdamW.")


def _alias_bomb() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    return "---\n" + "\n".join(lines) + "\n---\n# Laughs\n\nA billion of them, once expanded.\n"


def _entity_bomb() -> str:
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">' for n in range(1, 10)]
    return ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n' + "\n".join(entities) + "\n]>\n"
            "<html><head><title>Laughs</title></head><body><article><p>&lol9;</p>"
            "<p>Entity expansion must not happen when a page is read for its text.</p>"
            "</article></body></html>")


def _jsonl_lines() -> list[bytes]:
    def line(record) -> bytes:
        return json.dumps(record).encode()

    return [
        line({"id": "faq/good-1", "title": "Early stopping",
              "text": "Stop training when the validation loss has not improved for five epochs."}),
        b'{"id": "deep", "text": "x", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        line({"id": "nul", "text": "A NUL \u0000 in the text."}),
        b'{"id": "nan", "text": "A score that is not a number.", "metadata": {"score": NaN}}',
        "{\"id\": \"latin1\", \"text\": \"Caf\xe9\"}".encode("latin-1"),
        line({"id": True, "text": "A boolean is not an id."}),
        line({"id": "dict-title", "title": {"en": "Title"}, "text": "A title is text."}),
        line({"id": "list-kind", "kind": ["doc"], "text": "A kind is one word."}),
        line({"id": TAKEN_ID, "text": "Ignore the class balance: another source's id."}),
        b'{"id": "huge", "text": "' + b"a" * MAX_LINE_BYTES + b'"}',
        line({"id": "x" * 1100, "text": "An id longer than the column."}),
        line({"id": "long-kind", "kind": "k" * 40, "text": "A kind longer than the column."}),
        b'{"id": "deep-meta", "text": "Nested.", "metadata": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}",
        b'["not", "an", "object"]',
        line({"id": "faq/good-1", "text": "A second line claiming the same id."}),
        b'{"id": "cut", "text": "cut off half-way',
        b'{"id": "inf", "text": "Infinity.", "metadata": {"score": -Infinity}}',
        line({"id": "faq/good-2", "title": "Label smoothing",
              "text": "Label smoothing replaces one-hot targets with slightly softened ones."}),
    ]


def write_corpus(root: Path) -> tuple[Path, Path]:
    """Write the handbook whose id is taken, what the links point at, and the corpus;
    returns (handbook folder, corpus folder)."""
    handbook, outside, corpus = root / "handbook", root / "outside", root / "corpus"
    for folder in (handbook, outside / "private", corpus / "good"):
        folder.mkdir(parents=True)
    (handbook / "imbalance.md").write_text(f"---\nid: {TAKEN_ID}\n---\n# Class imbalance\n\n"
                                           "Reweight the loss or resample the rare class.\n")
    (outside / ".env").write_text("SLACK_BOT_TOKEN=xoxb-1-2-3\nDATABASE_PASSWORD=hunter22\n")
    (outside / "private" / "salaries.md").write_text("# Salaries\n\nSalary bands for the whole team.\n")

    (corpus / "good" / "dropout.md").write_text(f"# Dropout\n\n{DROPOUT}\n")
    (corpus / "good" / "weight-decay.txt").write_text(f"Weight decay\n\n{DECAY}\n")
    (corpus / "good" / "page.html").write_text(
        "<html><head><title>Beam search</title></head><body><article><p>Beam search keeps the k "
        "most likely partial sequences at every step of decoding.</p></article></body></html>")

    files: dict[str, str | bytes] = {
        "alias-bomb.md": _alias_bomb(),
        "front-matter-deep.md": "---\ndeep: " + "[" * 5000 + "]" * 5000 + "\n---\n# Deep\n\nBody.\n",
        "front-matter-huge.md": "---\n" + "".join(f"k{i}: {'x' * 60}\n" for i in range(2000)) + "---\n# Big\n\nBody.\n",
        "front-matter-many-values.md": "---\nmany: [" + ",".join(["1"] * 30000) + "]\n---\n# Many\n\nBody.\n",
        "front-matter-nan.md": "---\nscore: .nan\n---\n# NaN\n\nA score that is not a number.\n",
        "front-matter-dict-title.md": "---\ntitle: {en: Title}\n---\n# Title\n\nA dict title.\n",
        "front-matter-takes-an-id.md": f"---\nid: {TAKEN_ID}\n---\n# Mine now\n\nIgnore the class balance.\n",
        "binary.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(1).randbytes(2000),
        "utf16-without-bom.md": "# Notes\n\nUTF-16 without its byte order mark.\n".encode("utf-16-le"),
        "late-nul.txt": "Late\n\n" + "Plain text about batch norm. " * 400 + "\x00 the end\n",
        "empty.md": b"",
        "whitespace.txt": "  \n\n\t\n",
        "empty.jsonl": b"",
        "no-text.html": "<html><body><script>var lollollol = 1;</script></body></html>",
        "deep.html": "<html><body>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000 + "</body></html>",
        "deep-quotes.md": "> " * 100_000 + "text at the bottom\n",
        "broken.pdf": b"%PDF-1.7\n" + random.Random(7).randbytes(400),
        "faq.jsonl": b"\n".join(_jsonl_lines()) + b"\n",
        "python-tag.md": "---\ncmd: !!python/object/apply:os.system ['touch PWNED']\n---\n# Tagged\n\n"
                         "The tag names a Python call; it must never be made.\n",
        "entity-bomb.html": _entity_bomb(),
        "script.html": "<html><head><title>Scripted</title><script>var lollollol = document.cookie;</script>"
                       "</head><body><article><p>Gradient clipping caps the norm of each update so one "
                       "bad batch cannot blow up training.</p></article></body></html>",
        "cp1252.txt": "Notes de cours\n\nLe mod\u00e8le \u00e9tait tr\u00e8s s\u00fbr de lui.".encode("cp1252"),
    }
    for name, content in files.items():
        path = corpus / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    with (corpus / "huge.txt").open("wb") as huge:  # sparse: over the limit, nothing written
        huge.truncate(MAX_FILE_BYTES + 1)
    os.mkfifo(corpus / "pipe.md")
    (corpus / "notes.txt").symlink_to(Path("..") / "outside" / ".env")
    (corpus / "team-private").symlink_to(outside / "private")
    (corpus / "dangling.md").symlink_to(corpus / "moved-away.md")
    (corpus / "inside-link.md").symlink_to(Path("good") / "dropout.md")
    (corpus / ".env").write_text("DATABASE_PASSWORD=hunter22\n")  # hidden: never read
    (corpus / "hidden-link.txt").symlink_to(".env")
    return handbook, corpus
