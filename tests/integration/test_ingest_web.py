"""URLs and feeds: pages and RSS/Atom feeds fetched from a real HTTP server on 127.0.0.1,
failures reported without stopping the ingest, and the address check on every hop."""

from __future__ import annotations

import time

import pytest

from ingest import Ingestor
from knowledge.kb import KnowledgeBase

ARTICLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Calibrating Churn Models | Team Blog</title>
<script>var trackingPixelSecret = "do-not-index-this-script";</script>
<style>.nav {{ color: red }}</style></head>
<body>
<nav class="menu"><a href="/">Home</a> <a href="/about">About us</a> <a href="/jobs">Careers</a></nav>
<article>
<h1>{title}</h1>
<p>{lead}</p>
<p>Reliability diagrams bin the predicted probabilities and compare each bin's mean
prediction with the observed frequency of the positive class in that bin.</p>
<p>Isotonic regression and Platt scaling are the two usual ways to recalibrate a model
after training; both are fitted on a held-out calibration split, never on the training data.</p>
<p>A well calibrated churn model lets the retention team rank customers by expected loss
instead of by a raw score that only orders them.</p>
</article>
<footer>Copyright 2024 Example Corp. All rights reserved.</footer>
</body></html>
"""


def article(title: str, lead: str) -> str:
    return ARTICLE.format(title=title, lead=lead)


CALIBRATION = article(
    "Calibrating churn models",
    "Probability calibration makes a classifier's scores mean what they say: of the customers "
    "given a churn probability of 0.3, about thirty percent should actually churn.")
DRIFT = article(
    "Watching for feature drift",
    "Feature drift is when the distribution of a model's inputs in production moves away "
    "from the distribution it was trained on, and the population stability index measures it.")
LABELS = article(
    "Cleaning noisy labels",
    "Noisy labels come from annotators who disagree; confident learning finds the examples "
    "whose given label the model consistently doubts, so they can be relabelled.")


def stored(kb: KnowledgeBase, doc_id: str):
    return kb.store.get_document(doc_id)


def slow(seconds: float, body: bytes = b"<html><body><p>late</p></body></html>"):
    def route():
        time.sleep(seconds)
        return 200, {"Content-Type": "text/html"}, body
    return route


# -- one article ------------------------------------------------------------------------
def test_html_article_is_stored_under_its_url_with_title_and_main_text(local_kb, http_server):
    http_server.add("/blog/calibration", CALIBRATION)
    url = http_server.url("/blog/calibration")

    report = Ingestor(kb=local_kb, progress=False).run([url])

    assert report.errors == []
    assert report.added == 1
    document = stored(local_kb, url)
    assert document is not None
    assert document.doc_id == url and document.url == url
    assert document.kind == "article"
    assert document.title == "Calibrating churn models"
    assert "Probability calibration makes a classifier's scores mean what they say" in document.text
    assert "Isotonic regression and Platt scaling" in document.text
    assert "trackingPixelSecret" not in document.text  # scripts are not text
    assert "Careers" not in document.text and "All rights reserved" not in document.text  # chrome
    hit = local_kb.search("How do I recalibrate predicted probabilities with Platt scaling?", k=3).hits[0]
    assert hit.doc_id == url and hit.url == url


def test_the_same_article_again_is_unchanged(local_kb, http_server):
    http_server.add("/blog/calibration", CALIBRATION)
    url = http_server.url("/blog/calibration")
    ingestor = Ingestor(kb=local_kb, progress=False)
    assert ingestor.run([url]).added == 1

    again = ingestor.run([url])

    assert (again.added, again.updated, again.unchanged, again.errors) == (0, 0, 1, [])


def test_redirected_article_keeps_the_url_it_was_asked_for(local_kb, http_server):
    http_server.add("/old", "", status=301, headers={"Location": "/blog/drift"})
    http_server.add("/blog/drift", DRIFT)
    url = http_server.url("/old")

    report = Ingestor(kb=local_kb, progress=False).run([url])

    assert report.errors == [] and report.added == 1
    assert stored(local_kb, url) is not None
    assert "population stability index" in stored(local_kb, url).text
    assert http_server.requests == ["/old", "/blog/drift"]


# -- feeds ------------------------------------------------------------------------------
def rss(base: str, items: list[str]) -> str:
    return (f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>ML reading list</title><link>{base}/</link><description>What we read</description>
""" + "\n".join(items) + "\n</channel></rss>")


def rss_item(title: str, link: str, *, content: str | None = None) -> str:
    extra = f"<content:encoded><![CDATA[{content}]]></content:encoded>" if content else ""
    return (f"<item><title>{title}</title><link>{link}</link>"
            f"<pubDate>Mon, 06 May 2024 10:00:00 GMT</pubDate>{extra}</item>")


FEED_COPY = ("<p>Shadow deployments run a candidate model next to the live one on real "
             "traffic, logging its predictions without acting on them, so the two can be "
             "compared before any user sees the new model.</p>")


