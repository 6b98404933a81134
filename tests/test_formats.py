"""The image formats: each format in `inputs.formats.FORMATS` is read, every other format Pillow can write is
refused, and the refusal, the describe_image description, the README and server.json name exactly that list.
Phone photos (HEIC) and scans (JPEG 2000) go through describe_image upright, in the decoder processes; damaged
HEICs are one sentence each and the server keeps serving."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest
from mcp import Client
from PIL import Image

from mcp_vision.errors import InputError
from mcp_vision.inputs.formats import FORMATS, ImageFormat, names
from mcp_vision.inputs.images import decode_image, readable
from mcp_vision.inputs.sources import Media, sniff
from mcp_vision.server import build_server
from mcp_vision.settings import Settings

from . import hostile

ROOT = Path(__file__).resolve().parent.parent
BIG = 10_000_000
RED, BLUE = (220, 20, 20), (20, 20, 220)
ORIENTATION = 0x0112
ROTATED_90 = 6  # EXIF: shown turned 90 degrees clockwise, as a phone held upright stores it


def _halves(size: tuple[int, int] = (40, 20)) -> Image.Image:
    """Red on the left, blue on the right: after any turn, where the red lands says which way it went."""
    img = Image.new("RGB", size, RED)
    img.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return img


def _encode(fmt: ImageFormat, img: Image.Image, **save: object) -> bytes:
    if fmt.pillow == ("HEIF",):
        return hostile.heic(img, **save)  # pillow-heif writes it; Pillow alone cannot
    if fmt.pillow == ("ICO",):
        save.setdefault("sizes", [img.size])  # else Pillow writes only the standard sizes below it
    buf = io.BytesIO()
    img.save(buf, fmt.pillow[0], **save)
    return buf.getvalue()


def _decode(data: bytes, label: str = "'picture'"):
    return decode_image(Media(data, label, sniff(data)), BIG)


def _reddish(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 150 and pixel[2] < 80


def _bluish(pixel: tuple[int, ...]) -> bool:
    return pixel[2] > 150 and pixel[0] < 80


def test_this_install_reads_every_format_in_the_list():
    """pillow-heif is a dependency and Pillow's wheels carry AVIF and OpenJPEG: nothing in the list is missing."""
    assert readable() == FORMATS


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_named_format_is_read_with_its_pixels_in_place(fmt):
    data = _encode(fmt, _halves())
    assert sniff(data) == "image"  # recognised by its bytes, so ocr_document treats it as a page image too
    out = _decode(data)
    assert out.format in fmt.pillow
    assert (out.width, out.height) == (40, 20)
    assert _reddish(out.image.getpixel((5, 10))) and _bluish(out.image.getpixel((35, 10)))


def _pillow_writes(fmt: str) -> bytes | None:
    """A small image in `fmt` as Pillow writes it, or None when it writes none of these modes."""
    for mode in ("RGB", "L", "1"):
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # formats Pillow will drop (IM) still count
                Image.new(mode, (16, 16)).save(buf, fmt)
        except Exception:
            continue
        return buf.getvalue()
    return None


def test_every_other_format_pillow_writes_is_refused_naming_exactly_the_list():
    readable()  # with pillow-heif's writer registered too, so HEIF is among the formats skipped as read
    ours = {p for f in FORMATS for p in f.pillow}
    # MPO is a JPEG (read as one); a PDF goes to ocr_document (refused with that advice elsewhere).
    others = sorted(set(Image.SAVE) - ours - {"MPO", "PDF"})
    refused = []
    for fmt in others:
        data = _pillow_writes(fmt)
        if data is None:
            continue
        with pytest.raises(InputError) as caught:
            _decode(data, "'other.img'")
        assert str(caught.value) == f"'other.img' is not an image in a supported format ({names()}).", fmt
        refused.append(fmt)
    assert {"EPS", "TGA", "PCX", "QOI"} <= set(refused), refused  # the check really ran over Pillow's formats


def _flat(text: str) -> str:
    return " ".join(text.split())


def _lists_of_formats(text: str) -> tuple[int, int]:
    """How often `text` names the whole list, and how often it names an image format list at all (any text
    naming WebP is one): equal when every list it holds is the whole list."""
    flat = _flat(text)
    return flat.count(names()), flat.lower().count("webp")


async def _tool_descriptions() -> dict[str, str]:
    async with Client(build_server(Settings())) as client:
        listed = await client.list_tools()
    return {tool.name: tool.description or "" for tool in listed.tools}


@pytest.mark.anyio
async def test_readme_server_json_and_the_tool_descriptions_name_exactly_the_formats_read():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    server_json = json.dumps(json.loads((ROOT / "server.json").read_text(encoding="utf-8")))
    descriptions = await _tool_descriptions()
    whole, named = _lists_of_formats(readme)
    assert whole >= 1 and whole == named, "the README's format lists must be inputs.formats.names()"
    whole, named = _lists_of_formats(server_json)
    assert whole == named, "server.json names image formats other than inputs.formats.names()"
    assert _flat(names()) in _flat(descriptions["describe_image"])
    whole, named = _lists_of_formats(" ".join(descriptions.values()))
    assert whole == named, "a tool description names image formats other than inputs.formats.names()"
    # And the list is what is read (test_this_install_reads_every_format_in_the_list): the texts tell the truth.


