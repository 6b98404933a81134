"""PDF documents on files built with PyMuPDF in memory: page specs, text layers, renders, limits, bad files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from mcp_vision.inputs.pdf import PdfDocument, open_document, parse_pages
from mcp_vision.errors import InputError
from mcp_vision.inputs.sources import Media, sniff

ROOT = Path(__file__).resolve().parents[1]
BIG = 64_000_000
SENTENCES = (
    "The quick brown fox jumps over the lazy dog on page one.",
    "Invoices are due within thirty days of the date shown here.",
    "Page three closes the report with a short summary of results.",
)


def _media(data: bytes, label: str = "'doc.pdf'") -> Media:
    return Media(data=data, label=label, kind=sniff(data))


def _open(data: bytes) -> PdfDocument:
    return open_document(_media(data))


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _text_pdf() -> bytes:
    """Three A4 pages with one known sentence each; page 1 also has a red filled rectangle."""
    doc = pymupdf.open()
    for sentence in SENTENCES:
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 72), sentence, fontsize=11)
    doc[0].draw_rect(pymupdf.Rect(100, 200, 300, 400), color=(1, 0, 0), fill=(1, 0, 0))
    return doc.tobytes()


def _scanned_pdf() -> bytes:
    """One page that holds only an image (as a scanner makes), then a page with text."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_image(pymupdf.Rect(50, 50, 545, 792), stream=_png((200, 300), (30, 90, 200)))
    doc.new_page(width=595, height=842).insert_text((72, 72), SENTENCES[0])
    return doc.tobytes()


# ------------------------------------------------------------ parse_pages


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ("", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ("   ", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ("3", [3]),
        ("1-3,7", [1, 2, 3, 7]),
        ("5-", [5, 6, 7, 8, 9, 10]),
        (" 2 , 4-5 ", [2, 4, 5]),
        ("4 - 5", [4, 5]),
        ("7,1-3,2,7", [1, 2, 3, 7]),
        ("10", [10]),
        ("10-", [10]),
        ("03", [3]),
    ],
)
def test_parse_pages(spec, expected):
    assert parse_pages(spec, 10) == expected


@pytest.mark.parametrize("spec", ["a", "3-1", "0", "1--2", ",", "1,", "-3", "1-2-3", "1.5", "one", "１"])
def test_parse_pages_refuses_malformed_specs_and_states_the_page_count(spec):
    with pytest.raises(InputError) as info:
        parse_pages(spec, 5)
    message = str(info.value)
    assert "5 pages" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


@pytest.mark.parametrize("spec", ["9", "2-9", "9-", "1,9"])
def test_parse_pages_out_of_range(spec):
    with pytest.raises(InputError) as info:
        parse_pages(spec, 3)
    assert str(info.value) == "Page 9 is out of range: the document has 3 pages (use pages between 1 and 3)."


def test_parse_pages_single_page_document_and_huge_numbers():
    assert parse_pages(None, 1) == [1]
    with pytest.raises(InputError, match=r"has 1 page \(use pages between 1 and 1\)"):
        parse_pages("2", 1)
    with pytest.raises(InputError, match="out of range"):
        parse_pages("1-99999999999999999999", 4)  # refused without building the range
    with pytest.raises(InputError, match="not a page list"):
        parse_pages("1," * 2000, 4)


# ------------------------------------------------------------ text layers


def test_text_layer_is_exactly_what_pymupdf_gives():
    data = _text_pdf()
    reference = pymupdf.open(stream=data, filetype="pdf")
    with _open(data) as doc:
        assert doc.page_count == 3
        assert doc.repaired is False
        assert doc.warnings == []
        for number, sentence in enumerate(SENTENCES, start=1):
            text = doc.text_layer(number)
            assert text == reference[number - 1].get_text("text")
            assert sentence in text
            assert doc.has_text_layer(number)


def test_image_only_page_has_no_text_layer():
    with _open(_scanned_pdf()) as doc:
        assert doc.text_layer(1).strip() == ""
        assert doc.has_text_layer(1) is False
        assert doc.has_text_layer(2) is True


def test_short_text_is_not_a_text_layer():
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "p. 4")
    with _open(doc.tobytes()) as pdf:
        assert pdf.has_text_layer(1) is False
        assert pdf.has_text_layer(1, min_chars=3) is True


def test_unmapped_glyphs_are_not_a_text_layer(monkeypatch):
    # PyMuPDF cannot easily write a font without a Unicode map, so give get_text what MuPDF returns then
    monkeypatch.setattr(pymupdf.Page, "get_text", lambda self, *a, **k: "\ufffd" * 400 + "\n 3 \n")
    with _open(_text_pdf()) as pdf:
        assert pdf.has_text_layer(1) is False


