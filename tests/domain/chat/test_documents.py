"""Uploaded documents: type detection, text and PDF extraction (real PDF bytes), and chunking rules."""

from __future__ import annotations

import io
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter

from mmstudio.domain.chat.documents import (
    SUPPORTED_EXTENSIONS,
    SUPPORTED_TYPES,
    Chunk,
    DocumentUnreadable,
    ExtractedDocument,
    UnsupportedDocument,
    chunk,
    detect_kind,
    extract,
)
from mmstudio.errors import InvalidRequest, UnsupportedMediaType


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one text line per string, Helvetica, with a correct xref table."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        shown = " ".join(f"({_pdf_escape(line)}) Tj T*" for line in lines)
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode("cp1252")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def sentences(count: int, start: int = 0) -> str:
    """Distinct sentences of about 50 characters, so chunk contents can be told apart."""
    return " ".join(
        f"Sentence number {i:04d} says something fairly short." for i in range(start, start + count)
    )


def assert_well_formed(doc: ExtractedDocument, chunks: list[Chunk], target: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        page_text = doc.pages[c.page - 1] if c.page is not None else doc.pages[0]
        assert page_text[c.start : c.end] == c.text
        assert c.text == c.text.strip()
        assert 0 < len(c.text) <= target


# --- detecting the type -----------------------------------------------------------------------


def test_supported_types_and_extensions() -> None:
    assert dict(SUPPORTED_TYPES) == {
        "text/plain": "text",
        "text/markdown": "markdown",
        "text/x-markdown": "markdown",
        "application/pdf": "pdf",
    }
    assert dict(SUPPORTED_EXTENSIONS) == {
        ".txt": "text",
        ".md": "markdown",
        ".markdown": "markdown",
        ".pdf": "pdf",
    }


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "kind"),
    [
        ("notes.bin", "text/plain", b"hi", "text"),
        ("notes.bin", "text/markdown; charset=utf-8", b"# hi", "markdown"),
        ("notes.bin", "TEXT/X-MARKDOWN", b"# hi", "markdown"),
        ("notes.txt", "application/pdf", b"%PDF-", "pdf"),  # the declared type wins over the extension
        ("README.md", "application/octet-stream", b"# hi", "markdown"),
        ("README.MARKDOWN", None, b"# hi", "markdown"),
        ("notes.TXT", "", b"hi", "text"),
        ("paper.pdf", "image/png", b"", "pdf"),  # an unknown declared type falls back to the extension
        ("upload", "application/octet-stream", b"%PDF-1.7\n...", "pdf"),
        ("upload", None, b"\r\n%PDF-1.4\n...", "pdf"),
    ],
)
def test_detect_kind(filename: str, content_type: str | None, data: bytes, kind: str) -> None:
    assert detect_kind(data, filename=filename, content_type=content_type) == kind


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("photo.png", "image/png"), ("archive", "application/octet-stream"), ("sheet.docx", None)],
)
def test_unsupported_types_list_what_is_accepted(filename: str, content_type: str | None) -> None:
    with pytest.raises(UnsupportedDocument) as caught:
        extract(b"PK\x03\x04 not a pdf", filename=filename, content_type=content_type)
    message = str(caught.value)
    assert repr(filename) in message
    for accepted in ("text/plain", "text/markdown", "application/pdf", ".txt", ".md", ".markdown", ".pdf"):
        assert accepted in message
    assert isinstance(caught.value, UnsupportedMediaType) and isinstance(caught.value, InvalidRequest)
    assert caught.value.field == "file"


# --- text -------------------------------------------------------------------------------------


def test_utf8_text_is_one_page() -> None:
    doc = extract("Grüße, 世界\n".encode(), filename="a.txt", content_type="text/plain")
    assert doc == ExtractedDocument("text", ["Grüße, 世界\n"])


def test_utf8_byte_order_mark_is_dropped() -> None:
    doc = extract(b"\xef\xbb\xbf# Title\n", filename="a.md", content_type=None)
    assert doc == ExtractedDocument("markdown", ["# Title\n"])


def test_newlines_are_normalised() -> None:
    doc = extract(b"one\r\ntwo\rthree\n", filename="a.txt", content_type=None)
    assert doc.pages == ["one\ntwo\nthree\n"]


def test_windows_1252_text_is_accepted() -> None:
    text = "Caf\u00e9 \u201cquoted\u201d \u2013 5\u20ac"  # curly quotes, en dash, euro: cp1252 only
    doc = extract(text.encode("cp1252"), filename="a.txt", content_type=None)
    assert doc.pages == [text]


