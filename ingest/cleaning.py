"""Faithful text at ingest: math kept as readable Unicode, and what should never be quoted
as an answer (figure captions and image credits, reference lists and "Cited as" blocks,
tables of contents, update notes, footnote markers, lines that are only links) left out.

Markdown goes through markdown-it with the dollar-math and bracket-math plugins, so math
is a token of its own (never mistaken for emphasis, never taken out of a code span); HTML
math (MathJax scripts, KaTeX, MathML) is replaced by its TeX source before extraction.
LaTeX becomes text through pylatexenc; what it cannot convert stays verbatim in backticks.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from .chunking import Section

__all__ = [
    "latex_to_text", "is_caption", "is_update_note", "is_reference_heading", "is_citation_lead",
    "strip_footnote_markers", "clean_html_markup", "SectionWriter",
]

log = logging.getLogger(__name__)

# Headings whose whole section is a list of works, not prose to answer from.
_REFERENCE_HEADING = re.compile(
    r"^\s*(?:\d+[.)]?\s*)?(references?|bibliography|citations?|cited as|works cited|"
    r"further reading|footnotes|notes and references|sources)\s*:?\s*$", re.I)
# "Fig. 3. …", "Figure 2: …", "Table 1 …", "(Image source: …)", "Image credit: …"
_CAPTION = re.compile(
    r"^\s*[*_(\[]*\s*(?:(?:fig(?:ure)?|table|image|photo|diagram)\.?\s*\d+[a-z]?\b|"
    r"(?:image|photo|figure|picture)\s+(?:source|credit|courtesy|from)s?\b|source\s*:)", re.I)
_UPDATE_NOTE = re.compile(r"^\s*[\[(]?\s*(?:\*\*)?updated?\s+(?:on|at|in)?\b", re.I)
_CITATION_LEAD = re.compile(r"^\s*(?:cited as|citation|please cite(?: this)?(?: as)?|to cite)\b.{0,40}:?\s*$",
                            re.I)
# [^1], [1], [12] (not "[1, 2]"-style lists in math, which are converted before this runs)
_FOOTNOTE_MARK = re.compile(r"\[\^?[0-9]{1,3}\]|\[\^[\w-]+\]")
_MULTI_ARG = re.compile(r"([_^])\{([^{}]{2,40})\}")


def is_reference_heading(heading: str | None) -> bool:
    return heading is not None and bool(_REFERENCE_HEADING.match(heading))


def is_caption(text: str) -> bool:
    return bool(_CAPTION.match(text))


def is_update_note(text: str) -> bool:
    return bool(_UPDATE_NOTE.match(text))


def is_citation_lead(text: str) -> bool:
    return bool(_CITATION_LEAD.match(text))


def strip_footnote_markers(text: str) -> str:
    return _FOOTNOTE_MARK.sub("", text)


@lru_cache(maxsize=1)
def _converter():
    from pylatexenc.latex2text import LatexNodes2Text

    return LatexNodes2Text(math_mode="text", strict_latex_spaces=False)


_LEFTOVER = re.compile(r"\\[A-Za-z]+")
_MACRO = re.compile(r"\\([A-Za-z]+)")
_SPACES = re.compile(r"\s+")
# Sizing, styling and layout macros pylatexenc has no text for but whose dropping loses
# nothing a reader needs ("\Big(", "\boldsymbol{x}", "\begin{aligned}").
_HARMLESS = frozenset(
    "begin end big Big bigg Bigg bigl bigr Bigl Bigr left right boldsymbol bm color "
    "scriptstyle displaystyle textstyle small tiny large dfrac tfrac arg det Pr mod bmod "
    "pmod operatorname texttt textrm textit textbf mathrm mathit gets substack xrightarrow "
    "xleftarrow overset underset stackrel lbrack rbrack gt lt iff land lor Re Im "
    "nonumber notag label tag limits nolimits".split())


@lru_cache(maxsize=1)
def _known_macros():
    from pylatexenc.latex2text import get_default_latex_context_db

    return get_default_latex_context_db()


def _convertible(source: str) -> bool:
    db = _known_macros()
    return all(name in _HARMLESS or db.get_macro_spec(name) is not None
               for name in _MACRO.findall(source))


@lru_cache(maxsize=4096)
def latex_to_text(latex: str) -> str:
    """TeX math as readable Unicode (``\\theta_t`` → ``θ_t``), or verbatim in backticks.

    A subscript or superscript of several characters keeps its grouping in parentheses
    (``\\sum_{t=1}^T`` → ``∑_(t=1)^T``), which plain conversion would lose.
    """
    source = latex.strip()
    if not source:
        return ""
    grouped = source
    for _ in range(3):  # nested groups, innermost first
        grouped = _MULTI_ARG.sub(lambda m: f"{m.group(1)}({m.group(2)})", grouped)
    if not _convertible(source):
        return _verbatim(source)
    try:
        text = _converter().latex_to_text(grouped)
    except Exception as exc:  # pylatexenc raises several kinds on malformed TeX
        log.debug("math left verbatim (%s: %s)", type(exc).__name__, exc)
        text = ""
    text = _SPACES.sub(" ", text).strip()
    if not text or _LEFTOVER.search(text):
        return _verbatim(source)
    return text


def _verbatim(source: str) -> str:
    return "`" + _SPACES.sub(" ", source).replace("`", "'") + "`"


# -- HTML -----------------------------------------------------------------------------
_HTML_REFERENCE_ID = re.compile(r"(^|[-_\s])(references?|bibliography|footnotes?|citations?)($|[-_\s])",
                                re.I)


def clean_html_markup(markup: str) -> str:
    """HTML with its math as text and its captions, footnote marks and reference lists gone.

    Runs before the main-text extractor: MathJax ``<script type="math/tex">``, KaTeX
    (its ``application/x-tex`` annotation) and MathML (``alttext``) become converted text.
    Returns the markup unchanged when it cannot be parsed (the extractor has fallbacks).
    """
    if not markup.strip():
        return markup
    try:
        import lxml.html

        tree = lxml.html.document_fromstring(markup)
    except Exception:  # lxml refuses some markup; the extractor still gets a chance
        return markup
    _replace_math(tree)
    _drop_captions_and_notes(tree)
    _drop_reference_sections(tree)
    return lxml.html.tostring(tree, encoding="unicode")


def _text_node(element, text: str) -> None:
    """Replace an element by plain text, keeping the text that followed it."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail or ""
    replacement = text + tail
    previous = element.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + replacement
    else:
        parent.text = (parent.text or "") + replacement
    parent.remove(element)


