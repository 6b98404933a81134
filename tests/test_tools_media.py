"""ocr_document, compare_images and video_qa end to end: the in-memory client, the real backend on the
tiny InternVL, documents, images and videos built here."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mcp import Client
from PIL import Image, ImageDraw

from mcp_vision.server import build_server

pytestmark = pytest.mark.anyio

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Invoice number 4711 is due on the first of March.",
    "Page three holds the closing remarks of this report.",
]


def _pdf(path: Path, *, scanned_page: bool = False, encrypt: bool = False) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for sentence in SENTENCES:
        page = doc.new_page()
        page.insert_text((72, 100), sentence, fontsize=12)
    if scanned_page:
        page = doc.new_page()
        scan = Image.new("RGB", (800, 300), "white")
        ImageDraw.Draw(scan).text((20, 120), "SCANNED TEXT ONLY AS PIXELS", fill="black")
        buf = io.BytesIO()
        scan.save(buf, format="PNG")
        page.insert_image(page.rect, stream=buf.getvalue())
    kwargs = {}
    if encrypt:
        kwargs = {"encryption": pymupdf.PDF_ENCRYPT_AES_256, "user_pw": "secret", "owner_pw": "owner"}
    doc.save(path, **kwargs)
    return path


def _text_layer(path: Path, page: int) -> str:
    import pymupdf

    with pymupdf.open(path) as doc:
        return doc[page - 1].get_text("text")


async def test_ocr_born_digital_pages_return_the_exact_text_layer(settings, tiny_backend, media_dir):
    pdf = _pdf(media_dir / "report.pdf")
    progress: list[tuple] = []

    async def on_progress(p, total, message):
        progress.append((p, total, message))

    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "1-2"}, progress_callback=on_progress)
    assert not r.is_error, r.content
    data = r.structured_content
    assert data["page_count"] == 3
    assert [p["page"] for p in data["pages"]] == [1, 2]
    assert all(p["method"] == "text_layer" for p in data["pages"])
    assert data["pages"][0]["text"] == _text_layer(pdf, 1)
    assert SENTENCES[1] in data["pages"][1]["text"]
    assert len(progress) >= 2
    values = [p for p, _, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values), "progress must strictly increase"


async def test_ocr_scanned_page_is_read_by_the_model(settings, tiny_backend, media_dir):
    pdf = _pdf(media_dir / "mixed.pdf", scanned_page=True)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "3-4", "dpi": 72, "max_new_tokens": 16})
        sid = r.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "What is on page 4?"})
    assert not r.is_error, r.content
    methods = {p["page"]: p["method"] for p in r.structured_content["pages"]}
    assert methods == {3: "text_layer", 4: "vision"}
    assert not follow.is_error
    # The rendered page is in the session: the follow-up prompt carries its image tokens.
    assert follow.structured_content["usage"]["image_tokens"] > 0


async def test_ocr_modes_can_be_forced(settings, tiny_backend, media_dir):
    pdf = _pdf(media_dir / "r.pdf")
    async with Client(build_server(settings, tiny_backend)) as client:
        vision = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "2", "mode": "vision", "dpi": 72, "max_new_tokens": 16})
        layer = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "2", "mode": "text_layer"})
    assert vision.structured_content["pages"][0]["method"] == "vision"
    assert layer.structured_content["pages"][0]["method"] == "text_layer"


async def test_ocr_accepts_an_image_as_the_document(settings, tiny_backend, media_dir):
    page = media_dir / "page.png"
    Image.new("RGB", (600, 800), "white").save(page)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(page), "max_new_tokens": 16})
    assert not r.is_error, r.content
    assert r.structured_content["page_count"] == 1
    assert r.structured_content["pages"][0]["method"] == "vision"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"pages": "9"}, "3 pages"),
        ({"pages": "2-1"}, "3 pages"),
        ({"pages": "x"}, "3 pages"),
    ],
)
async def test_ocr_bad_page_ranges_state_the_page_count(settings, tiny_backend, media_dir, args, expected):
    pdf = _pdf(media_dir / "p.pdf")
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), **args})
    assert r.is_error and expected in r.content[0].text


async def test_ocr_refuses_encrypted_and_fake_pdfs(settings, tiny_backend, media_dir):
    import zipfile

    locked = _pdf(media_dir / "locked.pdf", encrypt=True)
    fake = media_dir / "fake.pdf"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("hello.txt", "not a pdf")
    async with Client(build_server(settings, tiny_backend)) as client:
        r1 = await client.call_tool("ocr_document", {"document": str(locked)})
        r2 = await client.call_tool("ocr_document", {"document": str(fake)})
        r3 = await client.call_tool("ocr_document", {"document": str(_pdf(media_dir / "ok.pdf")), "pages": "1"})
    assert r1.is_error and "password" in r1.content[0].text
    assert r2.is_error
    assert not r3.is_error


async def test_ocr_output_cap_truncates_with_a_note(tiny_model_dir, tiny_backend, media_dir, settings):
    pdf = _pdf(media_dir / "long.pdf")
    capped = settings.with_overrides(max_output_chars=1000)
    import pymupdf

    doc = pymupdf.open(pdf)
    for _ in range(3):
        page = doc.new_page()
        page.insert_textbox(page.rect + (36, 36, -36, -36), "lorem ipsum dolor sit amet " * 60, fontsize=9)
    doc.save(media_dir / "longer.pdf")
    async with Client(build_server(capped, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(media_dir / "longer.pdf"), "mode": "text_layer"})
    data = r.structured_content
    assert data["truncated"] is True and "pages=" in data["note"]
    assert sum(len(p["text"]) for p in data["pages"]) <= 1000


def _before_after(media_dir: Path) -> tuple[Path, Path]:
    base = Image.new("RGB", (640, 480), (230, 230, 230))
    draw = ImageDraw.Draw(base)
    for x in range(0, 640, 40):
        draw.line([(x, 0), (x, 479)], fill=(180, 180, 200))
    after = base.copy()
    ImageDraw.Draw(after).rectangle([200, 150, 300, 230], fill=(220, 30, 30))
    a, b = media_dir / "before.png", media_dir / "after.png"
    base.save(a)
    after.save(b)
    return a, b


async def test_compare_finds_the_drawn_rectangle(settings, tiny_backend, media_dir):
    a, b = _before_after(media_dir)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("compare_images", {"images": [str(a), str(b)]})
        same = await client.call_tool("compare_images", {"images": [str(a), str(a)]})
    assert not r.is_error, r.content
    diff = r.structured_content["diffs"][0]
    assert diff["image"] == 2 and diff["similarity"] < 1.0
    assert len(diff["regions"]) == 1
    box = diff["regions"][0]
    assert box["x"] <= 200 and box["y"] <= 150
    assert box["x"] + box["width"] >= 300 and box["y"] + box["height"] >= 230
    assert box["width"] < 100 + 40 and box["height"] < 80 + 40
    assert r.structured_content["session_id"].startswith("vs_")
    assert same.structured_content["diffs"][0]["similarity"] == 1.0
    assert same.structured_content["diffs"][0]["regions"] == []


async def test_compare_needs_two_to_four_images(settings, tiny_backend, media_dir):
    a, _ = _before_after(media_dir)
    async with Client(build_server(settings, tiny_backend)) as client:
        one = await client.call_tool("compare_images", {"images": [str(a)]})
        five = await client.call_tool("compare_images", {"images": [str(a)] * 5})
    assert one.is_error and five.is_error


def _mp4(path: Path, colors: list[tuple[int, int, int]], fps: int = 10, seconds_each: int = 1) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for color in colors:
            for _ in range(fps * seconds_each):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), color, dtype=np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


async def test_video_qa_samples_frames_with_ascending_timestamps(settings, tiny_backend, media_dir):
    clip = _mp4(media_dir / "clip.mp4", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)])
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("video_qa", {"video": str(clip), "question": "What changes?", "num_frames": 4})
        sid = r.structured_content["session_id"]
        follow = await client.call_tool("follow_up", {"session_id": sid, "question": "And the last frame?"})
    assert not r.is_error, r.content
    data = r.structured_content
    assert [f["index"] for f in data["frames"]] == [1, 2, 3, 4]
    stamps = [f["timestamp"] for f in data["frames"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert 3.5 <= data["duration"] <= 4.5
    assert data["usage"]["image_tokens"] == 4 * 256  # one tile per frame
    assert not follow.is_error


async def test_video_qa_reads_an_animated_gif_and_refuses_text(settings, tiny_backend, media_dir):
    gif = media_dir / "anim.gif"
    frames = [Image.new("RGB", (80, 60), c) for c in ("red", "green", "blue")]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=300, loop=0)
    text = media_dir / "notes.txt"
    text.write_text("just words")
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("video_qa", {"video": str(gif), "num_frames": 3})
        bad = await client.call_tool("video_qa", {"video": str(text)})
    assert not r.is_error, r.content
    assert len(r.structured_content["frames"]) == 3
    assert bad.is_error and "\n" not in bad.content[0].text


def _tiff(path: Path, pages: int) -> Path:
    frames = [Image.new("RGB", (300 + 40 * i, 420), (255, 255 - 60 * i, 255)) for i in range(pages)]
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "threads"])
async def test_ocr_reads_every_page_of_a_multipage_tiff(settings, tiny_backend, media_dir, isolate):
    tiff = _tiff(media_dir / "fax.tiff", 3)
    server = build_server(settings.with_overrides(isolate_decoding=isolate), tiny_backend)
    async with Client(server) as client:
        every = await client.call_tool("ocr_document", {"document": str(tiff), "max_new_tokens": 4})
        second = await client.call_tool("ocr_document", {"document": str(tiff), "pages": "2", "max_new_tokens": 4})
        beyond = await client.call_tool("ocr_document", {"document": str(tiff), "pages": "4"})
        layer = await client.call_tool("ocr_document", {"document": str(tiff), "mode": "text_layer"})
    assert not every.is_error, every.content[0].text
    data = every.structured_content
    assert data["page_count"] == 3 and [p["page"] for p in data["pages"]] == [1, 2, 3]
    assert all(p["method"] == "vision" for p in data["pages"])
    assert not second.is_error and [p["page"] for p in second.structured_content["pages"]] == [2]
    assert beyond.is_error and "3 pages" in beyond.content[0].text
    assert layer.is_error and "no text layer" in layer.content[0].text


async def test_forcing_the_text_layer_of_a_scanned_page_says_it_has_none(settings, tiny_backend, media_dir):
    pdf = _pdf(media_dir / "mixed.pdf", scanned_page=True)
    async with Client(build_server(settings, tiny_backend)) as client:
        r = await client.call_tool("ocr_document", {"document": str(pdf), "pages": "3-4", "mode": "text_layer"})
    assert not r.is_error, r.content[0].text
    assert r.structured_content["pages"][1]["text"].strip() == ""
    assert "Page 4 has no real text layer" in r.structured_content["note"] and "mode='auto'" in r.structured_content["note"]
