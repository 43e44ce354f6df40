"""An unsigned request never acts (issue 15, item 1).

Whatever is wrong with a request's signature headers (a timestamp such as 'abc', '', '1e3' or
'1.5', a missing or malformed signature, a wrong secret, a stale time), a real `dml serve
--http` answers 401 before anything parses the body, and nothing is posted to Slack and
nothing fetched, not even the response_url the body names. The error handler never acts on
a request that was not verified, and a response_url is only ever called when it is Slack's.
Here a real `dml serve --http` (the rest: tests/integration, tests/unit).
"""

from __future__ import annotations

import json
import shutil
import time
from urllib.parse import urlencode

import pytest

from ..conftest import SIGNING_SECRET
from ..dml_process import DMLServe, raw_post
from ..slack_stub import (
    SlackAPIStub,
    app_mention,
    event_callback,
    sign,
    signed_post,
)

QUIET = 2.0  # how long "nothing was posted" is watched for


@pytest.fixture(scope="module")
def slack():
    with SlackAPIStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def elsewhere():
    """Another host: where a hostile body's response_url points (recorded, never to be called)."""
    with SlackAPIStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def served(handbook_data_dir, tmp_path_factory, slack):
    data = tmp_path_factory.mktemp("verification") / "data"
    shutil.copytree(handbook_data_dir, data)
    server = DMLServe(data_dir=data, api_url=slack.url, secret=SIGNING_SECRET)
    yield server
    assert server.stop() == 0


def hostile_bodies(slack, elsewhere) -> list[tuple[str, str]]:
    """Bodies naming a victim channel and response_urls (foreign, and the stand-in's own)."""
    event = json.dumps({"type": "event_callback", "event_id": "EvVICTIM", "event": {
        "type": "app_mention", "channel": "CVICTIM", "ts": "1.2", "user": "U1",
        "text": "<@UBOT> what is overfitting?"}})
    commands = [urlencode({"command": "/ml-ask", "text": "what is overfitting?", "user_id": "U1",
                           "channel_id": "CVICTIM", "trigger_id": "1.2.3", "response_url": url})
                for url in (elsewhere.url + "response/ssrf", slack.url + "response/ssrf")]
    return [(event, "application/json")] + [(c, "application/x-www-form-urlencoded")
                                             for c in commands]


def header_cases(body: str) -> dict[str, dict[str, str]]:
    now = str(int(time.time()))
    good = sign(body, secret=SIGNING_SECRET, timestamp=now)
    cases: dict[str, dict[str, str]] = {
        f"timestamp {ts!r}, unsigned": {"X-Slack-Request-Timestamp": ts}
        for ts in ("abc", "", "1e3", "1.5", f" {now}", f"{now}.0", "-1", "9" * 30)}
    cases.update({
        "timestamp 'abc', signed with the secret": {
            "X-Slack-Request-Timestamp": "abc",
            "X-Slack-Signature": sign(body, secret=SIGNING_SECRET, timestamp="abc")},
        "timestamp '1e3', signed with the secret": {
            "X-Slack-Request-Timestamp": "1e3",
            "X-Slack-Signature": sign(body, secret=SIGNING_SECRET, timestamp="1e3")},
        "no headers": {},
        "no timestamp": {"X-Slack-Signature": good},
        "no signature": {"X-Slack-Request-Timestamp": now},
        "empty signature": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": ""},
        "not hex": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "z" * 64},
        "not ASCII": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "é" * 64},
        "v1 scheme": {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v1" + good[2:]},
        "wrong secret": {"X-Slack-Request-Timestamp": now,
                         "X-Slack-Signature": sign(body, secret="guessed", timestamp=now)},
        "another body's signature": {"X-Slack-Request-Timestamp": now,
                                     "X-Slack-Signature": sign("{}", secret=SIGNING_SECRET,
                                                               timestamp=now)},
    })
    for name, offset in (("stale", -6 * 60), ("from the future", 6 * 60)):
        ts = str(int(time.time()) + offset)
        cases[name] = {"X-Slack-Request-Timestamp": ts,
                       "X-Slack-Signature": sign(body, secret=SIGNING_SECRET, timestamp=ts)}
    return cases


@pytest.mark.slow
def test_unverified_requests_get_401_and_nothing_is_posted_or_fetched(served, slack, elsewhere):
    slack.reset()
    elsewhere.reset()
    answered = {}
    for body, content_type in hostile_bodies(slack, elsewhere):
        for name, headers in header_cases(body).items():
            status, reply = raw_post(served.url + "/slack/events", body,
                                     {"Content-Type": content_type, **headers})
            answered[f"{content_type.split('/')[1]}: {name}"] = status
    assert {case: status for case, status in answered.items() if status != 401} == {}
    time.sleep(QUIET)
    assert slack.calls == [], [(c.method, c.params) for c in slack.calls]
    assert elsewhere.calls == [], [(c.method, c.path) for c in elsewhere.calls]
    assert not any("handler failed" in line for line in served.lines)

    # The same process still answers a request Slack signed.
    ts = "1700000000.000300"
    signed = signed_post(served.url + "/slack/events",
                         event_callback(app_mention("What is overfitting?", ts=ts)),
                         secret=SIGNING_SECRET)
    assert signed.status == 200
    [answer] = slack.wait_for("chat.postMessage", timeout=60)
    assert answer.params["thread_ts"] == ts and answer.params["channel"] == "C1"
    slack.wait_for("reactions.remove")  # the working indicator: the answer is done


@pytest.mark.slow
def test_a_malformed_unsigned_body_is_refused_without_being_parsed(served, slack):
    slack.reset()
    for body in ('{"type": "event_callback", "event": {"channel": "CVICTIM"', "\xff\xfe{}"):
        status, _ = raw_post(served.url + "/slack/events", body.encode("latin-1"),
                             {"Content-Type": "application/json",
                              "X-Slack-Request-Timestamp": "abc"})
        assert status == 401
    time.sleep(QUIET)
    assert slack.calls == []


# -- the error handler, reached without the HTTP adapter's check ------------------------------


# -- response_url: Slack's, or the configured stand-in's -----------------------------------
