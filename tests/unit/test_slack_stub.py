"""The Slack test harness itself: the Web API stand-in answers a real WebClient the way
Slack does, signed requests pass Slack's own verifier, and the payload builders are routed
by a real Bolt App to the listeners they are meant for."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from tests.slack_stub import (
    BOT_ID,
    BOT_USER_ID,
    SlackAPIStub,
    SlackSigner,
    app_home_opened,
    app_mention,
    block_actions,
    bot_message,
    channel_message,
    event_callback,
    message_im,
    message_shortcut,
    reaction_added,
    signed_post,
    slash_command,
    thread_message,
    view_submission,
)

SECRET = "test-signing-secret"


@pytest.fixture
def stub():
    with SlackAPIStub() as s:
        yield s


@pytest.fixture
def client(stub):
    return WebClient(base_url=stub.url, token="xoxb-test",
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])


# -- the Web API stand-in ----------------------------------------------------


def test_post_message_is_recorded_and_answered_like_slack(stub, client):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*AUC* is ..."}}]
    resp = client.chat_postMessage(channel="C1", text="AUC is ...", blocks=blocks, thread_ts="1.2")

    assert resp["ok"] and resp["channel"] == "C1"
    assert resp["message"]["bot_id"] == BOT_ID and resp["message"]["user"] == BOT_USER_ID
    assert resp["message"]["blocks"] == blocks
    [call] = stub.calls_of("chat.postMessage")
    assert call.params == {"channel": "C1", "text": "AUC is ...", "blocks": blocks, "thread_ts": "1.2"}
    assert call.token == "xoxb-test" and call.delivered and call.status == 200
    assert stub.url.startswith("http://127.0.0.1:") and stub.url.endswith("/")


def test_message_ts_are_unique_and_increasing(client):
    stamps = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(3)]
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 3
    assert stamps[0] == "1700000000.000100"


def test_auth_test_identifies_the_bot(client):
    resp = client.auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team_id"]) == (BOT_USER_ID, BOT_ID, "T1")


def test_reads_return_preloaded_data(stub, client):
    stub.thread_messages[("C1", "1.0")] = [{"ts": "1.0", "text": "question"},
                                           {"ts": "1.1", "text": "answer", "bot_id": BOT_ID}]
    stub.history["C1"] = [{"ts": "2.0", "text": "hello"}]
    stub.usergroups["S1"] = ["U1", "U2"]

    assert [m["text"] for m in client.conversations_replies(channel="C1", ts="1.0")["messages"]] \
        == ["question", "answer"]
    assert client.conversations_replies(channel="C1", ts="2.0")["messages"] == [{"ts": "2.0", "text": "hello"}]
    with pytest.raises(SlackApiError, match="thread_not_found"):
        client.conversations_replies(channel="C1", ts="9.9")  # no such message in C1's history
    assert client.conversations_replies(channel="C7", ts="9.9")["messages"] == []  # no history preloaded
    assert client.conversations_history(channel="C1")["messages"][0]["text"] == "hello"
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    assert client.users_info(user="U7")["user"]["id"] == "U7"
    private = client.conversations_info(channel="G1")["channel"]
    im = client.conversations_info(channel="D1")["channel"]
    assert private["is_private"] and not private["is_im"] and im["is_im"]
    assert client.conversations_info(channel="C1")["channel"]["is_member"] is True
    stub.channels["C2"] = {"is_member": False}
    stub.channels["G2"] = None  # a private channel the bot is not in: Slack says it is not found
    assert client.conversations_info(channel="C2")["channel"]["is_member"] is False
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.conversations_info(channel="G2")
    link = client.chat_getPermalink(channel="C1", message_ts="1700000000.000100")["permalink"]
    assert link == "https://team.slack.com/archives/C1/p1700000000000100"
    # GET requests are parsed from the query string.
    assert client.api_call("users.info", http_verb="GET", params={"user": "U9"})["user"]["id"] == "U9"
    assert stub.calls_of("users.info")[-1].params == {"user": "U9"}


def test_users_list_pages_with_cursors_and_shows_emails_only_with_the_scope(stub, client):
    for i in range(5):
        stub.users[f"U{i}"] = {"profile": {"email": f"person{i}@example.com"}}
    stub.users["U9"] = {"deleted": True}

    first = client.users_list(limit=2)
    assert [m["id"] for m in first["members"]] == ["U0", "U1"]
    assert first["members"][0]["profile"]["email"] == "person0@example.com"
    assert first["members"][0]["profile"]["real_name"] == "user-u0"  # the default profile stays
    assert isinstance(first["cache_ts"], int)
    seen, cursor = [m["id"] for m in first["members"]], first["response_metadata"]["next_cursor"]
    while cursor:
        page = client.users_list(limit=2, cursor=cursor)
        seen += [m["id"] for m in page["members"]]
        cursor = page["response_metadata"]["next_cursor"]
    assert seen == ["U0", "U1", "U2", "U3", "U4", "U9"]
    assert [c.params.get("cursor") is None for c in stub.calls_of("users.list")] == [True, False, False]
    assert [m["id"] for m in client.users_list()["members"]] == seen  # no limit: all of them

    stub.email_scope = False  # without users:read.email Slack leaves the address out
    assert all("email" not in m["profile"] for m in client.users_list(limit=200)["members"])


def test_views_and_unknown_methods(stub, client):
    view = {"type": "modal", "callback_id": "draft", "title": {"type": "plain_text", "text": "Draft"},
            "blocks": []}
    assert client.views_open(trigger_id="t", view=view)["view"]["id"] == "V123"
    assert stub.calls_of("views.open")[0].params["view"] == view
    assert client.reactions_add(channel="C1", timestamp="1.0", name="eyes")["ok"]
    assert client.api_call("bookmarks.add", params={"channel_id": "C1"})["ok"]
    assert [c.method for c in stub.calls] == ["views.open", "reactions.add", "bookmarks.add"]


def test_rate_limited_call_is_retried_after_retry_after(stub, client):
    stub.fail("chat.postMessage", status=429, times=1, retry_after=1)

    resp = client.chat_postMessage(channel="C1", text="answer")

    assert resp["ok"]
    [delivered] = stub.calls_of("chat.postMessage")
    rejected, retried = stub.calls_of("chat.postMessage", include_failed=True)
    assert (rejected.status, rejected.delivered) == (429, False)
    assert retried is delivered and retried.params["text"] == "answer"
    assert retried.at - rejected.at >= 1.0


def test_rate_limit_answer_carries_retry_after_and_error(stub):
    stub.fail("chat.postMessage", times=1, retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        WebClient(base_url=stub.url, token="xoxb-test").chat_postMessage(channel="C1", text="x")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.response["error"] == "ratelimited"


def test_server_error_is_answered_then_clears(stub, client):
    stub.fail("chat.postMessage", status=500)
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1", text="x")
    assert caught.value.response.status_code == 500
    assert client.chat_postMessage(channel="C1", text="y")["ok"]
    assert [c.status for c in stub.calls_of("chat.postMessage", include_failed=True)] == [500, 200]


def test_token_named_after_a_status_fails_everything_but_auth_test(stub):
    client = WebClient(base_url=stub.url, token="xoxb-429")
    assert client.auth_test()["ok"]
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1", text="x")
    assert caught.value.response.status_code == 429


def test_response_url_posts_are_recorded(stub):
    resp = WebhookClient(stub.url + "response/abc").send(text="only you can see this",
                                                         response_type="ephemeral")
    assert resp.status_code == 200
    [call] = stub.calls_of("response_url")
    assert call.path == "/response/abc"
    assert call.params == {"text": "only you can see this", "response_type": "ephemeral"}


def test_wait_for_waits_for_late_calls_and_explains_timeouts(stub, client):
    threading.Timer(0.2, client.chat_postMessage, kwargs={"channel": "C1", "text": "late"}).start()
    [call] = stub.wait_for("chat.postMessage", timeout=5, predicate=lambda c: c.params["text"] == "late")
    assert call.params["channel"] == "C1"

    with pytest.raises(AssertionError, match=r"(?s)chat\.update.*got 0.*chat\.postMessage"):
        stub.wait_for("chat.update", timeout=0.1)


def test_reset_forgets_calls_faults_and_data(stub, client):
    client.chat_postMessage(channel="C1", text="x")
    stub.fail("chat.postMessage", status=500)
    stub.history["C1"] = [{"text": "old"}]
    stub.reset()
    assert stub.calls == []
    assert client.chat_postMessage(channel="C1", text="y")["ok"]
    assert client.conversations_history(channel="C1")["messages"] == []


def test_history_pages_newest_first_with_slacks_cursors(stub, client):
    stub.history["C1"] = [{"ts": f"{100 + i}.000100", "text": str(i)} for i in range(7)]
    pages, cursor = [], None
    while True:
        page = client.conversations_history(channel="C1", limit=3, cursor=cursor)
        pages.append([m["text"] for m in page["messages"]])
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break
    assert pages == [["6", "5", "4"], ["3", "2", "1"], ["0"]]
    since = client.conversations_history(channel="C1", oldest="104.000100", latest="106.000100")
    assert [m["text"] for m in since["messages"]] == ["5"]  # both ends exclusive, like Slack


def test_replies_page_from_the_parent(stub, client):
    stub.thread_messages[("C1", "1.0")] = [{"ts": f"1.{i}", "text": str(i)} for i in range(5)]
    first = client.conversations_replies(channel="C1", ts="1.0", limit=2)
    rest = client.conversations_replies(channel="C1", ts="1.0", limit=10,
                                        cursor=first["response_metadata"]["next_cursor"])
    assert [m["text"] for m in first["messages"] + rest["messages"]] == ["0", "1", "2", "3", "4"]
    assert first["has_more"] and not rest["has_more"]


def test_a_channel_the_bot_is_not_in_refuses_reads(stub, client):
    stub.channels["C2"] = {"is_member": False}
    assert client.conversations_info(channel="C2")["channel"]["is_member"] is False
    with pytest.raises(SlackApiError) as caught:
        client.conversations_history(channel="C2")
    assert caught.value.response["error"] == "not_in_channel"


def test_tier_limit_answers_429_until_a_call_frees_up(stub, client):
    stub.rate_limit("conversations.history", calls=2, window=1.0)
    for _ in range(3):
        assert client.conversations_history(channel="C1")["ok"]
    rejected = [c for c in stub.calls_of("conversations.history", include_failed=True) if not c.delivered]
    assert [c.status for c in rejected] == [429]
    assert len(stub.calls_of("conversations.history")) == 3


# -- signed requests ---------------------------------------------------------


@pytest.fixture
def verifying_endpoint():
    """A bot endpoint that checks requests with slack_sdk's own SignatureVerifier."""
    verifier = SignatureVerifier(SECRET)
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append(dict(self.headers.items()))
            ok = verifier.is_valid_request(body, dict(self.headers.items()))
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b"verified" if ok else b"invalid signature")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slack/events", received
    server.shutdown()
    server.server_close()


