"""sample_frames on tiny clips encoded in memory with PyAV and Pillow: containers, spans, GIF/APNG
timing, downscaling, rotation and every error an agent can get."""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import numpy as np
import pytest
from PIL import Image

from mcp_vision.errors import InputError
from mcp_vision.inputs.sources import Media, sniff
from mcp_vision.inputs.video import demuxer_for, sample_frames

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
SECONDS = [RED, GREEN, BLUE, WHITE, BLACK]  # one colour per second of the standard clip


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:
        return False
    return True


def _encode(
    fmt: str = "mp4",
    codec: str = "libx264",
    *,
    size: tuple[int, int] = (64, 48),
    fps: int = 10,
    colours: Sequence[tuple[int, int, int]] = SECONDS,
    frames_per_colour: int | None = None,
    rotation: int | None = None,
) -> bytes:
    """A clip showing each colour for one second (or `frames_per_colour` frames)."""
    if not _has_encoder(codec):
        pytest.skip(f"the {codec} encoder is not available in this PyAV build")
    per = frames_per_colour or fps
    width, height = size
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for colour in colours:
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), colour, np.uint8), format="rgb24")
            for _ in range(per):
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return _encode()


def _media(data: bytes, label: str = "'clip.mp4'") -> Media:
    return Media(data=data, label=label, kind=sniff(data))


def _mean(img: Image.Image) -> tuple[float, ...]:
    return tuple(np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0))


def _is(img: Image.Image, colour: tuple[int, int, int], tol: float = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(_mean(img), colour, strict=True))


def _error(data: bytes, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        sample_frames(_media(data), *args, **kwargs)
    return str(info.value)


# --- sampling -------------------------------------------------------------------------------------


def test_mp4_five_frames_one_per_second(mp4):
    out = sample_frames(_media(mp4), 5, None, None)
    assert len(out.frames) == 5
    assert out.timestamps == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5], abs=0.11)
    assert out.timestamps == sorted(out.timestamps)
    for frame, colour in zip(out.frames, SECONDS, strict=True):
        assert frame.mode == "RGB"
        assert frame.size == (64, 48)
        assert _is(frame, colour)
    assert out.duration == pytest.approx(5.0, abs=0.11)
    assert (out.width, out.height, out.container) == (64, 48, "mov")


@pytest.mark.parametrize(
    ("fmt", "codec", "demuxer"),
    [("webm", "libvpx-vp9", "matroska"), ("matroska", "libx264", "matroska"), ("avi", "mpeg4", "avi")],
)
def test_other_containers(fmt, codec, demuxer):
    data = _encode(fmt, codec)
    out = sample_frames(_media(data, "'clip'"), 5, None, None)
    assert out.container == demuxer
    assert out.timestamps == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5], abs=0.11)
    assert [_is(f, c) for f, c in zip(out.frames, SECONDS, strict=True)] == [True] * 5


def test_sub_span_samples_inside_it(mp4):
    out = sample_frames(_media(mp4), 4, 1.0, 3.0)
    assert all(1.0 <= t <= 3.0 for t in out.timestamps)
    assert out.timestamps == sorted(out.timestamps)
    assert [_is(f, c) for f, c in zip(out.frames, [GREEN, GREEN, BLUE, BLUE], strict=True)] == [True] * 4


def test_start_only_and_end_past_the_end(mp4):
    tail = sample_frames(_media(mp4), 2, 3.0, None)
    assert all(t >= 3.0 for t in tail.timestamps)
    assert _is(tail.frames[0], WHITE) and _is(tail.frames[1], BLACK)
    clamped = sample_frames(_media(mp4), 5, 0.0, 100.0)
    assert clamped.timestamps == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5], abs=0.11)


def test_many_frames_are_distinct_and_ascending(mp4):
    out = sample_frames(_media(mp4), 32, None, None)
    assert len(out.frames) == 32
    assert len(set(out.timestamps)) == 32
    assert out.timestamps == sorted(out.timestamps)
    assert 0.0 <= out.timestamps[0] and out.timestamps[-1] < 5.0


