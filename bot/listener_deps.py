"""``ListenerDeps``: what every feature's ``register(app, deps)`` is given.

The services (knowledge base, the bot's Slack-side helpers, the drafts and digest flows)
and the small rules all listeners share: answer each delivery once, never answer a bot,
tell the person who clicked something privately.
"""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk import WebClient

from knowledge.kb import KnowledgeBase

from .digest_commands import DigestCommands
from .drafts import DraftFlows
from .handlers import DMLBot

__all__ = ["ListenerDeps", "from_a_bot", "action_id_number"]


def from_a_bot(event: dict) -> bool:
    return bool(event.get("bot_id") or event.get("subtype") == "bot_message"
                or event.get("bot_profile"))


def action_id_number(value: object) -> int | None:
    """A button's numeric value (a question, draft or feedback id), or None when it is not one."""
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None  # SQL INTEGER range


@dataclass(frozen=True)
class ListenerDeps:
    kb: KnowledgeBase
    bot: DMLBot
    drafts: DraftFlows
    digests: DigestCommands

    def first_time(self, body: dict, event: dict) -> bool:
        """Claim this delivery; False when another delivery (retry, replica) already did."""
        # One key per delivery, claimed atomically: with two keys claimed one by one, two
        # racing deliveries of the same event could each win one key and both give up.
        if event.get("channel") and event.get("ts"):
            # A message's channel+ts covers Slack's retries (same event_id) and the same
            # message arriving as app_mention and as message (different event_ids).
            return self.kb.questions.claim_event(f"msg:{event['channel']}:{event['ts']}")
        if body.get("event_id"):
            return self.kb.questions.claim_event(f"event:{body['event_id']}")
        return True

    @staticmethod
    def tell(client: WebClient, body: dict, text: str) -> None:
        """An ephemeral note to whoever clicked, where they clicked."""
        channel = (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        if channel and user:
            message = body.get("message") or {}
            client.chat_postEphemeral(channel=channel, user=user, text=text,
                                      thread_ts=message.get("thread_ts"))
