"""Documents other than PDF that PyMuPDF lays out into pages (EPUB, FB2, CBZ, SVG here; XPS and MOBI are told
apart the same way), told from their bytes; Office files refused with the conversion to run."""

from __future__ import annotations

import io
import zipfile

import pytest
from mcp import Client
from PIL import Image

from mcp_vision.errors import InputError
from mcp_vision.inputs.pdf import document_type, open_document
from mcp_vision.inputs.sources import Media, sniff
from mcp_vision.server import build_server

pytestmark = pytest.mark.anyio

CHAPTER = "The lighthouse keeper counted forty ships in the harbour that night."


def _zip(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def epub() -> bytes:
    return _zip({
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": '<?xml version="1.0"?><container version="1.0" '
        'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="content.opf" '
        'media-type="application/oebps-package+xml"/></rootfiles></container>',
        "content.opf": '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="2.0" '
        'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Harbour</dc:title>'
        '<dc:identifier id="id">x</dc:identifier></metadata><manifest><item id="c1" href="c1.xhtml" '
        'media-type="application/xhtml+xml"/></manifest><spine><itemref idref="c1"/></spine></package>',
        "c1.xhtml": f'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body><h1>Chapter One</h1>'
        f"<p>{CHAPTER}</p></body></html>",
    })


def fb2() -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0">'
        f"<body><section><title><p>Chapter One</p></title><p>{CHAPTER}</p></section></body></FictionBook>"
    ).encode()


def svg() -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="200"><text x="10" y="50" font-size="16">'
        f"{CHAPTER}</text></svg>"
    ).encode()


def cbz() -> bytes:
    pages = {}
    for n in (1, 2):
        buf = io.BytesIO()
        Image.new("RGB", (200, 300), (250, 250, 250 - 40 * n)).save(buf, "PNG")
        pages[f"page{n}.png"] = buf.getvalue()
    return _zip(pages)


def _media(data: bytes, label: str = "'book'") -> Media:
    return Media(data=data, label=label, kind=sniff(data))


@pytest.mark.parametrize(("build", "filetype"), [(epub, "epub"), (fb2, "fb2"), (svg, "svg")])
def test_reflowable_and_vector_documents_open_with_their_text(build, filetype):
    media = _media(build())
    assert document_type(media) == filetype
    with open_document(media) as doc:
        assert doc.page_count >= 1 and CHAPTER in " ".join(doc.text_layer(1).split())


def test_a_comic_book_archive_is_pages_of_pictures():
    media = _media(cbz())
    assert document_type(media) == "cbz"
    with open_document(media) as doc:
        assert doc.page_count == 2 and not doc.has_text_layer(1)
        assert doc.render(2, 72, 10_000_000).size[0] > 0


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_zip({"[Content_Types].xml": "<Types/>", "word/document.xml": "<w:document/>"}), "Word (DOCX)"),
        (_zip({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}), "Excel (XLSX)"),
        (_zip({"[Content_Types].xml": "<Types/>", "ppt/presentation.xml": "<p/>"}), "PowerPoint (PPTX)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "Microsoft Office (DOC, XLS or PPT)"),
    ],
)
def test_office_files_are_refused_with_the_conversion_to_run(data, named):
    with pytest.raises(InputError) as refused:
        open_document(_media(data, "'report.docx'"))
    message = str(refused.value)
    assert message.startswith(f"'report.docx' is a {named} file") and "soffice --headless --convert-to pdf" in message
    assert "\n" not in message


def test_other_files_are_still_refused_in_one_sentence():
    for data in (b"just some bytes", _zip({"notes.txt": "hello"})):
        with pytest.raises(InputError, match="not a PDF or another document PyMuPDF reads: pass a PDF"):
            open_document(_media(data, "'x.bin'"))


async def test_ocr_document_reads_an_epub_as_markdown(settings, tiny_backend, media_dir):
    book = media_dir / "harbour.epub"
    book.write_bytes(epub())
    docx = media_dir / "report.docx"
    docx.write_bytes(_zip({"word/document.xml": "<w:document/>"}))
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(book)})
        refused = await client.call_tool("ocr_document", {"document": str(docx)})
    assert not r.is_error, r.content[0].text
    [page] = r.structured_content["pages"]
    assert page["method"] == "layout" and CHAPTER in " ".join(page["text"].split())
    assert refused.is_error and "soffice --headless --convert-to pdf" in refused.content[0].text