def test_latin1_text_is_accepted() -> None:
    doc = extract("naïve façade".encode("latin-1"), filename="a.txt", content_type=None)
    assert doc.pages == ["naïve façade"]


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)),  # not UTF-8, and its Latin-1 reading is full of control characters
        b"\x81\x8d\x8f\x90\x9d text",  # bytes Windows-1252 leaves undefined
        b"\xff\xfe\x00\x01\x02\x03",
    ],
)
def test_binary_that_is_not_text_is_unreadable(data: bytes) -> None:
    with pytest.raises(DocumentUnreadable, match="is not UTF-8 text"):
        extract(data, filename="a.txt", content_type="text/plain")


def test_valid_utf8_with_nul_bytes_is_unreadable() -> None:
    with pytest.raises(DocumentUnreadable, match="NUL bytes"):
        extract(b"abc\x00def", filename="a.txt", content_type=None)


# --- PDF --------------------------------------------------------------------------------------


def test_pdf_helper_writes_a_strictly_valid_pdf() -> None:
    reader = PdfReader(io.BytesIO(make_pdf([["Hello (world)."]])), strict=True)
    assert reader.pages[0].extract_text().strip() == "Hello (world)."


def test_pdf_pages_are_extracted_in_order() -> None:
    data = make_pdf([["First page, line one.", "Line two."], ["Second page."], ["Caf\u00e9 on page three."]])
    doc = extract(data, filename="paper.pdf", content_type="application/pdf")
    assert doc.kind == "pdf"
    assert [page.strip() for page in doc.pages] == [
        "First page, line one.\nLine two.",
        "Second page.",
        "Café on page three.",
    ]


def test_pdf_chunks_carry_one_based_page_numbers_and_never_cross_pages() -> None:
    data = make_pdf([["Alpha text on one."], [], ["Gamma text on three."]])
    doc = extract(data, filename="paper.pdf", content_type=None)
    chunks = chunk(doc)
    assert [(c.index, c.page, c.text) for c in chunks] == [
        (0, 1, "Alpha text on one."),
        (1, 3, "Gamma text on three."),
    ]
    assert_well_formed(doc, chunks, 1000)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\nthis is not a PDF body",
        make_pdf([["Some text."]])[:150],  # truncated
        b"%PDF-",
    ],
)
def test_corrupt_pdf_is_unreadable(data: bytes) -> None:
    with pytest.raises(DocumentUnreadable, match=r"'broken\.pdf' is not a readable PDF") as caught:
        extract(data, filename="broken.pdf", content_type="application/pdf")
    assert caught.value.field == "file"


def test_pdf_without_a_text_layer_is_unreadable() -> None:
    with pytest.raises(DocumentUnreadable, match="no text layer; scanned PDFs are not supported"):
        extract(make_pdf([[], []]), filename="scan.pdf", content_type=None)


def test_password_protected_pdf_is_unreadable() -> None:
    data = encrypted(make_pdf([["Top secret."]]), user_password="hunter2")
    assert PdfReader(io.BytesIO(data)).is_encrypted
    with pytest.raises(DocumentUnreadable, match="password-protected \\(encrypted\\) PDF"):
        extract(data, filename="locked.pdf", content_type=None)


def test_pdf_encrypted_with_an_empty_user_password_opens() -> None:
    # Encryption that only restricts permissions: every reader opens these without asking.
    data = encrypted(make_pdf([["Readable anyway."]]), user_password="")
    assert PdfReader(io.BytesIO(data)).is_encrypted
    doc = extract(data, filename="restricted.pdf", content_type=None)
    assert [page.strip() for page in doc.pages] == ["Readable anyway."]


