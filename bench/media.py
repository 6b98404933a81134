"""The benchmark's inputs, made offline and deterministically: photos, PDFs and a video."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

PHOTO_SIZE = (1024, 768)  # 4:3: 12 tiles + thumbnail at the default budget, 6 + 1 at 6
VIDEO_SIZE = (640, 480)
VIDEO_FPS = 8
VIDEO_SCENES = 8  # one scene a second; both frame samplers land in each scene once
PAGE_DPI = 150

WORDS = (
    "invoice total amount due payment terms shipping address quantity unit price subtotal tax discount "
    "order number customer reference delivery date account balance statement period description item "
    "service consulting hours licence renewal support contract warehouse region quarter revenue margin"
).split()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def photo(variant: int = 0, changed: bool = False) -> Image.Image:
    """A synthetic 4:3 scene: gradient sky, shapes and a sign with text."""
    w, h = PHOTO_SIZE
    rng = random.Random(variant)
    img = Image.new("RGB", (w, h))
    top = (40 + 60 * variant, 90, 200 - 40 * variant)
    bottom = (230, 200 - 30 * variant, 150)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / (h - 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(6):
        x, y, r = rng.randrange(w), rng.randrange(h // 2, h), rng.randrange(30, 110)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    box = (620, 120, 900, 300) if not changed else (560, 380, 840, 560)
    draw.rectangle(box, fill=(250, 250, 245), outline=(20, 20, 20), width=6)
    label = f"SALE {30 + variant}%" if not changed else "CLOSED"
    draw.text((box[0] + 30, box[1] + 60), label, fill=(200, 20, 20), font=_font(48))
    draw.polygon([(120, 420), (260, 180), (400, 420)], fill=(60, 110, 60))
    return img


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(40, 70))).capitalize() + "." for _ in range(count)]


def digital_pdf(path: Path, pages: int = 10) -> Path:
    """A born-digital PDF: every page has a real text layer (heading, paragraphs, a small table)."""
    import pymupdf

    rng = random.Random(7)
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=612, height=792)  # US Letter
        page.insert_text((72, 80), f"Quarterly statement - page {number}", fontsize=18, fontname="helv")
        text = "\n\n".join(_paragraphs(rng, 4))
        page.insert_textbox(pymupdf.Rect(72, 110, 540, 560), text, fontsize=10.5, fontname="helv")
        for row in range(6):
            y = 590 + row * 22
            cells = [f"Item {row + 1}", f"{rng.randrange(1, 40)}", f"{rng.uniform(5, 900):.2f}"]
            for col, cell in enumerate(cells):
                page.insert_text((72 + col * 150, y), cell, fontsize=10.5, fontname="helv")
    doc.save(path)
    doc.close()
    return path


def _scanned_page(rng: random.Random, number: int) -> Image.Image:
    """A page image as a scanner makes it: greyish paper, text, slight blur and skew, noise."""
    w, h = int(8.5 * PAGE_DPI), int(11 * PAGE_DPI)
    img = Image.new("L", (w, h), 238)
    draw = ImageDraw.Draw(img)
    draw.text((150, 140), f"Delivery note {1000 + number}", fill=20, font=_font(44))
    y = 260
    body = _font(26)
    for paragraph in _paragraphs(rng, 5):
        words, line = paragraph.split(), ""
        for word in words:
            if len(line) + len(word) > 70:
                draw.text((150, y), line, fill=35, font=body)
                y, line = y + 38, ""
            line += word + " "
        draw.text((150, y), line, fill=35, font=body)
        y += 70
    img = img.rotate(0.6, fillcolor=238, resample=Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(0.6))
    noise = Image.effect_noise((w, h), 10).point(lambda v: v - 128)
    return Image.merge("RGB", [Image.blend(img, noise.convert("L"), 0.06)] * 3)


def scanned_pdf(path: Path, pages: int = 4) -> Path:
    """An image-only PDF (no text layer), one 150 dpi page image a page."""
    import io

    import pymupdf

    rng = random.Random(11)
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        buffer = io.BytesIO()
        _scanned_page(rng, number).save(buffer, format="JPEG", quality=85)
        page = doc.new_page(width=612, height=792)
        page.insert_image(page.rect, stream=buffer.getvalue())
    doc.save(path)
    doc.close()
    return path


def video(path: Path) -> Path:
    """An H.264 MP4 of 8 one-second scenes at 8 fps (64 frames)."""
    import av
    import numpy as np

    rng = random.Random(3)
    w, h = VIDEO_SIZE
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qp": "0", "g": str(VIDEO_FPS)}  # lossless: a scene's frames decode identically
        for scene in range(VIDEO_SCENES):
            img = Image.new("RGB", (w, h), tuple(rng.randrange(40, 200) for _ in range(3)))
            draw = ImageDraw.Draw(img)
            x = 60 + scene * 60
            draw.ellipse([x, 180, x + 140, 320], fill=(250, 240, 60))
            draw.text((40, 40), f"Scene {scene + 1}", fill=(255, 255, 255), font=_font(40))
            frame_array = np.asarray(img)
            for _ in range(VIDEO_FPS):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame_array, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_inputs(directory: Path) -> dict[str, str]:
    """Write every input once into `directory`; return their paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "photo": directory / "photo.png",
        "photo_b": directory / "photo_b.png",
        "photo_changed": directory / "photo_changed.png",
        "digital_pdf": directory / "digital-10-pages.pdf",
        "scanned_pdf": directory / "scanned-4-pages.pdf",
        "video": directory / "video-8s.mp4",
    }
    if not paths["photo"].exists():
        photo(0).save(paths["photo"])
    if not paths["photo_b"].exists():
        photo(1).save(paths["photo_b"])
    if not paths["photo_changed"].exists():
        photo(0, changed=True).save(paths["photo_changed"])
    if not paths["digital_pdf"].exists():
        digital_pdf(paths["digital_pdf"])
    if not paths["scanned_pdf"].exists():
        scanned_pdf(paths["scanned_pdf"])
    if not paths["video"].exists():
        video(paths["video"])
    return {name: str(p) for name, p in paths.items()}


__all__ = ["make_inputs", "PAGE_DPI"]
