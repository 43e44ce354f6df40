"""Confluence's storage format (the XHTML a page is kept in, with its ``ac:`` macros and
``ri:`` resources) as sections of clean text: one per heading, paragraphs kept apart, list
items as "- item", table rows as "a | b.", code blocks as they are, math as readable
Unicode (``latex_to_text``, as for Markdown and web pages), panels' text kept; tables of
contents, Jira boxes, images and other macros that hold no prose are left out, and so are
captions, update notes and reference sections (the same rules as every other loader).

Storage format is not well-formed XML on its own (the ``ac:``/``ri:`` prefixes are never
declared), so it is read with lxml's forgiving HTML parser; CDATA (code and math bodies) is
escaped into text first, since that parser drops it.
"""

from __future__ import annotations

import html
import re

from knowledge.errors import SourceError
from knowledge.search import normalise_whitespace

from ..chunking import Section
from ..cleaning import (
    SectionWriter,
    latex_to_text,
)

__all__ = ["storage_sections"]

_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)
_HEADINGS = {f"h{n}" for n in range(1, 7)}
_BLOCKS = {"p", "div", "blockquote", "section", "article", "center"}
# Macros whose text is code (kept verbatim), whose body is prose (read through), or that
# hold nothing to quote (left out). Any other macro: its rich-text body if it has one.
_CODE_MACROS = {"code", "noformat", "codeblock", "code-block"}
_SKIPPED_MACROS = {"toc", "toc-zone", "jira", "jiraissues", "children", "pagetree", "attachments",
                   "recently-updated", "contentbylabel", "livesearch", "gallery", "viewfile",
                   "view-file", "profile", "roadmap", "status", "anchor", "include", "excerpt-include",
                   "drawio", "gliffy", "widget", "iframe", "html", "space-attachments", "create-from-template"}
# The new editor's panels and decisions come as ADF nodes with an HTML copy of themselves
# (``ac:adf-fallback``) for old readers: the node is read, its copy is not.
_SKIPPED_TAGS = {"ac:image", "ac:emoticon", "ac:placeholder", "ac:inline-comment-marker-ref",
                 "script", "style", "img", "ri:attachment", "ri:url", "time", "ac:adf-fallback",
                 "ac:adf-attribute"}


def _is_math(name: str) -> bool:
    return "math" in name or "latex" in name or name in {"equation", "formula"}


def storage_sections(storage: object, where: str) -> list[Section]:
    """The text of a page in storage format, one section per heading; ``SourceError`` when
    it cannot be read at all. An empty page gives no sections (not an error)."""
    if not isinstance(storage, str):
        raise SourceError(where, f"has no storage-format body (got {type(storage).__name__})")
    if not storage.strip():
        return []
    try:
        import lxml.etree
        import lxml.html

        escaped = _CDATA.sub(lambda m: html.escape(m.group(1), quote=False), storage)
        root = lxml.html.fragment_fromstring(escaped, create_parent="div")
    except (ValueError, lxml.etree.ParserError) as exc:
        raise SourceError(where, f"has a storage-format body that cannot be read ({exc})") from None
    writer = _Writer()
    writer.block(root)
    writer.close_section()
    return writer.sections