# --- chunking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "overlap", "field"),
    [
        (199, 0, "target_chars"),
        (0, 0, "target_chars"),
        (400, 200, "overlap_chars"),
        (400, -1, "overlap_chars"),
    ],
)
def test_chunk_arguments_are_validated(target: int, overlap: int, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chunk(ExtractedDocument("text", ["text"]), target_chars=target, overlap_chars=overlap)
    assert caught.value.field == field


def test_smallest_allowed_arguments() -> None:
    assert chunk(ExtractedDocument("text", ["text"]), target_chars=200, overlap_chars=99)[0].text == "text"


@pytest.mark.parametrize("pages", [[""], ["  \n\n \t\n"], ["", " "]])
def test_whitespace_only_yields_no_chunks(pages: list[str]) -> None:
    assert chunk(ExtractedDocument("text", pages)) == []


def test_short_text_is_one_chunk_with_offsets_past_the_whitespace() -> None:
    text = "\n\n  Hello there.  \n"
    assert chunk(ExtractedDocument("text", [text])) == [Chunk(0, "Hello there.", None, 4, 16)]


def test_paragraphs_are_packed_up_to_the_target() -> None:
    paragraphs = [sentences(3, start=3 * i) for i in range(6)]  # about 160 characters each
    text = "\n\n".join(paragraphs)
    doc = ExtractedDocument("text", [text])
    chunks = chunk(doc, target_chars=500, overlap_chars=0)
    assert_well_formed(doc, chunks, 500)
    # Three paragraphs and two blank lines fit in 500; a fourth would not.
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[:3]), "\n\n".join(paragraphs[3:])]


def test_a_long_paragraph_is_cut_between_sentences() -> None:
    text = sentences(30)
    doc = ExtractedDocument("text", [text])
    chunks = chunk(doc, target_chars=300, overlap_chars=0)
    assert_well_formed(doc, chunks, 300)
    assert len(chunks) == 5  # six 50-character sentences per chunk of at most 300
    for c in chunks:
        assert c.text.startswith("Sentence number ")
        assert c.text.endswith("fairly short.")
    assert " ".join(c.text for c in chunks) == text


def test_a_long_sentence_is_cut_between_words() -> None:
    words = [f"word{i:03d}" for i in range(200)]
    text = " ".join(words)  # one sentence of 1399 characters
    doc = ExtractedDocument("text", [text])
    chunks = chunk(doc, target_chars=200, overlap_chars=0)
    assert_well_formed(doc, chunks, 200)
    assert " ".join(c.text for c in chunks).split() == words
    for c in chunks:
        assert all(re.fullmatch(r"word\d{3}", w) for w in c.text.split())


def test_only_a_word_longer_than_the_target_is_cut_inside() -> None:
    text = "Start here. " + "x" * 450 + " end."
    doc = ExtractedDocument("text", [text])
    chunks = chunk(doc, target_chars=200, overlap_chars=50)
    assert_well_formed(doc, chunks, 200)
    assert [c.text for c in chunks] == ["Start here.", "x" * 200, "x" * 200, "x" * 50 + " end."]


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    text = sentences(40)
    doc = ExtractedDocument("text", [text])
    chunks = chunk(doc, target_chars=400, overlap_chars=120)
    assert_well_formed(doc, chunks, 400)
    for previous, current in itertools.pairwise(chunks):
        shared = previous.end - current.start
        assert 60 <= shared <= 120
        assert current.text.startswith("Sentence number ")
        assert previous.text.endswith(text[current.start : previous.end])
    assert chunks[-1].end == len(text)


def test_overlap_falls_back_to_whole_words_when_sentences_are_long() -> None:
    words = [f"w{i:04d}" for i in range(300)]
    text = " ".join(words)
    doc = ExtractedDocument("text", [text])
    chunks = chunk(doc, target_chars=300, overlap_chars=100)
    assert_well_formed(doc, chunks, 300)
    for previous, current in itertools.pairwise(chunks):
        assert 80 <= previous.end - current.start <= 100
        assert text[current.start - 1] == " "  # starts at a word


def test_without_overlap_chunks_tile_the_text() -> None:
    text = sentences(40)
    chunks = chunk(ExtractedDocument("text", [text]), target_chars=400, overlap_chars=0)
    for previous, current in itertools.pairwise(chunks):
        assert current.start == previous.end + 1


def test_markdown_starts_a_chunk_at_a_heading() -> None:
    intro, details, more = sentences(5), sentences(4, start=10), sentences(4, start=20)
    text = f"# Intro\n\n{intro}\n\n## Details\n\n{details}\n\n## More\n\n{more}"
    doc = ExtractedDocument("markdown", [text])
    chunks = chunk(doc, target_chars=400, overlap_chars=100)
    assert_well_formed(doc, chunks, 400)
    # Each section would fit after the one before it, but that one is already half the target.
    assert [c.text for c in chunks] == [
        f"# Intro\n\n{intro}",
        f"## Details\n\n{details}",
        f"## More\n\n{more}",
    ]
    assert chunks[1].start == text.index("## Details")  # no overlap in front of a heading