def test_page_numbers_are_checked():
    with _open(_text_pdf()) as doc:
        for bad in (0, 4, -1):
            with pytest.raises(InputError, match=r"the document has 3 pages \(use pages between 1 and 3\)"):
                doc.text_layer(bad)


# ------------------------------------------------------------ rendering


@pytest.mark.parametrize(("dpi", "size"), [(72, (595, 842)), (144, (1190, 1684))])
def test_render_size_and_content(dpi, size):
    scale = dpi / 72
    with _open(_text_pdf()) as doc:
        assert doc.check_render(1, dpi, BIG) == size
        image = doc.render(1, dpi, BIG)
        assert isinstance(image, Image.Image)
        assert image.mode == "RGB"
        assert image.size == size
        # the red rectangle at (100..300, 200..400) pt, white around it
        assert image.getpixel((int(200 * scale), int(300 * scale))) == (255, 0, 0)
        assert image.getpixel((int(50 * scale), int(600 * scale))) == (255, 255, 255)
        # the sentence's ink: some dark pixels on its baseline band
        band = image.crop((int(72 * scale), int(62 * scale), int(300 * scale), int(74 * scale))).convert("L")
        assert band.getextrema()[0] < 100


def test_render_matches_pymupdf_sizes_for_odd_page_sizes():
    doc = pymupdf.open()
    doc.new_page(width=595.3, height=841.9)
    doc.new_page(width=612, height=792).set_rotation(90)
    with _open(doc.tobytes()) as pdf:
        for number in (1, 2):
            for dpi in (72, 96, 150, 97.5):
                image = pdf.render(number, dpi, BIG)
                assert pdf.check_render(number, dpi, BIG) == image.size
        assert pdf.render(2, 72, BIG).size == (792, 612)


def test_render_of_image_only_page_shows_the_image():
    with _open(_scanned_pdf()) as doc:
        image = doc.render(1, 72, BIG)
        assert image.getpixel((297, 421)) == (30, 90, 200)


def test_check_render_refuses_a_huge_page_before_rendering(monkeypatch):
    doc = pymupdf.open()
    doc.new_page(width=14400, height=14400)
    with _open(doc.tobytes()) as pdf:
        monkeypatch.setattr(pymupdf.Page, "get_pixmap", lambda *a, **k: pytest.fail("rendered"))
        started = time.monotonic()
        with pytest.raises(InputError) as info:
            pdf.render(1, 300, BIG)
        assert time.monotonic() - started < 1.0
    message = str(info.value)
    assert message.startswith("Page 1 of 'doc.pdf' would render at 60,000x60,000 pixels at 300 dpi")
    assert "64,000,000 pixel limit" in message
    assert message.endswith("use dpi=40 or lower.")  # 14400 pt at 40 dpi is 8000 px
    # the suggested dpi really fits
    with _open(doc.tobytes()) as pdf:
        width, height = pdf.check_render(1, 40, BIG)
        assert width * height <= BIG


@pytest.mark.parametrize("dpi", [0, -72, float("nan"), float("inf"), 1e9])
def test_bad_dpi_is_refused(dpi):
    with _open(_text_pdf()) as doc, pytest.raises(InputError, match="dpi="):
        doc.check_render(1, dpi, BIG)


# ------------------------------------------------------------ files that are refused


def test_encrypted_pdf_is_refused():
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Secret")
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    with pytest.raises(InputError) as info:
        _open(data)
    assert str(info.value).startswith("'doc.pdf' is password-protected")


def test_owner_password_only_pdf_opens():
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), SENTENCES[1])
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", permissions=0)
    with _open(data) as pdf:
        assert SENTENCES[1] in pdf.text_layer(1)


def test_zip_named_pdf_is_not_a_pdf():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
        archive.writestr("content.xhtml", "<html><body>hello</body></html>")
    media = _media(buf.getvalue())
    assert media.kind != "pdf"
    with pytest.raises(InputError, match=r"^'doc.pdf' is a ZIP archive .*, not a PDF"):
        open_document(media)


def test_image_and_video_are_not_pdfs():
    with pytest.raises(InputError, match="is an image, not a PDF"):
        _open(_png((4, 4), (0, 0, 0)))
    with pytest.raises(InputError, match="is a video, not a PDF"):
        open_document(Media(data=b"\x1a\x45\xdf\xa3" + b"\0" * 60, label="'doc.pdf'", kind="video"))


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-",
        b"%PDF-1.7\n" + b"garbage " * 50,
        b"%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n",
    ],
)
def test_garbage_after_pdf_header_is_a_clean_input_error(data):
    assert sniff(data) == "pdf"
    with pytest.raises(InputError) as info:
        _open(data)
    message = str(info.value)
    assert message.startswith("'doc.pdf' is not a readable PDF (") or "has no pages" in message