def test_signed_requests_pass_slacks_verifier(verifying_endpoint):
    url, received = verifying_endpoint
    payload = event_callback(app_mention("hi"))

    status, body, elapsed = signed_post(url, payload, secret=SECRET)
    assert (status, body) == (200, "verified") and 0 < elapsed < 5
    assert received[-1]["Content-Type"] == "application/json"

    assert signed_post(url, payload, secret=SECRET, forge=True).status == 401
    assert signed_post(url, payload, secret=SECRET, timestamp=time.time() - 360).status == 401
    assert SlackSigner(url, SECRET).post(slash_command("/dml", "help")).status == 200
    assert received[-1]["Content-Type"] == "application/x-www-form-urlencoded"


def test_retry_headers_mark_slacks_redelivery(verifying_endpoint):
    url, received = verifying_endpoint
    assert signed_post(url, event_callback(app_mention("hi")), secret=SECRET, retry_num=1).status == 200
    assert received[-1]["X-Slack-Retry-Num"] == "1"
    assert received[-1]["X-Slack-Retry-Reason"] == "http_timeout"


# -- payload builders, routed by a real Bolt App ------------------------------


def test_payloads_reach_the_listeners_bolt_routes_them_to(stub):
    app = App(client=WebClient(base_url=stub.url, token="xoxb-test"), signing_secret=SECRET,
              process_before_response=True)
    seen: dict[str, object] = {}

    @app.event("app_mention")
    def on_mention(event, say):
        seen["mention"] = (event["user"], event["channel"], event["text"])
        say(text="answer", thread_ts=event.get("thread_ts") or event["ts"])

    @app.event("message")
    def on_message(event):
        seen.setdefault("message", []).append((event["channel_type"], event.get("thread_ts")))

    @app.event("reaction_added")
    def on_reaction(event):
        seen["reaction"] = (event["reaction"], event["item"]["ts"], event["item_user"])

    @app.event("app_home_opened")
    def on_home(event):
        seen["home"] = event["user"]

    @app.command("/dml")
    def on_command(ack, command, respond):
        ack()
        seen["command"] = (command["text"], command["user_id"], command["channel_id"])
        respond("working on it")

    @app.action("helpful")
    def on_action(ack, body, action):
        ack()
        seen["action"] = (action["value"], body["container"]["message_ts"],
                          body["container"].get("thread_ts"), body["channel"]["id"])

    @app.view("draft")
    def on_view(ack, view):
        ack()
        seen["view"] = (view["private_metadata"], view["state"]["values"]["title"]["input"]["value"])

    @app.shortcut("save_to_kb")
    def on_shortcut(ack, shortcut):
        ack()
        seen["shortcut"] = (shortcut["message"]["text"], shortcut["channel"]["id"])

    signer = SlackSigner("unused", SECRET)
    payloads = [
        event_callback(app_mention("what is AUC?", user="U1", channel="C1", ts="10.0")),
        event_callback(message_im("hello")),
        event_callback(thread_message("and PR-AUC?", thread_ts="10.0")),
        event_callback(channel_message("what is ROC?", channel="G2", channel_type="group")),
        event_callback(bot_message("build passed")),
        event_callback(reaction_added("+1", user="U1", channel="C1", ts="11.0")),
        event_callback(app_home_opened("U3")),
        slash_command("/dml", "ask what is AUC?", user_id="U2", channel_id="C2",
                      response_url=stub.url + "response/cmd"),
        block_actions("helpful", "yes", message_ts="11.0", thread_ts="10.0"),
        view_submission("draft", {"title": {"input": "Calibration"}}, private_metadata="C1|10.0"),
        message_shortcut("save_to_kb", message={"text": "Use isotonic regression", "user": "U2"}),
    ]
    for payload in payloads:
        response = app.dispatch(BoltRequest(body=payload.body, headers=signer.headers(payload)))
        assert response.status == 200, (payload.data.get("type"), response.body)

    assert seen == {
        "mention": ("U1", "C1", f"<@{BOT_USER_ID}> what is AUC?"),
        "message": [("im", None), ("channel", "10.0"), ("group", None), ("channel", None)],
        "reaction": ("+1", "11.0", BOT_USER_ID),
        "home": "U3",
        "command": ("ask what is AUC?", "U2", "C2"),
        "action": ("yes", "11.0", "10.0", "C1"),
        "view": ("C1|10.0", "Calibration"),
        "shortcut": ("Use isotonic regression", "C1"),
    }
    [reply] = stub.calls_of("chat.postMessage")
    assert reply.params["channel"] == "C1" and reply.params["thread_ts"] == "10.0"
    assert stub.calls_of("response_url")[0].params["text"] == "working on it"


def test_payload_bodies_are_encoded_as_slack_sends_them():
    command = slash_command("/dml", "a b&c")
    assert parse_qs(command.body)["text"] == ["a b&c"] and not command.body.startswith("{")
    action = block_actions("helpful", "yes")
    assert json.loads(parse_qs(action.body)["payload"][0]) == action.data
    envelope = event_callback(app_mention("hi"), event_id="Ev1")
    assert json.loads(envelope.body)["event_id"] == "Ev1" and envelope.content_type == "application/json"
