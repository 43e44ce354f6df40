"""Feedback on answers: 👍, 👎 with its reasons modal, and the assistant panel's feedback
buttons (the same record). Recorded in the question log and used for ranking."""

from __future__ import annotations

from slack_bolt import App

from . import blocks as ui
from .listener_deps import ListenerDeps, action_id_number

__all__ = ["register"]


def register(app: App, deps: ListenerDeps) -> None:
    kb = deps.kb

    @app.action("feedback_up")
    def on_helpful(ack, body, action, client):
        ack()
        question_id = action_id_number(action.get("value"))
        if question_id is None or kb.questions.get(question_id) is None:
            return
        kb.feedback.record(question_id, user=body["user"]["id"], helpful=True)
        deps.tell(client, body, "Thanks! Good answers like this one will rank higher next time.")

    @app.action("feedback_down")
    def on_not_helpful(ack, body, action, client):
        ack()
        question_id = action_id_number(action.get("value"))
        if question_id is None or kb.questions.get(question_id) is None:
            return
        feedback_id = kb.feedback.record(question_id, user=body["user"]["id"], helpful=False)
        client.views_open(trigger_id=body["trigger_id"], view=ui.feedback_modal(question_id, feedback_id))

    @app.action("answer_feedback")
    def on_panel_feedback(ack, body, action, client):
        ack()
        vote, _, number = str(action.get("value") or "").partition(":")
        question_id = action_id_number(number)
        if vote not in ("up", "down") or question_id is None or kb.questions.get(question_id) is None:
            return
        feedback_id = kb.feedback.record(question_id, user=body["user"]["id"], helpful=vote == "up")
        if vote == "down" and body.get("trigger_id"):
            client.views_open(trigger_id=body["trigger_id"],
                              view=ui.feedback_modal(question_id, feedback_id))

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