def test_more_frames_than_the_clip_has_repeats_frames_in_order():
    data = _encode(colours=[RED, GREEN, BLUE], frames_per_colour=1)  # 3 frames, 0.3 s
    out = sample_frames(_media(data), 7, None, None)
    assert len(out.frames) == 7
    assert out.timestamps == sorted(out.timestamps)
    assert set(out.timestamps) == {0.0, 0.1, 0.2}
    assert _is(out.frames[0], RED) and _is(out.frames[-1], BLUE)


def test_large_frames_are_downscaled():
    data = _encode(size=(1920, 1080), colours=[RED, BLUE], frames_per_colour=2, fps=4)
    out = sample_frames(_media(data), 2, None, None, max_side=896)
    assert (out.width, out.height) == (1920, 1080)
    for frame in out.frames:
        assert max(frame.size) <= 896
        assert frame.size == (896, 504)
    assert _is(out.frames[0], RED) and _is(out.frames[1], BLUE)
    small = sample_frames(_media(data), 1, None, None, max_side=100)
    assert small.frames[0].size == (100, 56)


def test_display_rotation_is_applied():
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix")
    # Left half red, right half blue; a quarter turn counter-clockwise puts red at the bottom.
    width, height = 64, 32
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = RED
    array[:, width // 2 :] = BLUE
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = sample_frames(_media(buf.getvalue()), 1, None, None)
    frame = out.frames[0]
    assert frame.size == (32, 64) and (out.width, out.height) == (32, 64)
    assert _is(frame.crop((0, 40, 32, 64)), RED, tol=20)
    assert _is(frame.crop((0, 0, 32, 24)), BLUE, tol=20)


# --- GIF and APNG ---------------------------------------------------------------------------------

ANIMATION = [RED, GREEN, BLUE, WHITE]
DURATIONS_MS = [200, 300, 100, 400]  # frames start at 0.0, 0.2, 0.5 and 0.6 s; 1.0 s in all


def _animation(fmt: str) -> bytes:
    frames = [Image.new("RGB", (24, 16), c) for c in ANIMATION]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=DURATIONS_MS, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "demuxer"), [("GIF", "gif"), ("PNG", "apng")])
def test_animation_timestamps_follow_frame_durations(fmt, demuxer):
    data = _animation(fmt)
    assert sniff(data) == "image"  # sample_frames must take it anyway
    out = sample_frames(_media(data, "'anim'"), 5, None, None)  # targets 0.1, 0.3, 0.5, 0.7, 0.9 s
    assert out.container == demuxer
    assert out.duration == pytest.approx(1.0, abs=0.011)
    assert out.timestamps == pytest.approx([0.0, 0.2, 0.5, 0.6, 0.6], abs=0.011)
    expected = [RED, GREEN, BLUE, WHITE, WHITE]
    assert [_is(f, c, tol=3) for f, c in zip(out.frames, expected, strict=True)] == [True] * 5
    assert (out.width, out.height) == (24, 16)


def test_transparent_gif_is_composited_over_white():
    frames = []
    for colour in (RED, BLUE):
        frame = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
        frame.paste(colour + (255,), (0, 0, 8, 16))
        frames.append(frame)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, disposal=2)
    out = sample_frames(_media(buf.getvalue()), 2, None, None)
    assert [f.getpixel((2, 2)) for f in out.frames] == [RED, BLUE]
    assert [f.getpixel((12, 12)) for f in out.frames] == [WHITE, WHITE]


