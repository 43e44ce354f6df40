"""A mention in a channel gets a cited answer in the thread (the bot over real HTTP)."""

from ..slack_stub import app_mention, event_callback


def test_mention_gets_a_cited_answer_in_the_thread(bot):
    response = bot.post(event_callback(app_mention("What is overfitting?", ts="1700000000.000100"),
                                       event_id="Ev1"))
    assert response.status == 200
    [call] = bot.api.wait_for("chat.postMessage", timeout=20)
    assert call.params["channel"] == "C1"
    assert call.params["thread_ts"] == "1700000000.000100"
    text = " ".join(b["text"]["text"] for b in call.params["blocks"] if b["type"] == "section")
    assert "Overfitting is" in text and "[1]" in text and "*Sources*" in text
    assert call.params.get("unfurl_links") in (False, "false", "0", 0)
    added = bot.api.calls_of("reactions.add")
    removed = bot.api.wait_for("reactions.remove")
    assert added and removed and added[0].at < call.at <= removed[0].at
