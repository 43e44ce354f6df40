"""Turn files and bytes into ``SourceDocument``s: Markdown (front matter), text, HTML, PDF, JSONL.

Every failure is a ``SourceError`` naming the file (and line, for JSONL).
"""

from __future__ import annotations

import html as html_lib
import io
import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from knowledge.errors import SourceError
from knowledge.search import normalise_whitespace

from .chunking import Section
from .cleaning import (
    clean_html_markup,
    is_caption,
    is_citation_lead,
    is_reference_heading,
    is_update_note,
    latex_to_text,
    strip_footnote_markers,
)
from .documents import SourceDocument
from .front_matter import plain, read_front_matter

__all__ = [
    "SUPPORTED_SUFFIXES", "PARSERS", "load_file", "load_bytes", "open_source", "decode_text", "parse_markdown",
    "parse_html", "parse_pdf", "parse_text", "iter_jsonl",
]

log = logging.getLogger(__name__)
MARKDOWN = {".md", ".markdown", ".mdx"}
TEXT = {".txt", ".text", ".rst"}
HTML = {".html", ".htm", ".xhtml"}
PDF = {".pdf"}
JSONL = {".jsonl", ".ndjson"}
SUPPORTED_SUFFIXES = MARKDOWN | TEXT | HTML | PDF | JSONL
MAX_FILE_BYTES = 50_000_000


