"""The local console: the real bot handlers, with Slack replaced by the terminal.

Each line typed is delivered to the same Bolt app the Slack bot runs, as a direct message
or, for lines starting with a slash command (``/ml-ask …``, ``/ml-add …``), as that
command. What the bot would post to Slack is printed instead.
"""

from __future__ import annotations

import html
import itertools
import json as jsonlib
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO
from urllib.parse import parse_qs, urlencode

from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from knowledge.kb import KnowledgeBase
from knowledge.settings import SlackSettings

from .app import COMMANDS, build_app
from .assistant import suggested_questions

__all__ = ["run_console", "blocks_to_text", "ConsoleSlack"]

log = logging.getLogger(__name__)
PROMPT = "ask> "
USER, CHANNEL = "UCONSOLE", "DCONSOLE"
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")


def blocks_to_text(text: str | None, blocks: list | None) -> str:
    """Block Kit as terminal text: sections in order, links as "title — url"."""
    parts: list[str] = []
    for block in blocks or []:
        if block.get("type") in ("section", "header"):
            parts.append((block.get("text") or {}).get("text", ""))
        elif block.get("type") == "context":
            parts.append(" ".join(e.get("text", "") for e in block.get("elements", [])))
    body = "\n\n".join(p for p in parts if p) or (text or "")
    body = re.sub(r"^\*(Sources|Closest sources)\*$", r"\1:", body, flags=re.M)
    body = re.sub(r"^(\[\d+\] From )\*([^*\n]+)\*:", r"\1\2:", body, flags=re.M)
    body = re.sub(r"^\[(\d+)\] (?!From )", r"  [\1] ", body, flags=re.M)
    body = _LINK.sub(r"\2 — \1", body)
    body = re.sub(r"^(  \[\d+\]) \*([^*\n]+)\* \(([^)\n]+)\)", r"\1 \2 — \3", body, flags=re.M)
    body = re.sub(r"<@([A-Z0-9]+)>", r"@\1", body)
    body = re.sub(r"<(https?://[^|>]+)>", r"\1", body)
    return html.unescape(body)


class ConsoleSlack:
    """Slack as far as the console needs it: a loopback Web API whose messages print here.

    Bolt builds its own Web API clients per request, so the console speaks the real
    protocol on 127.0.0.1 rather than patching a client: ``/api/<method>`` for the Web
    API, ``/response`` for slash commands' ``response_url``.
    """

    def __init__(self, out: TextIO):
        self.out = out
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace")
                if "json" in (self.headers.get("Content-Type") or ""):
                    args = jsonlib.loads(raw or "{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw).items()}
                body = outer.handle(self.path, args)
                data = jsonlib.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, path: str, args: dict) -> dict:
        method = path.split("?")[0].rsplit("/", 1)[-1]
        if path.startswith("/response"):
            if not args.get("delete_original"):
                self.say(args.get("text"), args.get("blocks"))
            return {"ok": True}
        body: dict = {"ok": True}
        if method in ("chat.postMessage", "chat.postEphemeral", "chat.update"):
            self.say(args.get("text"), args.get("blocks"))
            body.update(ts=f"{time.time():.6f}", channel=args.get("channel"))
        elif method == "views.open":
            view = args.get("view")
            view = jsonlib.loads(view) if isinstance(view, str) else view or {}
            title = ((view.get("title") or {}).get("text")) or "a form"
            self.say(f"(In Slack, the form “{title}” opens here. The console cannot fill in forms: "
                     "for a draft use `dml draft submit FILE --author U… --reviewer U…`.)", None)
        elif method == "auth.test":
            body.update(user_id="UDML", bot_id="BDML", team_id="TCONSOLE", user="dml")
        elif method == "conversations.info":
            body["channel"] = {"id": args.get("channel"), "is_im": True, "is_private": True}
        elif method in ("conversations.replies", "conversations.history"):
            body["messages"] = []
        elif method == "usergroups.users.list":
            body["users"] = []
        return body

    def say(self, text: str | None, blocks) -> None:
        if isinstance(blocks, str):
            blocks = jsonlib.loads(blocks)
        with self._lock:
            self.out.write(blocks_to_text(text, blocks).rstrip() + "\n\n")
            self.out.flush()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_console(kb: KnowledgeBase, stdin: TextIO, stdout: TextIO,
                settings: SlackSettings | None = None) -> int:
    """Answer each line through the bot's handlers; returns the number of lines handled."""
    interactive = stdin.isatty()
    slack = ConsoleSlack(stdout)
    settings = settings or SlackSettings(experts=(USER,))
    client = WebClient(token="xoxb-console", base_url=slack.base + "/api/")
    app = build_app(settings, kb, client=client, process_before_response=True,
                    verify_requests=False)
    if interactive:
        stdout.write("DML local console: ask an ML question, or use "
                     f"{', '.join(COMMANDS)} (Ctrl-D to quit).\n")
        stdout.write("Try asking:\n" + "".join(f"  • {q}\n" for q in suggested_questions(kb)))
    kb.warm_up()
    handled = 0
    try:
        for n in itertools.count(1):
            if interactive:
                stdout.write(PROMPT)
                stdout.flush()
            line = stdin.readline()
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text in {"/quit", "/exit"}:
                break
            if not interactive:
                stdout.write(f"> {text}\n")
            response = app.dispatch(_request(text, n, slack.base + "/response"))
            if response.body:  # an immediate reply in the acknowledgement (usage hints)
                try:
                    reply = jsonlib.loads(response.body)
                except ValueError:
                    reply = {"text": response.body}
                slack.say(reply.get("text"), reply.get("blocks"))
            handled += 1
    finally:
        slack.close()
    return handled


def _request(text: str, n: int, response_url: str) -> BoltRequest:
    ts = f"{int(time.time())}.{n:06d}"
    command, _, rest = text.partition(" ")
    if command in COMMANDS:
        body = urlencode({"command": command, "text": rest, "user_id": USER, "user_name": "you",
                          "channel_id": CHANNEL, "channel_name": "directmessage",
                          "team_id": "TCONSOLE", "response_url": response_url,
                          "trigger_id": f"console.{n}"})
        return BoltRequest(body=body, mode="socket_mode",
                           headers={"content-type": ["application/x-www-form-urlencoded"]})
    event = {"type": "message", "channel_type": "im", "channel": CHANNEL, "user": USER,
             "text": text, "ts": ts, "event_ts": ts, "client_msg_id": f"console-{ts}"}
    body = {"type": "event_callback", "team_id": "TCONSOLE", "api_app_id": "ACONSOLE",
            "event": event, "event_id": f"EvCONSOLE{ts.replace('.', '')}", "event_time": int(time.time())}
    return BoltRequest(body=jsonlib.dumps(body), mode="socket_mode",
                       headers={"content-type": ["application/json"]})
