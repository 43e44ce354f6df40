"""Feedback on answers: 👍, 👎 with its reasons modal, and the assistant panel's feedback
buttons (the same record). Recorded in the question log and used for ranking."""

from __future__ import annotations

from slack_bolt import App

from . import blocks as ui
from .listener_deps import ListenerDeps, action_id_number

__all__ = ["register"]


def register(app: App, deps: ListenerDeps) -> None:
    kb = deps.kb

    def vote(client, body: dict, question_id: int | None, *, helpful: bool, thank: bool) -> None:
        """Record a 👍/👎 on a logged answer; a 👎 opens the form asking what was wrong."""
        if question_id is None or kb.questions.get(question_id) is None:
            return
        feedback_id = kb.feedback.record(question_id, user=body["user"]["id"], helpful=helpful)
        if helpful:
            if thank:
                deps.tell(client, body, "Thanks! Good answers like this one will rank higher next time.")
        elif body.get("trigger_id"):
            client.views_open(trigger_id=body["trigger_id"],
                              view=ui.feedback_modal(question_id, feedback_id))

    @app.action("feedback_up")
    def on_helpful(ack, body, action, client):
        ack()
        vote(client, body, action_id_number(action.get("value")), helpful=True, thank=True)

    @app.action("feedback_down")
    def on_not_helpful(ack, body, action, client):
        ack()
        vote(client, body, action_id_number(action.get("value")), helpful=False, thank=True)

    @app.action("answer_feedback")
    def on_panel_feedback(ack, body, action, client):
        # Slack's feedback buttons acknowledge a thumbs-up themselves: no note on top.
        ack()
        choice, _, number = str(action.get("value") or "").partition(":")
        if choice in ("up", "down"):
            vote(client, body, action_id_number(number), helpful=choice == "up", thank=False)

    @app.view("feedback_modal")
    def on_feedback_modal(ack, view):
        ack()
        try:
            _, feedback_id = (int(x) for x in view.get("private_metadata", "").split(":"))
        except ValueError:
            return
        if not 0 < feedback_id < 2**63:  # SQL INTEGER range
            return
        values = view.get("state", {}).get("values", {})
        reason = ((values.get("reason", {}).get("reason", {}) or {}).get("selected_option") or {}).get("value")
        comment = (values.get("comment", {}).get("comment", {}) or {}).get("value")
        kb.feedback.update_reason(feedback_id, reason=reason, comment=comment)