def _replace_math(tree) -> None:
    for script in tree.xpath('//script[starts-with(@type, "math/tex")]'):
        display = "mode=display" in (script.get("type") or "")
        text = latex_to_text(script.text or "")
        _text_node(script, text if not display else f"\n{text}\n")
    # MathJax 2 leaves rendered copies beside the script: drop them, the script was the source.
    for rendered in tree.xpath('//*[contains(concat(" ", normalize-space(@class), " "), " MathJax ")'
                               ' or contains(@class, "MathJax_Preview")'
                               ' or contains(@class, "MJX_Assistive_MathML")]'):
        if rendered.getparent() is not None:
            _text_node(rendered, "")
    for katex in tree.xpath('//*[contains(concat(" ", normalize-space(@class), " "), " katex ")]'):
        tex = katex.xpath('.//annotation[@encoding="application/x-tex"]/text()')
        if katex.getparent() is not None:
            _text_node(katex, latex_to_text(tex[0]) if tex else "")
    for math in tree.xpath("//math"):
        tex = math.xpath('.//annotation[@encoding="application/x-tex"]/text()')
        alt = math.get("alttext")
        text = latex_to_text(tex[0] if tex else alt) if (tex or alt) else " ".join(math.itertext())
        if math.getparent() is not None:
            _text_node(math, text)


def _drop(element) -> None:
    if element.getparent() is not None:
        element.drop_tree()


def _drop_captions_and_notes(tree) -> None:
    for element in tree.xpath("//figcaption|//sup[a]|//a[contains(@class, 'footnote')]"
                              "|//*[@role='doc-noteref']|//*[@role='doc-backlink']"):
        _drop(element)
    for block in tree.xpath("//p|//div[not(*)]|//span[not(*)]"):
        text = " ".join(block.itertext()).strip()
        if text and (is_caption(text) or is_update_note(text)):
            _drop(block)


def _drop_reference_sections(tree) -> None:
    for element in tree.xpath("//*[@id or @class or @role]"):
        names = " ".join(filter(None, (element.get("id"), element.get("class"), element.get("role"))))
        if element.tag not in ("html", "body", "main", "article") and (
                _HTML_REFERENCE_ID.search(names) or "doc-bibliography" in names
                or "doc-endnotes" in names):
            _drop(element)
    for heading in tree.xpath("//h1|//h2|//h3|//h4|//h5|//h6"):
        if heading.getparent() is None or not is_reference_heading(" ".join(heading.itertext())):
            continue
        level = int(heading.tag[1])
        sibling = heading.getnext()
        while sibling is not None:
            if sibling.tag in {f"h{n}" for n in range(1, level + 1)}:
                break
            following = sibling.getnext()
            sibling.drop_tree()
            sibling = following
        heading.drop_tree()


_SPACE_BEFORE_STOP = re.compile(r"\s+([.,;:!?])(?=\s|$)")  # "a link ." once its markup is gone


class SectionWriter:
    """What a converter of a vendor's page format (Confluence storage, Notion blocks) writes
    into: sections by heading, paragraphs without captions or update notes, code verbatim,
    and nothing under a References heading until a heading of its level or above."""

    strip_footnotes = False  # "[1]" markers (Confluence's footnote macros leave them)

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.heading: str | None = None
        self.parts: list[str] = []
        self.skip_level = 0  # inside a References section of this heading level

    def close_section(self) -> None:
        text = "\n\n".join(p for p in self.parts if p.strip())
        if text.strip():
            self.sections.append(Section(self.heading, text))
        self.parts = []

    def emit(self, text: str, prefix: str = "") -> None:
        if self.strip_footnotes:
            text = strip_footnote_markers(text)
        text = _SPACE_BEFORE_STOP.sub(r"\1", " ".join(text.split()))
        if text and not self.skip_level and not (is_caption(text) or is_update_note(text)):
            self.parts.append(prefix + text)

    def emit_verbatim(self, text: str) -> None:
        text = text.strip("\n")
        if text.strip() and not self.skip_level:
            self.parts.append(text)

    def start_section(self, heading: str, level: int) -> None:
        """A heading of this level: the section before it ends; a References heading skips
        what follows, up to the next heading of its level or above."""
        self.close_section()
        if self.skip_level and level <= self.skip_level:
            self.skip_level = 0
        if is_reference_heading(heading):
            self.skip_level = self.skip_level or level
        self.heading = heading or self.heading