class _Writer(SectionWriter):
    strip_footnotes = True

    # -- blocks -------------------------------------------------------------------------
    def block(self, element) -> None:
        """Read the children of ``element`` as blocks; loose inline text becomes a paragraph."""
        inline: list[str] = [element.text or ""]
        for child in element:
            tag = _tag(child)
            if tag is None or tag in _SKIPPED_TAGS:
                inline.append(child.tail or "")
                continue
            if self._is_block(child, tag):
                self.emit(" ".join(inline))
                inline = []
                self.block_element(child, tag)
            else:
                inline.append(self.inline_child(child))
            inline.append(child.tail or "")
        self.emit(" ".join(inline))

    def _is_block(self, element, tag: str) -> bool:
        if tag in _HEADINGS or tag in _BLOCKS or tag in {"ul", "ol", "table", "pre", "hr",
                                                          "ac:task-list", "ac:layout",
                                                          "ac:layout-section", "ac:layout-cell",
                                                          "ac:rich-text-body", "ac:adf-extension",
                                                          "ac:adf-node", "ac:adf-content"}:
            return True
        if tag == "ac:structured-macro":
            name = _macro_name(element)
            return not (_is_math(name) and "inline" in name) and name not in {"status", "anchor"}
        return False

    def block_element(self, element, tag: str) -> None:
        if tag in _HEADINGS:
            self.heading_(element, int(tag[1]))
        elif tag in ("ul", "ol"):
            self.list_(element, ordered=tag == "ol")
        elif tag == "table":
            self.table(element)
        elif tag == "pre":
            self.emit_verbatim(element.text_content())
        elif tag == "ac:task-list":
            for task in element.iter("ac:task"):
                body = next(task.iter("ac:task-body"), None)
                if body is not None:
                    self.emit(self.inline(body), prefix="- ")
        elif tag == "ac:structured-macro":
            self.macro(element)
        elif tag != "hr":
            self.block(element)

    def heading_(self, element, level: int) -> None:
        self.start_section(normalise_whitespace(self.inline(element)), level)

    def list_(self, element, *, ordered: bool) -> None:
        number = 0
        for item in element:
            if _tag(item) != "li":
                continue
            number += 1
            nested = [c for c in item if _tag(c) in ("ul", "ol")]
            for child in nested:  # read after the item's own text
                item.remove(child)
            self.emit(self.inline(item), prefix=f"{number}. " if ordered else "- ")
            for child in nested:
                self.list_(child, ordered=_tag(child) == "ol")

    def table(self, element) -> None:
        for row in element.iter("tr"):
            cells = [normalise_whitespace(self.inline(cell)) for cell in row if _tag(cell) in ("td", "th")]
            cells = [c for c in cells if c]
            if cells:
                self.emit(" | ".join(cells) + ".")

    def macro(self, element) -> None:
        name = _macro_name(element)
        if name in _SKIPPED_MACROS:
            return
        if name in _CODE_MACROS:
            body = _child(element, "ac:plain-text-body")
            if body is not None:
                self.emit_verbatim(body.text_content())
            return
        if _is_math(name):
            math = latex_to_text(_math_source(element))
            if math:
                self.emit(math)
            return
        body = _child(element, "ac:rich-text-body")
        if body is not None:
            title = _parameter(element, "title")
            if title:
                self.emit(title)
            self.block(body)
            return
        plain = _child(element, "ac:plain-text-body")
        if plain is not None:
            self.emit(plain.text_content())

    # -- inline -------------------------------------------------------------------------
    def inline(self, element) -> str:
        """The text inside an inline element (or a cell, a list item): links by their
        label, inline math converted, images and emoticons left out."""
        return "".join([element.text or "", *(self.inline_child(c) + (c.tail or "") for c in element)])

    def inline_child(self, child) -> str:
        tag = _tag(child)
        if tag is None or tag in _SKIPPED_TAGS or tag in {"ac:parameter", "ri:page"}:
            return ""
        if tag == "ri:user":
            return " "
        if tag == "ac:link":
            return _link_text(child)
        if tag == "ac:structured-macro":
            name = _macro_name(child)
            if _is_math(name):
                return " " + latex_to_text(_math_source(child)) + " "
            body = _child(child, "ac:plain-text-body")
            if name in _CODE_MACROS:
                return body.text_content() if body is not None else ""
            rich = _child(child, "ac:rich-text-body")
            return self.inline(rich) if rich is not None and name not in _SKIPPED_MACROS else ""
        if tag in ("br", "p", "li", "tr", "td", "th", "div", "ul", "ol", "table"):
            return " " + self.inline(child) + " "
        return self.inline(child)


def _tag(element) -> str | None:
    tag = element.tag
    return tag.lower() if isinstance(tag, str) else None  # comments, processing instructions


def _macro_name(element) -> str:
    return (element.get("ac:name") or "").strip().lower()


def _child(element, tag: str):
    return next((c for c in element if _tag(c) == tag), None)


def _parameter(element, name: str) -> str | None:
    for child in element:
        if _tag(child) == "ac:parameter" and (child.get("ac:name") or "").lower() == name:
            return child.text_content().strip() or None
    return None


def _math_source(element) -> str:
    """A math macro's LaTeX: its ``body`` parameter (inline macros) or its plain-text body."""
    plain = _child(element, "ac:plain-text-body")
    source = _parameter(element, "body") or _parameter(element, "equation") or (
        plain.text_content() if plain is not None else "")
    return source.strip()


def _link_text(link) -> str:
    """A link's label, else the title of the page it points at, else nothing."""
    for tag in ("ac:plain-text-link-body", "ac:link-body"):
        body = _child(link, tag)
        if body is not None and body.text_content().strip():
            return body.text_content()
    page = _child(link, "ri:page")
    return (page.get("ri:content-title") or "") if page is not None else ""