def test_markdown_packs_small_sections_together() -> None:
    text = "# A\n\nShort one.\n\n## B\n\nShort two.\n\n## C\nShort three."
    chunks = chunk(ExtractedDocument("markdown", [text]))
    assert [c.text for c in chunks] == [text]


def test_markdown_never_ends_a_chunk_with_a_heading() -> None:
    body = sentences(3)  # 149 characters: under half the target, so no early break
    text = f"{body}\n\n## Next\n\n{sentences(3, start=5)}"
    doc = ExtractedDocument("markdown", [text])
    chunks = chunk(doc, target_chars=300, overlap_chars=0)
    # The heading alone would still fit in the first chunk, its paragraph would not.
    assert [c.text for c in chunks] == [body, text[text.index("## Next") :]]


def test_markdown_heading_without_a_blank_line_before_it_still_splits() -> None:
    text = f"{sentences(5)}\n## Next\n{sentences(2, start=9)}"
    chunks = chunk(ExtractedDocument("markdown", [text]), target_chars=400, overlap_chars=0)
    assert chunks[1].text.startswith("## Next\nSentence number 0009")


def test_plain_text_does_not_treat_hashes_as_headings() -> None:
    text = f"{sentences(5)}\n## Next\n{sentences(2, start=9)}"
    chunks = chunk(ExtractedDocument("text", [text]), target_chars=400, overlap_chars=0)
    assert "## Next" in chunks[0].text


def test_markdown_hash_lines_inside_code_fences_are_not_headings() -> None:
    code = "```python\n# not a heading\nx = 1\n```"
    text = f"{sentences(3)}\n\n{code}\n\n## Real heading\n\n{sentences(1)}"
    chunks = chunk(ExtractedDocument("markdown", [text]), target_chars=250, overlap_chars=0)
    # A heading here would start a new chunk: the first one is over half the target already.
    assert [c.text for c in chunks] == [f"{sentences(3)}\n\n{code}", f"## Real heading\n\n{sentences(1)}"]


def test_indexes_run_across_pages() -> None:
    doc = ExtractedDocument("pdf", [sentences(10), "", sentences(10, start=50)])
    chunks = chunk(doc, target_chars=300, overlap_chars=50)
    assert_well_formed(doc, chunks, 300)
    assert [(c.index, c.page, c.start) for c in chunks] == [(0, 1, 0), (1, 1, 250), (2, 3, 0), (3, 3, 250)]
    assert chunks[2].text.startswith("Sentence number 0050")  # no overlap carried across pages


_WORDS = st.sampled_from(
    ["a", "be", "sea", "word", "longer", "Capital", "x" * 30, "y" * 260, "end.", "why?", "ok!"]
)
_SEPARATORS = st.sampled_from([" ", " ", " ", "\n", "\n\n", "\n\n\n", "  ", "\t", ". ", "\n# ", "\n## "])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_WORDS, _SEPARATORS), max_size=300))
    return "".join(word + separator for word, separator in parts)


@settings(max_examples=150, deadline=None)
@given(
    text=_texts(),
    kind=st.sampled_from(["text", "markdown", "pdf"]),
    target=st.integers(200, 600),
    overlap_share=st.floats(0, 0.49),
)
def test_chunking_invariants(text: str, kind: str, target: int, overlap_share: float) -> None:
    overlap = int(target * overlap_share)
    pages = [text, text[::-1]] if kind == "pdf" else [text]
    doc = ExtractedDocument(kind, pages)  # type: ignore[arg-type]
    chunks = chunk(doc, target_chars=target, overlap_chars=overlap)
    assert_well_formed(doc, chunks, target)
    for number, page_text in enumerate(pages, start=1):
        mine = [c for c in chunks if c.page == (number if kind == "pdf" else None)]
        covered: set[int] = set()
        for c in mine:
            covered.update(range(c.start, c.end))
        # Every visible character is in some chunk.
        assert all(i in covered for i, ch in enumerate(page_text) if not ch.isspace())
        for previous, current in itertools.pairwise(mine):
            assert previous.start < current.start
            assert previous.end < current.end
            assert previous.end - current.start <= overlap
        for c in mine:
            # A cut inside a word only happens in a word longer than the target.
            for edge in (c.start, c.end):
                if 0 < edge < len(page_text) and not (
                    page_text[edge - 1].isspace() or page_text[edge].isspace()
                ):
                    before = re.search(r"\S*$", page_text[:edge])
                    after = re.match(r"\S*", page_text[edge:])
                    assert before is not None and after is not None
                    assert len(before.group()) + len(after.group()) > target