@pytest.fixture
def articles(http_server):
    http_server.add("/posts/calibration", CALIBRATION)
    http_server.add("/posts/drift", DRIFT)
    http_server.add("/posts/labels", LABELS)
    return http_server


def test_rss_feed_ingests_every_linked_article(local_kb, articles):
    base = articles.base
    articles.add("/feed.xml", rss(base, [
        rss_item("Calibration", f"{base}/posts/calibration"),
        rss_item("Drift", f"{base}/posts/drift"),
        rss_item("Labels", "/posts/labels"),  # relative links resolve against the feed
    ]), content_type="application/rss+xml")

    report = Ingestor(kb=local_kb, progress=False).run([articles.url("/feed.xml")])

    assert report.errors == []
    assert report.added == 3
    for path, phrase in [("/posts/calibration", "Isotonic regression"),
                         ("/posts/drift", "population stability index"),
                         ("/posts/labels", "confident learning")]:
        document = stored(local_kb, articles.url(path))
        assert document is not None, path
        assert document.kind == "article"
        assert document.url == articles.url(path)
        assert phrase in document.text
        assert document.meta["feed"] == articles.url("/feed.xml")
    assert stored(local_kb, articles.url("/posts/drift")).title == "Drift"  # the entry's title
    assert stored(local_kb, articles.url("/feed.xml")) is None  # the feed is not a document


def test_feed_entry_whose_link_is_gone_uses_the_feeds_copy_or_is_reported(local_kb, articles):
    base = articles.base
    articles.add("/feed.xml", rss(base, [
        rss_item("Shadow deployments", f"{base}/posts/shadow", content=FEED_COPY),  # 404, has copy
        rss_item("Lost post", f"{base}/posts/lost"),  # 404, nothing to fall back on
        rss_item("Drift", f"{base}/posts/drift"),
    ]), content_type="text/xml")  # sniffed as a feed from its body

    report = Ingestor(kb=local_kb, progress=False).run([articles.url("/feed.xml")])

    assert report.added == 2
    assert len(report.errors) == 1
    assert articles.url("/posts/lost") in report.errors[0]
    assert "404" in report.errors[0]
    shadow = stored(local_kb, articles.url("/posts/shadow"))
    assert shadow is not None
    assert shadow.title == "Shadow deployments"
    assert "Shadow deployments run a candidate model next to the live one" in shadow.text
    assert stored(local_kb, articles.url("/posts/lost")) is None
    assert stored(local_kb, articles.url("/posts/drift")) is not None
    hit = local_kb.search("How can we compare a new model on live traffic before launch?", k=3).hits[0]
    assert hit.doc_id == articles.url("/posts/shadow")