# ------------------------------------------------------------------ through describe_image, in decoder processes

FAST = {"max_new_tokens": 1, "max_tiles": 1}


def _orient(degrees: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = degrees
    return exif.tobytes()


def test_a_phone_photo_turned_by_exif_comes_out_upright_once():
    """A HEIC stored sideways with its turn recorded comes out as a JPEG with the same record does: turned once
    (pillow-heif applies the turn; the EXIF tag it leaves must not turn it a second time)."""
    heic = next(f for f in FORMATS if f.pillow == ("HEIF",))
    jpeg = next(f for f in FORMATS if f.pillow == ("JPEG",))
    for fmt in (jpeg, heic):
        out = _decode(_encode(fmt, _halves(), exif=_orient(ROTATED_90)))
        assert (out.width, out.height) == (20, 40), fmt.name
        # Turned clockwise, the left (red) half is on top.
        assert _reddish(out.image.getpixel((10, 5))) and _bluish(out.image.getpixel((10, 35))), fmt.name


@pytest.mark.anyio
async def test_heic_and_jpeg_2000_through_describe_image(settings, tiny_backend, media_dir):
    photo = media_dir / "IMG_0001.HEIC"
    photo.write_bytes(hostile.heic(_halves(), exif=_orient(ROTATED_90)))
    scan = media_dir / "scan.jp2"
    scan.write_bytes(_encode(next(f for f in FORMATS if f.pillow == ("JPEG2000",)), _halves()))
    assert settings.isolate_decoding  # decoded in the decoder processes, under their limits
    async with Client(build_server(settings, tiny_backend)) as client:
        described_photo = await client.call_tool("describe_image", {"image": str(photo), **FAST})
        described_scan = await client.call_tool("describe_image", {"image": str(scan), **FAST})
        read_scan = await client.call_tool("ocr_document", {"document": str(scan), "max_new_tokens": 1})
    assert not described_photo.is_error, described_photo.content
    assert described_photo.structured_content["image"] == {"width": 20, "height": 40, "format": "HEIF"}
    assert not described_scan.is_error, described_scan.content
    assert described_scan.structured_content["image"] == {"width": 40, "height": 20, "format": "JPEG2000"}
    assert not read_scan.is_error, read_scan.content
    assert read_scan.structured_content["page_count"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "threads"])
async def test_a_damaged_heic_is_one_sentence_and_the_next_photo_is_read(settings, tiny_backend, media_dir, isolate):
    truncated = media_dir / "truncated.heic"
    truncated.write_bytes(hostile.truncated_heic())
    garbled = media_dir / "garbled.heic"
    garbled.write_bytes(hostile.garbled_heic())
    good = media_dir / "good.heic"
    good.write_bytes(hostile.heic())
    async with Client(build_server(settings.with_overrides(isolate_decoding=isolate), tiny_backend)) as client:
        cut = await client.call_tool("describe_image", {"image": str(truncated), **FAST})
        scrambled = await client.call_tool("describe_image", {"image": str(garbled), **FAST})
        after = await client.call_tool("describe_image", {"image": str(good), **FAST})
    for result, path in ((cut, truncated), (scrambled, garbled)):
        assert result.is_error and len(result.content) == 1
        text = result.content[0].text
        assert text.count(". ") == 0 and "\n" not in text and "Traceback" not in text, text  # one sentence
        assert f"'{path}'" in text, text
    assert f"'{truncated}' is a corrupt or truncated image (" in cut.content[0].text
    assert (
        f"'{garbled}' has the signature of HEIF/HEIC but its header cannot be read: the file is truncated or damaged"
        in scrambled.content[0].text
    )
    assert not after.is_error, after.content
    assert after.structured_content["image"] == {"width": 96, "height": 96, "format": "HEIF"}


def test_a_still_heic_or_avif_is_not_a_video():
    """FFmpeg would read a still picture as a one-frame video, past the pixel limit its header claims."""
    from mcp_vision.inputs.video import demuxer_for

    assert demuxer_for(hostile.heic()) is None
    assert demuxer_for(hostile.heic_bomb()) is None
    assert demuxer_for(_encode(next(f for f in FORMATS if f.pillow == ("AVIF",)), _halves())) is None
    assert demuxer_for(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 8) == "mov"


def test_a_heif_in_a_coding_libheif_lacks_says_so_and_what_to_save_it_as():
    """HEIF holds AV1 too; one labelled HEIC (so Pillow's AVIF decoder passes it by) reaches libheif, built without
    AV1: the refusal quotes libheif and lists the formats read."""
    avif = _encode(next(f for f in FORMATS if f.pillow == ("AVIF",)), _halves())
    relabelled = avif[:8] + b"heic" + avif[12:]
    with pytest.raises(InputError) as refused:
        _decode(relabelled, "'av1.heic'")
    text = str(refused.value)
    assert text.startswith("'av1.heic' could not be decoded (") and "AV1" in text, text
    assert text.endswith(f": re-save it as {names()}."), text
