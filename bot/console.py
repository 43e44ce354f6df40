"""The local console: questions on standard input, answers as the bot gives them."""

from __future__ import annotations

import logging
from typing import TextIO

from knowledge.errors import DMLError

from .render_text import render_answer_text

__all__ = ["run_console"]

log = logging.getLogger(__name__)
PROMPT = "ask> "


def run_console(kb, stdin: TextIO, stdout: TextIO) -> int:
    """Answer each line; returns the number of questions answered. Ends at end of input."""
    interactive = stdin.isatty()
    if interactive:
        stdout.write("DML local console: ask an ML question (Ctrl-D to quit).\n")
    answered = 0
    kb.warm_up()
    while True:
        if interactive:
            stdout.write(PROMPT)
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        question = line.strip()
        if not question:
            continue
        if question in {"/quit", "/exit"}:
            break
        try:
            answer = kb.ask(question)
        except DMLError as exc:
            stdout.write(f"Sorry: {exc}\n\n")
            continue
        except Exception:
            log.exception("console question failed: %r", question[:200])
            stdout.write("Sorry, something went wrong answering that; it has been logged.\n\n")
            continue
        if not interactive:
            stdout.write(f"> {question}\n")
        stdout.write(render_answer_text(answer) + "\n")
        stdout.flush()
        answered += 1
    return answered
