"""Confluence's storage format as clean text: structure kept (headings, lists, tables, code,
math, panels), what holds no prose left out, malformed markup read as far as it goes."""

from __future__ import annotations

import pytest

from ingest.connectors.confluence_storage import storage_sections
from knowledge.errors import SourceError

PAGE = """<p>Intro with <strong>bold</strong> and a link to
<ac:link><ri:page ri:content-title="Feature store"/></ac:link>.</p>
<ac:structured-macro ac:name="toc"/>
<h2>Setup</h2><ul><li>first <em>item</em><ul><li>nested</li></ul></li><li>second</li></ul>
<ol><li>one</li><li>two</li></ol>
<table><tbody><tr><th>Model</th><th>AUC</th></tr><tr><td><p>ranker</p></td><td>0.91</td></tr></tbody></table>
<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">python</ac:parameter>
<ac:plain-text-body><![CDATA[for x in range(3):
    print(x < 2 and "<b>")]]></ac:plain-text-body></ac:structured-macro>
<h2>Math</h2><p>The loss is <ac:structured-macro ac:name="mathinline"><ac:parameter ac:name="body">\\alpha^2 + \\beta</ac:parameter></ac:structured-macro> here.</p>
<ac:structured-macro ac:name="mathblock"><ac:plain-text-body><![CDATA[\\sum_{i=1}^{n} x_i]]></ac:plain-text-body></ac:structured-macro>
<ac:structured-macro ac:name="info"><ac:parameter ac:name="title">Heads up</ac:parameter>
<ac:rich-text-body><p>Panels keep their text.</p></ac:rich-text-body></ac:structured-macro>
<p><ac:image><ri:attachment ri:filename="chart.png"/></ac:image></p>
<p>Figure 2: the chart nobody can quote.</p>
<ac:structured-macro ac:name="jira"><ac:parameter ac:name="key">ML-12</ac:parameter></ac:structured-macro>
<ac:task-list><ac:task><ac:task-id>1</ac:task-id><ac:task-status>incomplete</ac:task-status>
<ac:task-body>write the tests</ac:task-body></ac:task></ac:task-list>
<h2>References</h2><p>[1] Someone, 2020.</p><h2>After</h2><p>Kept again.</p>"""


def sections() -> dict[str | None, str]:
    return {s.heading: s.text for s in storage_sections(PAGE, "page 1")}


def test_headings_become_sections_and_prose_keeps_its_shape():
    found = sections()
    assert list(found) == [None, "Setup", "Math", "After"]  # References left out
    assert found[None].startswith("Intro with bold and a link to Feature store")
    setup = found["Setup"].split("\n\n")
    assert setup[:5] == ["- first item", "- nested", "- second", "1. one", "2. two"]
    assert "Model | AUC." in setup and "ranker | 0.91." in setup
    assert 'for x in range(3):\n    print(x < 2 and "<b>")' in found["Setup"]  # code verbatim


def test_math_is_readable_and_panels_keep_their_text():
    math = sections()["Math"]
    assert "The loss is α^2 + β here." in math
    assert "∑_(i=1)^n x_i" in math
    assert "Heads up\n\nPanels keep their text." in math
    assert "- write the tests" in math


def test_macros_without_prose_images_and_captions_are_left_out():
    text = "\n".join(sections().values())
    assert "ML-12" not in text and "chart" not in text and "Figure 2" not in text
    assert "python" not in text  # the code macro's parameter
    assert "Someone, 2020" not in text


@pytest.mark.parametrize("body", [
    "<p>Half a <b>table <table><tr><td>cell",
    "<p>unclosed <ac:structured-macro ac:name='code'><ac:plain-text-body><![CDATA[x = 1",
    "</p></div><p>stray closers</b>",
    "<ac:structured-macro ac:name=\"info\"><ac:rich-text-body><p>deep" + "<div>" * 3000,
])
def test_malformed_markup_is_read_as_far_as_it_goes(body):
    text = " ".join(s.text for s in storage_sections(body, "page 1"))
    assert text.strip()


def test_an_empty_page_has_no_sections_and_a_body_that_is_not_text_is_an_error():
    assert storage_sections("", "page 1") == [] and storage_sections("<p> </p>", "page 1") == []
    with pytest.raises(SourceError, match="page 1: has no storage-format body"):
        storage_sections({"value": "<p>x</p>"}, "page 1")  # type: ignore[arg-type]


def test_the_new_editors_panels_are_read_once():
    body = ('<ac:adf-extension><ac:adf-node type="panel"><ac:adf-attribute key="panel-type">note'
            '</ac:adf-attribute><ac:adf-content><p>Retrain weekly.</p></ac:adf-content></ac:adf-node>'
            '<ac:adf-fallback><div class="panel"><p>Retrain weekly.</p></div></ac:adf-fallback>'
            '</ac:adf-extension><p>After the panel.</p>')
    [section] = storage_sections(body, "page 1")
    assert section.text == "Retrain weekly.\n\nAfter the panel."
