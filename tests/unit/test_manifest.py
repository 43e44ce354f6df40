"""deploy/slack-manifest.yml declares exactly what bot/ uses: events, commands, shortcuts,
and the bot scopes its Web API calls and events need (and the Web API calls of the Slack
source in ingest/connectors/, made with the bot's client), no more and no fewer."""

from __future__ import annotations

import ast
import inspect
import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from bot import app as bot_app

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "slack-manifest.yml"
BOT = REPO / "bot"
# The Slack channel source reads with the bot's token, naming its methods ("users.info").
CONNECTORS = REPO / "ingest" / "connectors"
REQUEST_URL = "https://YOUR-HOST/slack/events"

# Bot-token scopes each Web API method needs, from Slack's method reference. Methods that
# take any conversation need the scope of every conversation type the bot can meet there.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "chat.postMessage": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "conversations.members": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "chat.getPermalink": (),  # no scope required
    "reactions.add": ("reactions:write",),
    "reactions.remove": ("reactions:write",),
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.replies": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "usergroups.users.list": ("usergroups:read",),
    "conversations.history": ("channels:history", "groups:history"),  # synced channels only
    "users.info": ("users:read",),
    "users.list": ("users:read", "users:read.email"),  # e-mails need users:read.email
    "views.open": (),  # no scope required (a trigger_id is the permission)
    "views.publish": (),  # no scope required
    "assistant.threads.setStatus": ("assistant:write",),
    "assistant.threads.setTitle": ("assistant:write",),
    "assistant.threads.setSuggestedPrompts": ("assistant:write",),
    "chat.startStream": ("chat:write",),
    "chat.appendStream": ("chat:write",),
    "chat.stopStream": ("chat:write",),
}

# Web API methods bot/ calls through Bolt's and slack_sdk's helpers rather than by name.
HELPER_METHODS: dict[str, tuple[str, ...]] = {
    "set_status": ("assistant.threads.setStatus",),
    "set_title": ("assistant.threads.setTitle",),
    "set_suggested_prompts": ("assistant.threads.setSuggestedPrompts",),
    "chat_stream": ("chat.startStream", "chat.appendStream", "chat.stopStream"),
}

# Events Bolt's Assistant middleware listens to, by the decorator that registers them.
ASSISTANT_EVENTS = {"thread_started": "assistant_thread_started",
                    "thread_context_changed": "assistant_thread_context_changed",
                    "user_message": "message"}

# Bot-token scopes each subscribed event needs, from Slack's event reference.
EVENT_SCOPES: dict[str, tuple[str, ...]] = {
    "app_mention": ("app_mentions:read",),
    "message.im": ("im:history",),
    "message.channels": ("channels:history",),
    "message.groups": ("groups:history",),
    "reaction_added": ("reactions:read",),
    "reaction_removed": ("reactions:read",),
    "app_home_opened": (),
    "assistant_thread_started": ("assistant:write",),
    "assistant_thread_context_changed": ("assistant:write",),
}

# Slash commands and shortcuts need the `commands` scope.
INTERACTIVE_SCOPES = ("commands",)


@cache
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def bot_scopes() -> list[str]:
    return manifest()["oauth_config"]["scopes"]["bot"]


def _api_method(name: str) -> str | None:
    """The dotted Web API method a WebClient method calls, e.g. chat_postMessage → chat.postMessage."""
    member = getattr(WebClient, name, None)
    if not callable(member) or name.startswith("_"):
        return None
    found = re.search(r'api_call\(\s*"([^"]+)"', inspect.getsource(member))
    return found.group(1) if found else None


@cache
def called_methods() -> dict[str, set[str]]:
    """Web API methods bot/*.py calls: ``client.chat_postMessage(...)`` and names it looks up
    with ``getattr(client, "reactions_add")``. Maps dotted method → files that call it."""
    calls: dict[str, set[str]] = {}
    for path in sorted(BOT.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: set[str] = set()
        helpers: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.arg):  # Bolt passes its helpers by parameter name
                helpers.add(node.arg)
        for name in names:
            if re.fullmatch(r"[a-z]+(_[a-zA-Z]+)+", name) and (method := _api_method(name)):
                calls.setdefault(method, set()).add(path.name)
        for name in names | helpers:
            for method in HELPER_METHODS.get(name, ()):
                calls.setdefault(method, set()).add(path.name)
    for path in sorted(CONNECTORS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in dotted_methods():
                calls.setdefault(node.value, set()).add(f"ingest/connectors/{path.name}")
    return calls


@cache
def dotted_methods() -> frozenset[str]:
    """Every Web API method WebClient knows, by its dotted name ("conversations.history")."""
    return frozenset(m for name in dir(WebClient) if (m := _api_method(name)))


@cache
def decorated_listeners() -> dict[str, set[str]]:
    """What the listener modules bot/app.py registers (its FEATURES) register:
    {"event": {...}, "command": {...}, "shortcut": ..., "action": ..., "view": ...}."""
    found: dict[str, set[str]] = {}
    files = [Path(feature.__file__) for feature in bot_app.FEATURES]
    nodes = [node for path in files for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))]
    for node in nodes:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Attribute) and isinstance(decorator.value, ast.Name)
                    and decorator.value.id == "assistant" and decorator.attr in ASSISTANT_EVENTS):
                found.setdefault("event", set()).add(ASSISTANT_EVENTS[decorator.attr])
            if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and isinstance(decorator.func.value, ast.Name) and decorator.func.value.id == "app"
                    and decorator.args):
                constraint = decorator.args[0]
                if isinstance(constraint, ast.Dict):  # @app.event({"type": "message", "subtype": …})
                    constraint = next(v for k, v in zip(constraint.keys, constraint.values, strict=True)
                                      if isinstance(k, ast.Constant) and k.value == "type")
                if isinstance(constraint, ast.Constant):
                    found.setdefault(decorator.func.attr, set()).add(constraint.value)
    return found


