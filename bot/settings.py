"""Slack settings, read from the environment at the edge (``SlackSettings.from_env``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from knowledge.errors import ConfigError

__all__ = ["SlackSettings", "DEFAULT_API_URL"]

DEFAULT_API_URL = "https://slack.com/api/"
_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")


def _ids(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    ids = tuple(part.strip().lstrip("@<").rstrip(">") for part in re.split(r"[,\s]+", raw) if part.strip())
    bad = [i for i in ids if not _ID.match(i)]
    if bad:
        raise ConfigError(f"{name} must list Slack user ids (U…/W…) or user-group ids (S…), got {bad}")
    return ids


def _channel(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip().lstrip("<#").split("|")[0].rstrip(">")
    if raw and not re.match(r"^[CG][A-Z0-9]{2,}$", raw):
        raise ConfigError(f"{name} must be a channel id like C0123ABCD, got {raw!r}")
    return raw or None


@dataclass(frozen=True, kw_only=True)
class SlackSettings:
    bot_token: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    # The designated machine learners: user ids and/or user-group ids, mentioned on hand-off.
    experts: tuple[str, ...] = ()
    # Who may add articles; the designated machine learners when unset.
    curators: tuple[str, ...] = ()
    # Where questions asked privately (DMs, /ml-ask) go when the bot does not know.
    experts_channel: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlackSettings:
        env = os.environ if env is None else env
        api_url = env.get("SLACK_API_URL") or DEFAULT_API_URL
        if not api_url.startswith(("http://", "https://")):
            raise ConfigError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}")
        return cls(
            bot_token=env.get("SLACK_BOT_TOKEN") or None,
            signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            app_token=env.get("SLACK_APP_TOKEN") or None,
            api_url=api_url if api_url.endswith("/") else api_url + "/",
            experts=_ids(env, "DML_EXPERTS"),
            curators=_ids(env, "DML_CURATORS"),
            experts_channel=_channel(env, "DML_EXPERTS_CHANNEL"),
        )

    @property
    def connected(self) -> bool:
        return bool(self.bot_token)

    def validate_for_serving(self, *, socket_mode: bool) -> None:
        if not self.bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is not set")
        if socket_mode and not self.app_token:
            raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (an xapp- token)")
        if not socket_mode and not self.signing_secret:
            raise ConfigError("HTTP mode needs SLACK_SIGNING_SECRET to verify Slack's requests")
