"""Uploaded documents for Chat Studio: detect the type, extract the text of each page, cut it into chunks.

Chunks are what retrieval hands to a model, so they follow the text's own structure: paragraphs
(blank lines) are packed up to `target_chars`; a longer paragraph is cut between sentences, a longer
sentence between words, and only a single "word" longer than the target is cut inside. Markdown
prefers to start a chunk at a heading and never leaves a heading at the end of one. Consecutive
chunks of a page overlap by about `overlap_chars` of whole sentences (or words), so a fact cut in
two is whole in one of them. Every chunk is exactly `page_text[start:end]`, never longer than the
target, and never spans two pages.
"""

from __future__ import annotations

import bisect
import io
import itertools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final, Literal

from pypdf import PasswordType, PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError

from mmstudio.errors import InvalidRequest, UnsupportedMediaType

DocumentKind = Literal["text", "markdown", "pdf"]

SUPPORTED_TYPES: Final[Mapping[str, DocumentKind]] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "application/pdf": "pdf",
}
SUPPORTED_EXTENSIONS: Final[Mapping[str, DocumentKind]] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".pdf": "pdf",
}
PDF_MAGIC = b"%PDF-"
MIN_TARGET_CHARS = 200

_ACCEPTED = f"{', '.join(SUPPORTED_TYPES)} (files ending in {', '.join(SUPPORTED_EXTENSIONS)})"
# Allowed in text although Unicode calls them control characters.
_TEXT_CONTROLS = frozenset("\t\n\r\f")