def atom(base: str, entries: list[str]) -> str:
    return (f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>Atom reading list</title><id>urn:uuid:60a76c80-d399-11d9-b91C-0003939e0af6</id>
<updated>2024-05-06T10:00:00Z</updated><link href="{base}/"/>
""" + "\n".join(entries) + "\n</feed>")


def atom_entry(title: str, link: str, *, content: str | None = None) -> str:
    body = f'<content type="html"><![CDATA[{content}]]></content>' if content else ""
    return (f"<entry><title>{title}</title><link href=\"{link}\"/><id>{link}</id>"
            f"<updated>2024-05-06T10:00:00Z</updated>{body}</entry>")


def test_atom_feed_ingests_articles_and_falls_back_to_entry_content(local_kb, articles):
    base = articles.base
    articles.add("/atom", atom(base, [
        atom_entry("Calibration", f"{base}/posts/calibration"),
        atom_entry("Shadow deployments", f"{base}/posts/shadow", content=FEED_COPY),
        atom_entry("Lost post", f"{base}/posts/lost"),
        atom_entry("Labels", f"{base}/posts/labels"),
    ]), content_type="application/atom+xml")

    report = Ingestor(kb=local_kb, progress=False).run([articles.url("/atom")])

    assert report.added == 3
    assert len(report.errors) == 1 and articles.url("/posts/lost") in report.errors[0]
    assert "Isotonic regression" in stored(local_kb, articles.url("/posts/calibration")).text
    assert "confident learning" in stored(local_kb, articles.url("/posts/labels")).text
    shadow = stored(local_kb, articles.url("/posts/shadow"))
    assert "logging its predictions without acting on them" in shadow.text
    assert shadow.meta.get("published")


# -- failures are reported and the rest continue -------------------------------------------
def test_404_and_500_are_reported_with_their_urls_and_the_rest_is_ingested(local_kb, http_server):
    http_server.add("/posts/calibration", CALIBRATION)
    http_server.add("/posts/drift", DRIFT)
    http_server.add("/broken", "internal error", status=500, content_type="text/plain")
    missing, broken = http_server.url("/missing"), http_server.url("/broken")

    report = Ingestor(kb=local_kb, progress=False).run([
        http_server.url("/posts/calibration"), missing, broken, http_server.url("/posts/drift")])

    assert report.added == 2
    assert len(report.errors) == 2
    assert missing in report.errors[0] and "404" in report.errors[0]
    assert broken in report.errors[1] and "500" in report.errors[1]
    assert stored(local_kb, missing) is None and stored(local_kb, broken) is None


def test_a_page_that_starts_failing_keeps_what_was_stored(local_kb, http_server):
    http_server.add("/posts/calibration", CALIBRATION)
    url = http_server.url("/posts/calibration")
    ingestor = Ingestor(kb=local_kb, progress=False)
    assert ingestor.run([url]).added == 1

    http_server.add("/posts/calibration", "oops", status=500, content_type="text/plain")
    report = ingestor.run([url])

    assert report.added == report.updated == report.removed == 0
    assert len(report.errors) == 1 and url in report.errors[0]
    assert "Isotonic regression" in stored(local_kb, url).text
    assert local_kb.search("Platt scaling calibration split", k=1).hits[0].doc_id == url


@pytest.fixture
def strict_kb(settings, embedder):
    """Allowed to reach 127.0.0.1, but with a short time-out and a small size limit."""
    knowledge = KnowledgeBase(settings=settings.replace(allow_private_urls=True, fetch_timeout=0.5,
                                               max_fetch_bytes=50_000), embedder=embedder)
    yield knowledge
    knowledge.close()


def test_a_url_that_times_out_is_reported_and_the_rest_continue(strict_kb, http_server):
    http_server.routes["/slow"] = slow(2.0)
    http_server.add("/posts/drift", DRIFT)
    url = http_server.url("/slow")

    started = time.perf_counter()
    report = Ingestor(kb=strict_kb, progress=False).run([url, http_server.url("/posts/drift")])
    elapsed = time.perf_counter() - started

    assert report.added == 1
    assert len(report.errors) == 1
    assert url in report.errors[0] and "timed out" in report.errors[0]
    assert stored(strict_kb, url) is None
    assert elapsed < 10


def test_a_body_larger_than_the_limit_is_refused_and_the_rest_continue(strict_kb, http_server):
    big = "<html><body>" + "<p>" + "too much text here. " * 5_000 + "</p></body></html>"
    http_server.add("/huge", big)
    http_server.add("/posts/labels", LABELS)
    url = http_server.url("/huge")

    report = Ingestor(kb=strict_kb, progress=False).run([url, http_server.url("/posts/labels")])

    assert report.added == 1
    assert len(report.errors) == 1
    assert url in report.errors[0] and "larger than 50000 bytes" in report.errors[0]
    assert stored(strict_kb, url) is None


# -- URL safety with the default settings ------------------------------------------------


def test_default_ingest_refuses_the_local_server_without_contacting_it(settings, embedder,
                                                                      http_server):
    http_server.add("/posts/calibration", CALIBRATION)
    knowledge = KnowledgeBase(settings=settings, embedder=embedder)  # the default settings
    try:
        url = http_server.url("/posts/calibration")
        report = Ingestor(kb=knowledge, progress=False).run(
            [url, "file:///etc/passwd", "gopher://example.com/1",
             "http://169.254.169.254/latest/meta-data"])
        assert report.added == 0
        assert len(report.errors) == 4
        assert url in report.errors[0] and "internal address" in report.errors[0]
        assert "file:///etc/passwd" in report.errors[1] and "scheme" in report.errors[1]
        assert "gopher" in report.errors[2]
        assert "169.254.169.254" in report.errors[3]
        assert knowledge.store.stats().documents == 0
    finally:
        knowledge.close()
    assert http_server.requests == []


# -- redirects: every hop is checked ------------------------------------------------------


# -- malformed URLs are reported, never a crash of the whole ingest --------------------------
MALFORMED = [
    "http://" + "a" * 300 + ".example/",  # a label longer than DNS allows
    "http://a..b/",  # an empty label
    "http://127.0.0.1:abc/",
    "http://[::1",
    "http://127.0.0.1\x00:80/",
]


@pytest.mark.parametrize("url", MALFORMED, ids=["long-label", "empty-label", "bad-port",
                                                "open-bracket", "nul"])
def test_malformed_urls_are_reported_and_the_rest_continue(local_kb, http_server, url):
    http_server.add("/posts/labels", LABELS)

    report = Ingestor(kb=local_kb, progress=False).run([url, http_server.url("/posts/labels")])

    assert report.added == 1
    assert len(report.errors) == 1


@pytest.mark.parametrize("location", ["http://[broken", "http://127.0.0.1:abc/",
                                      "http://" + "a" * 300 + ".example/"],
                         ids=["open-bracket", "bad-port", "long-label"])
def test_a_redirect_to_a_malformed_location_is_reported(local_kb, http_server, location):
    http_server.add("/moved", "", status=302, headers={"Location": location})
    http_server.add("/posts/labels", LABELS)
    moved = http_server.url("/moved")

    report = Ingestor(kb=local_kb, progress=False).run([moved, http_server.url("/posts/labels")])

    assert report.added == 1
    assert len(report.errors) == 1 and moved in report.errors[0]
