"""The Bolt listeners of the drafts flow: ``/ml-draft``, its buttons and its modals, and
replies in a draft's review thread (kept as comments).

Each acknowledges first; a modal's input is checked before its acknowledgement so a
refusal shows in the modal, next to the field, with what was typed still there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import App
from slack_sdk import WebClient

from knowledge.drafts import DraftRefused

from . import draft_blocks as ui
from .blocks import escape
from .drafts import parse_submission, refusal_text
from .listener_deps import ListenerDeps, action_id_number, from_a_bot

__all__ = ["register", "USAGE"]

log = logging.getLogger(__name__)
USAGE = ("`/ml-draft` opens a form to circulate a write-up for corrections; "
         "`/ml-draft list` shows your open drafts.")


def register(app: App, deps: ListenerDeps) -> None:
    flows, tell = deps.drafts, deps.tell
    drafts = flows.drafts

    def in_a_review_thread(event: dict, context) -> bool:
        bot_user = context.get("bot_user_id")
        if bot_user and f"<@{bot_user}>" in (event.get("text") or ""):
            return False  # a mention: app_mention answers it
        return bool(event.get("thread_ts") and event.get("channel_type") != "im"
                    and not event.get("subtype") and not from_a_bot(event)
                    and drafts.by_review_post(event.get("channel") or "", event["thread_ts"]))

    @app.event("message", matchers=[in_a_review_thread])
    def on_review_reply(body, event):
        reviewed = drafts.by_review_post(event["channel"], event["thread_ts"])
        if reviewed is not None and deps.first_time(body, event):
            flows.thread_reply(reviewed, user=event.get("user"), text=event.get("text", ""),
                               ts=event["ts"])

    def user_of(body: dict) -> str:
        return (body.get("user") or {}).get("id") or ""

    def guarded(client: WebClient, body: dict, work: Callable[[], str | None]) -> None:
        """Run a button's work; a refusal or a result note goes to the person who clicked."""
        try:
            note = work()
        except DraftRefused as exc:
            note = refusal_text(exc)
        if note:
            tell(client, body, note)

    @app.command("/ml-draft")
    def on_draft(ack, command, client):
        text = (command.get("text") or "").strip().lower()
        if text in ("help", "?"):
            ack(text=USAGE)
            return
        if text == "list":
            mine = drafts.of_author(command.get("user_id") or "")
            lines = [f"• *{escape(d.title)}*: version {d.version}, {drafts.pending_count(d.id)} pending"
                     for d in mine[:20]]
            ack(text="Your open drafts:\n" + "\n".join(lines) if lines else "You have no open drafts.")
            return
        if text:
            ack(text=f"I don't know `{escape(text[:40])}`. {USAGE}")
            return
        ack()
        client.views_open(trigger_id=command["trigger_id"],
                          view=ui.submit_modal(channel=command.get("channel_id")))

    @app.view("draft_submit")
    def on_submit(ack, body, view, client):
        new, url, errors = parse_submission(view, user_of(body), today=drafts.today())
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        flows.submit(client, new, url=url)

    @app.action("draft_correct")
    def on_correct(ack, body, action, client):
        ack()
        draft_id = action_id_number(action.get("value"))
        if draft_id is None:
            return

        def work():
            draft = flows.may_review(client, draft_id, user_of(body))
            client.views_open(trigger_id=body["trigger_id"], view=ui.correction_modal(draft))
        guarded(client, body, work)

    @app.view("draft_correction")
    def on_correction(ack, body, view, client):
        errors, then = flows.correction_submitted(client, view=view, user=user_of(body))
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        then()

    @app.action("draft_approve")
    def on_approve(ack, body, action, client):
        ack()
        draft_id = action_id_number(action.get("value"))
        if draft_id is not None:
            guarded(client, body, lambda: flows.approve(client, draft_id=draft_id, user=user_of(body)))

    @app.action("draft_read")
    def on_read(ack, body, action, client):
        ack()
        draft_id = action_id_number(action.get("value"))
        if draft_id is not None:
            guarded(client, body, lambda: flows.read(client, draft_id=draft_id, trigger_id=body["trigger_id"]))

    @app.action("draft_diff")
    def on_diff(ack, body, action, client):
        ack()
        guarded(client, body, lambda: flows.diff(client, value=str(action.get("value") or ""),
                                                 trigger_id=body["trigger_id"]))

    def open_decision(body: dict, action: dict, client: WebClient, doing: str) -> None:
        correction_id = action_id_number(action.get("value"))
        if correction_id is not None:
            guarded(client, body, lambda: flows.open_decision(
                client, correction_id=correction_id, user=user_of(body),
                trigger_id=body["trigger_id"], doing=doing))

    def decide(ack, body: dict, view: dict, client: WebClient, doing: str) -> None:
        errors, then = flows.decision_submitted(client, view=view, user=user_of(body), doing=doing)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        then()

    @app.action("draft_accept")
    def on_accept(ack, body, action, client):
        ack()
        open_decision(body, action, client, "accept")

    @app.action("draft_reject")
    def on_reject(ack, body, action, client):
        ack()
        open_decision(body, action, client, "reject")

    @app.action("draft_reply")
    def on_reply(ack, body, action, client):
        ack()
        open_decision(body, action, client, "reply")

    @app.view("draft_accept")
    def on_accepted(ack, body, view, client):
        decide(ack, body, view, client, "accept")

    @app.view("draft_reject")
    def on_rejected(ack, body, view, client):
        decide(ack, body, view, client, "reject")

    @app.view("draft_reply")
    def on_replied(ack, body, view, client):
        decide(ack, body, view, client, "reply")

    @app.action("draft_publish")
    def on_publish(ack, body, action, client):
        ack()
        draft_id = action_id_number(action.get("value"))
        if draft_id is not None:
            guarded(client, body, lambda: flows.publish(client, draft_id=draft_id, user=user_of(body)))

    @app.action("draft_withdraw")
    def on_withdraw(ack, body, action, client):
        ack()
        draft_id = action_id_number(action.get("value"))
        if draft_id is not None:
            guarded(client, body, lambda: flows.withdraw(client, draft_id=draft_id, user=user_of(body)))
