"""The Slack side of a Slack channel source: the bot's Web API client (``build_client``:
429 ``Retry-After`` honoured, server errors retried) handed to ``ingest``'s Slack source as
the ``call`` it reads through, so that ingest needs no slack_sdk of its own."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ingest import SlackWorkspace

__all__ = ["slack_workspace"]


def slack_workspace(client: WebClient, *, experts: Iterable[str] = ()) -> SlackWorkspace:
    """A ``SlackWorkspace`` reading through ``client``; Slack's refusals come back as its
    JSON (``ok: false``, the error) for the source to explain, not as exceptions."""

    def call(method: str, **params: Any) -> dict[str, Any]:
        try:
            return dict(client.api_call(method, http_verb="GET", params=params).data)
        except SlackApiError as exc:
            data = exc.response.data
            return dict(data) if isinstance(data, dict) else {"ok": False, "error": str(exc)}

    return SlackWorkspace(call=call, experts=tuple(experts))