def test_truncated_pdfs_open_repaired_or_fail_cleanly():
    data = _text_pdf()
    repaired = 0
    for cut in list(range(16, len(data), max(1, len(data) // 60))) + [len(data) - 20]:
        try:
            with _open(data[:cut]) as doc:
                for number in range(1, doc.page_count + 1):
                    try:
                        doc.text_layer(number)
                        doc.render(number, 10, BIG)
                    except InputError as exc:
                        assert f"Page {number} of 'doc.pdf' cannot be" in str(exc)
                repaired += doc.repaired
                if doc.repaired:
                    assert doc.warnings  # MuPDF's complaints were collected
        except InputError as exc:
            assert "'doc.pdf'" in str(exc)
    assert repaired  # cutting off the xref table leaves pages MuPDF can repair


def test_missing_xref_is_repaired_and_reported():
    data = _text_pdf()
    with _open(data[: data.rindex(b"xref")]) as doc:
        assert doc.repaired is True
        assert doc.page_count == 3
        assert SENTENCES[2] in doc.text_layer(3)
        assert any("xref" in w for w in doc.warnings)


def test_zero_page_pdf_is_refused():
    # PyMuPDF will not save a document without pages, so empty the page tree of a saved one in place
    doc = pymupdf.open()
    doc.new_page()
    data = doc.tobytes()
    old = b"/Count 1/Kids[4 0 R]"
    assert old in data
    empty = data.replace(old, b"/Count 0/Kids[]".ljust(len(old)))
    assert pymupdf.open(stream=empty, filetype="pdf").page_count == 0
    with pytest.raises(InputError) as info:
        _open(empty)
    assert str(info.value).startswith("'doc.pdf' has no pages")


def test_closed_document_refuses_further_work():
    doc = _open(_text_pdf())
    doc.close()
    doc.close()
    with pytest.raises(InputError, match="already closed"):
        doc.text_layer(1)


def test_page_cache_is_bounded():
    with open_document(_media(_text_pdf()), max_pages_open=1) as doc:
        for number in (1, 2, 3, 1):
            assert doc.render(number, 20, BIG).size == (166, 234)
        assert len(doc._pages) == 1


# ------------------------------------------------------------ process hygiene


def test_importing_documents_does_not_import_pymupdf():
    code = "import sys, mcp_vision.inputs.pdf; print('pymupdf' in sys.modules, 'fitz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("imported_first", [False, True])
def test_broken_pdf_prints_nothing_to_stdout(tmp_path, imported_first):
    """MuPDF complains about these files; none of it may reach stdout, the MCP channel.

    With `imported_first`, PyMuPDF was imported by other code before the module (so PYMUPDF_MESSAGE
    came too late) and that code switched MuPDF's message display back on after the module's setup.
    """
    data = _text_pdf()
    broken = data[: data.rindex(b"xref")].replace(b"endobj", b"endobjx", 2)
    garbage = b"%PDF-1.7\n" + b"1 0 obj << /Type /Pages /Kids [9 0 R] >> stream\n\x00\xff" * 20
    (tmp_path / "broken.pdf").write_bytes(broken)
    (tmp_path / "garbage.pdf").write_bytes(garbage)
    (tmp_path / "good.pdf").write_bytes(data)
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        if sys.argv[2] == "1":
            import pymupdf
        from mcp_vision.inputs.pdf import open_document
        from mcp_vision.errors import InputError
        from mcp_vision.inputs.sources import Media, sniff
        def media(name):
            data = Path(sys.argv[1], name).read_bytes()
            return Media(data=data, label=name, kind=sniff(data))
        open_document(media("good.pdf")).close()
        if sys.argv[2] == "1":
            pymupdf.TOOLS.mupdf_display_errors(True)
            pymupdf.TOOLS.mupdf_display_warnings(True)
        for name in ("broken.pdf", "garbage.pdf"):
            try:
                with open_document(media(name)) as doc:
                    for n in range(1, doc.page_count + 1):
                        try:
                            doc.text_layer(n)
                            doc.render(n, 30, 10_000_000)
                        except InputError as exc:
                            sys.stderr.write(f"page error: {exc}\\n")
                    sys.stderr.write(f"opened {name}: repaired={doc.repaired} warnings={len(doc.warnings)}\\n")
            except InputError as exc:
                sys.stderr.write(f"refused: {exc}\\n")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYMUPDF_MESSAGE"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(int(imported_first))],
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    stderr = out.stderr.decode(errors="replace")
    assert out.returncode == 0, stderr
    assert out.stdout == b""
    assert "opened broken.pdf: repaired=True" in stderr
    assert "refused: garbage.pdf" in stderr
    if imported_first:
        assert "MuPDF warning:" in stderr  # displayed, but on stderr