def decode_text(data: bytes, where: str) -> str:
    """Bytes to text: UTF-8 first, then a detected encoding; binary data is refused."""
    if not data.strip():
        raise SourceError(where, "is empty")
    # UTF-16 (Windows "Unicode" text) is full of NUL bytes: recognise it by its BOM first.
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:8192]:
        raise SourceError(where, "looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Detectors guess badly on short Western text (Latin-1 "très" came back as cp1250
    # "trčs", "Café" as UTF-16): mostly-ASCII text that is valid Windows-1252 is that.
    try:
        western = data.decode("cp1252")
    except UnicodeDecodeError:
        western = None
    if western is not None:
        sample = western[:1_000_000]
        letters = sum(c.isalpha() for c in sample)
        if sum(c.isalpha() and c.isascii() for c in sample) >= 0.7 * letters:
            return western
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise SourceError(where, "is not readable text in any encoding we recognise")
    return str(best)


# -- Markdown -------------------------------------------------------------------------
_LIQUID = re.compile(r"{%-?.*?-?%}|{{.*?}}", re.S)
_TAG = re.compile(r"<[^>]+>")


def _strip_html(fragment: str) -> str:
    return html_lib.unescape(_TAG.sub(" ", fragment))


_IAL = re.compile(r"\{:[^}]*\}")  # kramdown attribute lists: {: class="center"}, {:toc}
_MATH_INLINE = ("math_inline", "math_inline_double")


def _inline_text(token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in _MATH_INLINE:
            parts.append(latex_to_text(child.content))
        elif child.type in ("softbreak", "hardbreak", "html_inline"):
            parts.append(" ")
    joined = "".join(parts)
    joined = _strip_html(joined) if "<" in joined else joined
    return normalise_whitespace(strip_footnote_markers(_IAL.sub(" ", joined)))


def _only_links(token) -> bool:
    """A paragraph that is nothing but links or images ("[code](…)", a badge row)."""
    depth = 0
    linked = False
    for child in token.children or []:
        if child.type == "link_open":
            depth += 1
            linked = True
        elif child.type == "link_close":
            depth -= 1
        elif child.type == "image":
            linked = True
        elif depth == 0 and child.type == "text" and child.content.strip(" \t|,;:.-–·•*_()[]"):
            return False
    return linked


def _quotable(token, text: str) -> bool:
    """Is a paragraph prose worth keeping (not a caption, an update note, a link row)?"""
    return not (is_caption(text) or is_update_note(text) or text == "TOC" or _only_links(token))


def _markdown_parser():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    from mdit_py_plugins.texmath import texmath_plugin

    # $…$ and $$…$$ (Jekyll/kramdown writes inline math as $$…$$ too), \(…\) and \[…\].
    return (MarkdownIt("commonmark").enable("table")
            .use(dollarmath_plugin, allow_space=True, allow_digits=False, double_inline=True)
            .use(texmath_plugin, delimiters="brackets"))


def _markdown_sections(body: str) -> tuple[str | None, list[Section]]:
    tokens = _markdown_parser().parse(_LIQUID.sub(" ", body))
    sections: list[Section] = []
    heading: str | None = None
    first_h1: str | None = None
    blocks: list[str] = []
    row: list[str] = []
    skip_level = 0  # inside a References / Bibliography section of this heading level
    skip_code = False  # the code block after "Cited as:" is a BibTeX entry

    def close_section() -> None:
        text = "\n\n".join(b for b in blocks if b.strip())
        if text.strip():
            sections.append(Section(heading, text))
        blocks.clear()

    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            text = _inline_text(tokens[i + 1]) if i + 1 < len(tokens) else ""
            level = int(token.tag[1])
            close_section()
            if skip_level and level <= skip_level:
                skip_level = 0
            if is_reference_heading(text) or is_citation_lead(text):
                skip_level = skip_level or level
            if token.tag == "h1" and first_h1 is None:
                first_h1 = text
            heading = text or heading
            i += 3
            continue
        if skip_level:
            i += 1
            continue
        if token.type == "inline":
            text = _inline_text(token)
            if text and is_citation_lead(text):
                skip_code = True
            elif text and row is not None and tokens[i - 1].type in ("th_open", "td_open"):
                row.append(text)
            elif text and _quotable(token, text):
                prefix = "- " if i >= 2 and tokens[i - 2].type == "list_item_open" else ""
                blocks.append(prefix + text)
        elif token.type in ("fence", "code_block"):
            code = token.content.strip()
            if code and not skip_code:
                blocks.append(code)
            skip_code = False
        elif token.type in ("math_block", "math_block_eqno"):
            math = latex_to_text(token.content)
            if math:
                blocks.append(math)
        elif token.type == "html_block":
            text = normalise_whitespace(_strip_html(token.content))
            if text and not (is_caption(text) or is_update_note(text)):
                blocks.append(text)
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            if row:
                blocks.append(" | ".join(row) + ".")
            row = []
        i += 1
    close_section()
    return first_h1, sections


def parse_markdown(text: str, where: str, *, fallback_title: str) -> SourceDocument:
    meta, body = read_front_matter(text, where)
    h1, sections = _markdown_sections(body)
    if not sections:
        raise SourceError(where, "has no text")
    title = (text_field(meta.get("title"), "title", where) or h1 or fallback_title).strip()
    doc_id = id_field(meta["id"], where) if meta.get("id") is not None else None
    url = text_field(meta.get("url"), "url", where)
    kept = {k: v for k, v in plain(meta).items() if k not in ("title", "id", "url")}
    return SourceDocument(doc_id=doc_id or "", title=title, sections=sections, url=url or None,
                          metadata=kept, named_id=bool(doc_id))


def id_field(value: Any, where: str) -> str:
    """An "id" as text: a string or a whole number (``true`` and ``1.5`` are no ids)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SourceError(where, f'"id" must be a string or a whole number, not {_type_name(value)}')
    return str(value)


def text_field(value: Any, name: str, where: str) -> str | None:
    """A field that is text (a title, a kind, a URL): a string, or a number or date written
    as one; a list or an object is refused rather than stored as a Python repr."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise SourceError(where, f'"{name}" must be text, not {_type_name(value)}')


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true or false"
    return f"{value!r}" if isinstance(value, float) else type(value).__name__


# -- Plain text, HTML, PDF ------------------------------------------------------------
def parse_text(text: str, where: str, *, fallback_title: str) -> SourceDocument:
    stripped = text.strip()
    if not stripped:
        raise SourceError(where, "is empty")
    first_line = stripped.splitlines()[0].strip()
    title = first_line if 0 < len(first_line) <= 120 else fallback_title
    return SourceDocument(doc_id="", title=title, sections=[Section(None, stripped)])


def parse_html(markup: str, where: str, *, url: str | None = None,
               fallback_title: str) -> SourceDocument:
    """Main text and title of a web page (boilerplate, menus and ads removed)."""
    import trafilatura

    extracted = None
    markup = clean_html_markup(markup)
    try:
        extracted = trafilatura.bare_extraction(markup, url=url, with_metadata=True,
                                                include_comments=False, include_tables=True,
                                                favor_recall=True)
    except Exception:  # trafilatura gives up on some broken markup; fall back below
        extracted = None
    title = text = None
    if extracted is not None:
        data = extracted if isinstance(extracted, dict) else extracted.as_dict()
        title, text = data.get("title"), data.get("text")
    if not text or not text.strip():
        text, title = _html_fallback(markup, title)
    if not text or not text.strip():
        raise SourceError(where, "has no readable text (empty or malformed HTML)")
    paragraphs = [strip_footnote_markers(p).strip() for p in text.split("\n")]
    paragraphs = [p for p in paragraphs if p and not (is_caption(p) or is_update_note(p))]
    if not paragraphs:
        raise SourceError(where, "has no readable text (only captions or notes)")
    return SourceDocument(doc_id="", title=(title or fallback_title).strip(),
                          sections=[Section(None, "\n\n".join(paragraphs))])


def _html_fallback(markup: str, title: str | None) -> tuple[str, str | None]:
    try:
        import lxml.html

        tree = lxml.html.fromstring(markup)
        for bad in tree.xpath("//script|//style|//noscript"):
            bad.drop_tree()
        found = tree.findtext(".//title")
        return normalise_whitespace(tree.text_content()), title or (found.strip() if found else None)
    except Exception:
        return "", title


def parse_pdf(data: bytes, where: str, *, fallback_title: str) -> SourceDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "") for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or None
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise SourceError(where, f"is not a readable PDF ({exc})") from None
    except Exception as exc:  # pypdf raises many kinds on hostile files
        raise SourceError(where, f"is not a readable PDF ({type(exc).__name__}: {exc})") from None
    sections = []
    for number, page in enumerate(pages, start=1):
        # PDF text breaks lines mid-sentence; keep blank lines as paragraph breaks.
        text = re.sub(r"(?<!\n)\n(?!\n)", " ", page).strip()
        if text:
            sections.append(Section(f"Page {number}", text))
    if not sections:
        raise SourceError(where, "has no extractable text (scanned images or empty PDF)")
    title = str(info_title).strip() if info_title else fallback_title
    return SourceDocument(doc_id="", title=title, sections=sections)


# -- Files ----------------------------------------------------------------------------
def open_source(path: Path) -> BinaryIO:
    """Open a source file for reading. Only regular files: reading a FIFO or a device
    would block the ingest forever."""
    where = str(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise SourceError(where, "is not a regular file")
        return path.open("rb")
    except OSError as exc:
        raise SourceError(where, f"cannot be read ({exc.strerror or exc})") from None


def load_file(path: Path) -> SourceDocument:
    where = str(path)
    with open_source(path) as handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise SourceError(where, f"is {size} bytes; the limit is {MAX_FILE_BYTES}")
            data = handle.read()
        except OSError as exc:
            raise SourceError(where, f"cannot be read ({exc.strerror or exc})") from None
    document = load_bytes(data, path.name, where)
    document.path = str(path)
    document.doc_id = document.doc_id or str(path)
    return document


def load_files(files: Iterable[tuple[Path, SourceError | None]]
               ) -> Iterator[tuple[str, SourceDocument | SourceError]]:
    """Each file's document, or its error: the one given (a refused link) or the loader's.
    A parser that gives up badly on one file stops nothing: its error names the file."""
    for file, refused in files:
        if refused is not None:
            yield str(file), refused
            continue
        try:
            yield str(file), load_file(file)
        except SourceError as exc:
            yield str(file), exc
        except Exception as exc:
            log.exception("could not load %s", file)
            yield str(file), SourceError(str(file), f"could not be read ({type(exc).__name__}: {exc})")


Reader = Callable[[bytes, str, str], SourceDocument]  # (bytes, where, fallback title)


def load_bytes(data: bytes, name: str, where: str, *,
               parsers: Mapping[str, Reader] | None = None) -> SourceDocument:
    """A document from a file's bytes, read the way its name's suffix says in ``parsers``
    (default ``PARSERS``; a file in a Git commit is read without being written out);
    ``where`` names it in errors."""
    fallback = Path(name).stem.replace("-", " ").replace("_", " ").strip() or name
    parse = (PARSERS if parsers is None else parsers).get(Path(name).suffix.lower(), _plain_text)
    return parse(data, where, fallback)


def _pdf(data: bytes, where: str, fallback: str) -> SourceDocument:
    if not data.strip():
        raise SourceError(where, "is empty")
    return parse_pdf(data, where, fallback_title=fallback)


def _decoded(parse: Callable[..., SourceDocument]) -> Callable[[bytes, str, str], SourceDocument]:
    def read(data: bytes, where: str, fallback: str) -> SourceDocument:
        return parse(decode_text(data, where), where, fallback_title=fallback)
    return read


_plain_text = _decoded(parse_text)
# One registry, suffix -> reader (bytes, where, fallback title); anything else is text.
PARSERS: dict[str, Reader] = {
    **{suffix: _pdf for suffix in PDF},
    **{suffix: _decoded(parse_markdown) for suffix in MARKDOWN},
    **{suffix: _decoded(parse_html) for suffix in HTML},
    **{suffix: _plain_text for suffix in TEXT},
}


def iter_jsonl(path: Path) -> Iterator[tuple[int, SourceDocument | SourceError]]:
    """Yield (line number, document or the error for that line). Blank lines are skipped.

    Whatever one line holds (nesting 100,000 deep, NaN, a gigabyte without a newline) is
    that line's error; the lines after it are still read."""
    where = str(path)
    with open_source(path) as handle:
        for number, raw in enumerate(_lines(handle), start=1):
            at = f"{where}:{number}"
            if raw is None:
                yield number, SourceError(at, f"is longer than {MAX_LINE_BYTES} bytes, the limit "
                                              "for one line")
                continue
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
            except UnicodeDecodeError:
                yield number, SourceError(at, "is not UTF-8")
                continue
            except _NotANumber as exc:
                yield number, SourceError(at, f"is not JSON: {exc} is not a number JSON allows")
                continue
            except json.JSONDecodeError as exc:
                yield number, SourceError(at, f"is not JSON ({exc.msg})")
                continue
            except RecursionError:
                yield number, SourceError(at, "is nested too deeply to read")
                continue
            yield number, _jsonl_document(record, at, path)


MAX_LINE_BYTES = MAX_FILE_BYTES  # one line is one document: the limit of one file


def _lines(handle: BinaryIO) -> Iterator[bytes | None]:
    """The file's lines; None for one over ``MAX_LINE_BYTES``, which is skipped, not held."""
    limit = MAX_LINE_BYTES
    while line := handle.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
            pass
        yield None


class _NotANumber(ValueError):
    """NaN or Infinity in a JSON line: Python reads them, JSON (and PostgreSQL) do not."""


def _no_constant(name: str):
    raise _NotANumber(name)


def _jsonl_document(record: Any, at: str, path: Path) -> SourceDocument | SourceError:
    if not isinstance(record, dict):
        return SourceError(at, "is not a JSON object")
    doc_id, text = record.get("id"), record.get("text")
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        return SourceError(at, 'has no "id"')
    try:
        doc_id = id_field(doc_id, at)
        if not isinstance(text, str) or not text.strip():
            return SourceError(at, 'has no "text"')
        title = text_field(record.get("title"), "title", at)
        kind = text_field(record.get("kind"), "kind", at)
    except SourceError as exc:
        return exc
    url = record.get("url")
    metadata = record.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        return SourceError(at, '"metadata" must be an object')
    if url is not None and not isinstance(url, str):
        return SourceError(at, '"url" must be a string')
    title = title.strip() if title else normalise_whitespace(text)[:80]
    return SourceDocument(doc_id=doc_id, title=title, sections=[Section(None, text)],
                          url=url or None, metadata=metadata, kind=kind or "doc", named_id=True)