def needed_scopes() -> set[str]:
    scopes = {s for method in called_methods() for s in METHOD_SCOPES[method]}
    scopes |= {s for event in bot_app.LISTENED_EVENTS for s in EVENT_SCOPES[event]}
    if bot_app.COMMANDS or bot_app.SHORTCUTS:
        scopes |= set(INTERACTIVE_SCOPES)
    return scopes


# -- the manifest matches what the app listens to ----------------------------------------
def test_bot_events_are_exactly_the_listened_events():
    events = manifest()["settings"]["event_subscriptions"]["bot_events"]
    assert len(events) == len(set(events))
    assert set(events) == set(bot_app.LISTENED_EVENTS)


def test_slash_commands_are_exactly_the_apps_commands():
    commands = manifest()["features"]["slash_commands"]
    assert {c["command"] for c in commands} == set(bot_app.COMMANDS)
    for command in commands:
        assert command["description"].strip() and command["usage_hint"].strip(), command
        assert command["should_escape"] is False, command  # the bot parses <url|text> itself
        assert command["url"] == REQUEST_URL


def test_shortcuts_are_exactly_the_apps_message_shortcuts():
    shortcuts = manifest()["features"]["shortcuts"]
    assert {s["callback_id"] for s in shortcuts} == set(bot_app.SHORTCUTS)
    [shortcut] = [s for s in shortcuts if s["callback_id"] == "add_to_dml"]
    assert shortcut == {**shortcut, "type": "message", "name": "Add to DML knowledge"}
    assert shortcut["description"].strip()


def test_app_home_interactivity_and_socket_mode():
    features, settings = manifest()["features"], manifest()["settings"]
    home = features["app_home"]
    assert home["home_tab_enabled"] is True and home["messages_tab_enabled"] is True
    assert home.get("messages_tab_read_only_enabled", False) is False  # people DM the bot
    assert features["bot_user"]["display_name"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": REQUEST_URL}
    assert settings["event_subscriptions"]["request_url"] == REQUEST_URL
    assert settings["socket_mode_enabled"] is True
    assert settings["token_rotation_enabled"] is False
    assert manifest()["display_information"]["name"]


# -- the constants match the listeners app.py registers -----------------------------------
def test_constants_match_the_registered_listeners():
    listeners = decorated_listeners()
    assert listeners["command"] == set(bot_app.COMMANDS)
    assert listeners["shortcut"] == set(bot_app.SHORTCUTS)
    assert listeners["action"] == set(bot_app.ACTIONS)
    # One "message" listener serves every message.* subscription.
    assert listeners["event"] == {e.split(".")[0] for e in bot_app.LISTENED_EVENTS}


def test_every_action_listener_has_a_button():
    source = "\n".join(p.read_text(encoding="utf-8") for p in BOT.glob("*.py") if p.name != "app.py")
    missing = [a for a in bot_app.ACTIONS if f'"action_id": "{a}"' not in source
               and f'"{a}", ' not in source and f'action_id="{a}"' not in source]
    assert not missing, f"no button renders action listener(s) {missing}"


# -- scopes: exactly what the code uses ---------------------------------------------------
def test_the_scan_finds_the_web_api_calls():
    methods = called_methods()
    # Spot checks that the scan sees both direct calls and getattr(client, "reactions_add").
    assert {"chat.postMessage", "reactions.add", "reactions.remove", "views.publish"} <= set(methods)


def test_every_called_method_is_in_the_scope_table():
    unknown = sorted(set(called_methods()) - set(METHOD_SCOPES))
    assert not unknown, (f"bot/ calls {unknown}: add their bot scopes (Slack's method reference) "
                         "to METHOD_SCOPES and deploy/slack-manifest.yml")
    stale = sorted(set(METHOD_SCOPES) - set(called_methods()))
    assert not stale, f"METHOD_SCOPES lists methods bot/ no longer calls: {stale}"


def test_every_listened_event_is_in_the_scope_table():
    assert set(bot_app.LISTENED_EVENTS) <= set(EVENT_SCOPES)


@pytest.mark.parametrize("method", sorted(METHOD_SCOPES))
def test_each_called_method_has_its_scopes(method):
    if method not in called_methods():
        pytest.skip(f"{method} is not called")
    missing = sorted(set(METHOD_SCOPES[method]) - set(bot_scopes()))
    assert not missing, f"{method} (called in {sorted(called_methods()[method])}) needs {missing}"


def test_each_event_has_its_scopes():
    missing = {e: s for e in bot_app.LISTENED_EVENTS
               if (s := sorted(set(EVENT_SCOPES[e]) - set(bot_scopes())))}
    assert not missing


def test_manifest_requests_exactly_the_scopes_the_code_needs():
    requested = bot_scopes()
    assert len(requested) == len(set(requested)), "a scope is listed twice"
    needed = needed_scopes()
    assert not needed - set(requested), f"missing scopes: {sorted(needed - set(requested))}"
    assert not set(requested) - needed, f"scopes nothing needs: {sorted(set(requested) - needed)}"
    assert "user" not in manifest()["oauth_config"]["scopes"], "DML acts only as its bot user"
