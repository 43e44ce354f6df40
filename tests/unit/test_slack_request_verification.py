"""An unsigned request never acts (issue 15, item 1).

Whatever is wrong with a request's signature headers (a timestamp such as 'abc', '', '1e3' or
'1.5', a missing or malformed signature, a wrong secret, a stale time), a real `dml serve
--http` answers 401 before anything parses the body, and nothing is posted to Slack and
nothing fetched, not even the response_url the body names. The error handler never acts on
a request that was not verified, and a response_url is only ever called when it is Slack's.
Here which response_urls may be called (the rest: tests/integration, tests/system).
"""

from __future__ import annotations

import pytest

from bot.verification import is_response_url

from ..slack_stub import (
    SlackAPIStub,
)


@pytest.fixture(scope="module")
def slack():
    with SlackAPIStub() as stub:
        yield stub


# -- the error handler, reached without the HTTP adapter's check ------------------------------


# -- response_url: Slack's, or the configured stand-in's -----------------------------------


@pytest.mark.parametrize("url", [
    "https://hooks.slack.com/commands/T1/1/x",
    "https://hooks.slack.com/actions/T1/1/x",
    "http://127.0.0.1:4000/response/x",  # the configured stand-in's origin
])
def test_response_urls_that_may_be_called(url):
    assert is_response_url(url, api_url="http://127.0.0.1:4000/")


@pytest.mark.parametrize("url", [
    "http://hooks.slack.com/commands/T1/1/x",  # not https
    "https://hooks.slack.com.evil.example/x",
    "https://hooks.slack.com@evil.example/x",
    "https://user@hooks.slack.com/x",
    "https://hooks.slack.com:8443/x",
    "https://hooks.slack.com:443/x",  # Slack writes no port
    "https://evil.example/?https://hooks.slack.com/",
    "https://hooks.slack.com\\@evil.example/",
    "http://169.254.169.254/latest/meta-data",
    "http://127.0.0.1:4001/response/x",  # the stand-in's host, another port
    "https://slack.com/api/chat.postMessage",  # slack.com itself is no response_url
    "", None, 42, "not a url", "https://[broken/",
])
def test_response_urls_that_are_never_called(url):
    assert not is_response_url(url, api_url="http://127.0.0.1:4000/")
    assert not is_response_url(url, api_url="https://slack.com/api/")