def test_demuxer_is_chosen_from_magic_bytes():
    assert demuxer_for(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 8) == "mov"
    assert demuxer_for(b"\x1a\x45\xdf\xa3" + b"\x00" * 8) == "matroska"
    assert demuxer_for(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert demuxer_for(b"GIF89a" + b"\x00" * 8) == "gif"
    assert demuxer_for(_animation("PNG")) == "apng"
    still = io.BytesIO()
    Image.new("RGB", (4, 4)).save(still, "PNG")
    assert demuxer_for(still.getvalue()) is None
    for other in (b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://example.com/a.ts\n", b"ffconcat version 1.0\nfile a.mp4\n",
                  b"\x00\x00\x01\xba" + b"\x00" * 16, b"RIFF\x00\x00\x00\x00WEBPVP8 ", b""):
        assert demuxer_for(other) is None


# --- errors ---------------------------------------------------------------------------------------


def test_text_and_playlists_are_not_videos():
    for data in (b"just some text, not a video\n" * 4, b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n"):
        message = _error(data, 3, None, None)
        assert "'clip.mp4' is not a video in a supported format" in message
        assert "MP4" in message and "WebM" in message and "GIF" in message


def test_still_png_is_not_a_video():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(buf, "PNG")
    assert "not a video in a supported format" in _error(buf.getvalue(), 1, None, None)


def test_truncated_mp4_is_corrupt(mp4):
    message = _error(mp4[: len(mp4) // 2], 3, None, None)
    assert message.startswith("'clip.mp4' is a corrupt or truncated video")


def test_garbage_after_a_valid_magic_is_corrupt():
    for data in (b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4, b"\x1a\x45\xdf\xa3" + b"\xff" * 300,
                 b"GIF89a" + b"\x01" * 40):
        assert "corrupt or truncated video" in _error(data, 2, None, None)


@pytest.mark.parametrize("count", [0, -1, 33])
def test_num_frames_out_of_range(mp4, count):
    assert "ask for 1 to 32 frames" in _error(mp4, count, None, None)


def test_num_frames_limit_is_configurable(mp4):
    assert "ask for 1 to 4 frames" in _error(mp4, 5, None, None, max_frames=4)


def test_start_beyond_duration_states_the_duration(mp4):
    message = _error(mp4, 3, 7.5, None)
    assert "start=7.5 s is beyond the end of 'clip.mp4'" in message and "lasts 5.000 s" in message


def test_bad_span(mp4):
    assert "is not before end" in _error(mp4, 3, 3.0, 2.0)
    assert "is not before end" in _error(mp4, 3, 2.0, 2.0)
    assert "start=-1" in _error(mp4, 3, -1.0, None)
    assert "end=nan" in _error(mp4, 3, None, float("nan"))


def test_audio_only_mp4_has_no_video_stream():
    if not _has_encoder("aac"):
        pytest.skip("the aac encoder is not available in this PyAV build")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "'clip.mp4' has no video stream" in _error(buf.getvalue(), 3, None, None)


def test_too_long(mp4):
    assert "lasts 0:05, over the 0:02 limit" in _error(mp4, 3, None, None, max_duration=2.0)


def test_too_many_pixels(mp4):
    assert "has 64x48 frames, over the 1,000 pixel limit" in _error(mp4, 3, None, None, max_pixels=1000)


def test_time_budget(mp4):
    assert "took longer than" in _error(mp4, 5, None, None, time_budget=1e-9)


@pytest.mark.anyio
async def test_video_qa_refuses_a_picture_or_a_bad_span_before_the_model_loads(settings, media_dir, mp4):
    """A wrong file or span is refused at once: the model (seconds to minutes) is not loaded first."""
    from mcp_vision.backend.pytorch.engine import PyTorchBackend
    from mcp_vision.service import VisionService

    Image.new("RGB", (64, 48), "blue").save(media_dir / "still.png")
    backend = PyTorchBackend(settings)  # not loaded
    service = VisionService(settings, backend)
    with pytest.raises(InputError, match="is not a video in a supported format"):
        await service.video_qa(str(media_dir / "still.png"))
    (media_dir / "clip.mp4").write_bytes(mp4)
    with pytest.raises(InputError, match="is not before end"):
        await service.video_qa(str(media_dir / "clip.mp4"), start=3, end=1)
    assert not backend.loaded