class UnsupportedDocument(UnsupportedMediaType):
    """The upload is not a type Chat Studio reads; the message lists the ones it does."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not a supported document; accepted: {_ACCEPTED}", field="file")


class DocumentUnreadable(InvalidRequest):
    """The upload claims a supported type but its text cannot be read (corrupt, encrypted, no text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


@dataclass(frozen=True)
class ExtractedDocument:
    kind: DocumentKind
    pages: list[str]  # a text or Markdown file is one page


@dataclass(frozen=True)
class Chunk:
    index: int  # consecutive from 0 across the whole document
    text: str  # exactly page_text[start:end]
    page: int | None  # 1-based for PDFs, None for text and Markdown
    start: int
    end: int


def detect_kind(data: bytes, *, filename: str, content_type: str | None) -> DocumentKind:
    """The document's kind from its content type, else its file extension, else its first bytes."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in SUPPORTED_TYPES:
        return SUPPORTED_TYPES[media_type]
    extension = PurePath(filename).suffix.lower()
    if extension in SUPPORTED_EXTENSIONS:
        return SUPPORTED_EXTENSIONS[extension]
    # PDF readers accept the header anywhere in the first kilobyte; some generators put junk before it.
    if PDF_MAGIC in data[:1024]:
        return "pdf"
    shown = f"{filename!r}" + (f" ({media_type})" if media_type else "")
    raise UnsupportedDocument(shown)


def extract(data: bytes, *, filename: str, content_type: str | None) -> ExtractedDocument:
    """The text of an uploaded document, one string per page, with newlines normalised to \\n."""
    kind = detect_kind(data, filename=filename, content_type=content_type)
    if kind == "pdf":
        return ExtractedDocument(kind, _pdf_pages(data, filename))
    return ExtractedDocument(kind, [_normalise_newlines(_decode_text(data, filename))])


def chunk(doc: ExtractedDocument, *, target_chars: int = 1000, overlap_chars: int = 150) -> list[Chunk]:
    """Cut a document into chunks of at most `target_chars` (see the module docstring for the rules)."""
    if target_chars < MIN_TARGET_CHARS:
        raise InvalidRequest(
            f"target_chars must be at least {MIN_TARGET_CHARS}; got {target_chars}", field="target_chars"
        )
    if overlap_chars < 0 or 2 * overlap_chars >= target_chars:
        raise InvalidRequest(
            f"overlap_chars must be from 0 to less than half of target_chars ({target_chars}); "
            f"got {overlap_chars}",
            field="overlap_chars",
        )
    chunks: list[Chunk] = []
    for number, text in enumerate(doc.pages, start=1):
        page = number if doc.kind == "pdf" else None
        for start, end in _PageChunker(text, doc.kind == "markdown", target_chars, overlap_chars).spans():
            chunks.append(Chunk(len(chunks), text[start:end], page, start, end))
    return chunks


def _decode_text(data: bytes, filename: str) -> str:
    try:
        text = data.decode("utf-8-sig")  # plain UTF-8, with or without a byte order mark
    except UnicodeDecodeError:
        pass
    else:
        # Valid UTF-8 with NULs is a binary file with a text extension, not a document.
        if "\x00" in text:
            raise DocumentUnreadable(f"{filename!r} contains NUL bytes; it looks like a binary file")
        return text
    # Legacy Windows and Latin-1 files are common, but any byte string decodes as Latin-1: only
    # accept a result free of control characters, which real text in those encodings is.
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if not any(unicodedata.category(c) == "Cc" and c not in _TEXT_CONTROLS for c in text):
            return text
    raise DocumentUnreadable(
        f"{filename!r} is not UTF-8 text (nor Windows-1252 or Latin-1); save it as UTF-8"
    )


def _pdf_pages(data: bytes, filename: str) -> list[str]:
    try:
        reader = PdfReader(io.BytesIO(data))
        # Many PDFs are encrypted only to restrict printing or editing, with an empty user
        # password; those open like any other.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise DocumentUnreadable(
                f"{filename!r} is a password-protected (encrypted) PDF; upload it unlocked"
            )
        pages = [_normalise_newlines(page.extract_text()) for page in reader.pages]
    except DocumentUnreadable:
        raise
    except FileNotDecryptedError as e:
        raise DocumentUnreadable(
            f"{filename!r} is a password-protected (encrypted) PDF; upload it unlocked"
        ) from e
    except PdfReadError as e:
        raise DocumentUnreadable(f"{filename!r} is not a readable PDF: {e}") from e
    except Exception as e:
        # pypdf parses untrusted bytes and a damaged file can surface as almost any exception
        # (KeyError, ValueError, RecursionError, ...); to the user they all mean the same thing.
        raise DocumentUnreadable(f"{filename!r} is not a readable PDF ({type(e).__name__})") from e
    if not any(page.strip() for page in pages):
        raise DocumentUnreadable(f"{filename!r} has no text layer; scanned PDFs are not supported")
    return pages


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True, slots=True)
class _Piece:
    """A stretch of a page that is never cut further (unless it is a word longer than the target)."""

    start: int
    end: int
    heading: bool = False


_BLANK_LINE = re.compile(r"[ \t\f\v]*")
_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]|$)")
_FENCE = re.compile(r" {0,3}(?:```|~~~)")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|[。！？]+\s*")  # noqa: RUF001 (typographic quotes and CJK full stops)
_WORD = re.compile(r"\S+")


class _PageChunker:
    """Chunk spans of one page's text."""

    def __init__(self, text: str, markdown: bool, target: int, overlap: int) -> None:
        self.text = text
        self.markdown = markdown
        self.target = target
        self.overlap = overlap
        self.blocks = self._blocks()
        self.word_starts = [m.start() for m in _WORD.finditer(text)]
        ends = (m.end() for m in _SENTENCE_END.finditer(text))
        self.sentence_starts = sorted(
            {p for p in ends if p < len(text) and not text[p].isspace()} | {b.start for b in self.blocks}
        )

    def spans(self) -> list[tuple[int, int]]:
        pieces = [piece for block in self.blocks for piece in self._pieces(block)]
        spans: list[tuple[int, int]] = []
        if not pieces:
            return spans
        start, end = pieces[0].start, pieces[0].end
        for k, piece in enumerate(pieces[1:], start=1):
            if piece.end - start <= self.target and not self._break_before(pieces, k, start, end):
                end = piece.end
                continue
            spans.append((start, end))
            overlap_start = None if piece.heading else self._overlap_start(start, end, piece)
            start, end = (overlap_start if overlap_start is not None else piece.start), piece.end
        spans.append((start, end))
        return spans

    def _break_before(self, pieces: list[_Piece], k: int, start: int, end: int) -> bool:
        """Start a new chunk at a Markdown heading when the current one is half full, or when the
        heading's first paragraph would not fit after it (a heading must not end a chunk)."""
        if not pieces[k].heading:
            return False
        if end - start >= self.target // 2:
            return True
        return k + 1 < len(pieces) and pieces[k + 1].end - start > self.target

    def _overlap_start(self, start: int, end: int, following: _Piece) -> int | None:
        """Where the next chunk starts inside the previous one: whole sentences when they come close
        to `overlap` characters, else whole words; None when nothing fits."""
        if self.overlap == 0:
            return None
        low = max(start + 1, end - self.overlap, following.end - self.target)
        sentence = self._first_at_or_after(self.sentence_starts, low, end)
        if sentence is not None and end - sentence >= self.overlap // 2:
            return sentence
        return self._first_at_or_after(self.word_starts, low, end)

    @staticmethod
    def _first_at_or_after(positions: list[int], low: int, end: int) -> int | None:
        i = bisect.bisect_left(positions, low)
        return positions[i] if i < len(positions) and positions[i] < end else None

    def _blocks(self) -> list[_Piece]:
        """Paragraphs (separated by blank lines) and, in Markdown, heading lines, stripped of
        surrounding whitespace. A `#` line inside a Markdown code fence is code, not a heading."""
        text = self.text
        blocks: list[_Piece] = []
        current: list[int] = []  # [start, end] of the paragraph being collected
        in_fence = False

        def close() -> None:
            if current:
                blocks.append(self._stripped(current[0], current[1]))
                current.clear()

        position = 0
        while position <= len(text):
            newline = text.find("\n", position)
            line_end = len(text) if newline == -1 else newline
            if self.markdown and _FENCE.match(text, position, line_end):
                in_fence = not in_fence
            if _BLANK_LINE.fullmatch(text, position, line_end):
                close()
            elif self.markdown and not in_fence and _HEADING.match(text, position, line_end):
                close()
                heading = self._stripped(position, line_end)
                blocks.append(_Piece(heading.start, heading.end, heading=True))
            elif current:
                current[1] = line_end
            else:
                current.extend((position, line_end))
            position = line_end + 1
        close()
        return [block for block in blocks if block.end > block.start]

    def _stripped(self, start: int, end: int) -> _Piece:
        while start < end and self.text[start].isspace():
            start += 1
        while end > start and self.text[end - 1].isspace():
            end -= 1
        return _Piece(start, end)

    def _pieces(self, block: _Piece) -> list[_Piece]:
        if block.end - block.start <= self.target:
            return [block]
        pieces: list[_Piece] = []
        first = bisect.bisect_right(self.sentence_starts, block.start)
        last = bisect.bisect_left(self.sentence_starts, block.end)
        bounds = [block.start, *self.sentence_starts[first:last], block.end]
        for a, b in itertools.pairwise(bounds):
            sentence = self._stripped(a, b)
            if sentence.end - sentence.start <= self.target:
                pieces.append(sentence)
                continue
            for word in _WORD.finditer(self.text, sentence.start, sentence.end):
                # Only a "word" longer than the target (a URL, base64, a table without spaces) is cut.
                for cut in range(word.start(), word.end(), self.target):
                    pieces.append(_Piece(cut, min(cut + self.target, word.end())))
        return pieces
