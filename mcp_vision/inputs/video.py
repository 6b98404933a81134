"""Sample frames from a video held in memory. The demuxer is chosen from the bytes (never probed),
nested opens are refused, and each frame is found by seeking to the keyframe before its time and
decoding forward, so the whole video is never decoded into memory."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputError, summary
from ..limits import DEFAULT_MAX_FRAMES, DEFAULT_MAX_IMAGE_PIXELS
from .sources import Media

if TYPE_CHECKING:
    from PIL import Image as PILImage

SUPPORTED = "MP4, MOV, M4V, 3GP, MKV, WebM, AVI, animated GIF or APNG"

# Frames of these depend on every earlier frame (disposal, blending): decode from the start, never seek.
_SEQUENTIAL = frozenset({"gif", "apng"})

# Without a usable index, keep decoding forward when the next target is at most this many seconds ahead.
_FORWARD_WINDOW = 2.0

# Options for the demuxer itself: no protocol may be opened, mov data references stay off.
_CONTAINER_OPTIONS = {"protocol_whitelist": "none"}
_MOV_OPTIONS = {"enable_drefs": "0", "use_absolute_path": "0"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class VideoSample:
    """RGB frames sampled from one video, the actual time of each, and the video's display size."""

    frames: list[PILImage.Image]
    timestamps: list[float]
    duration: float
    width: int
    height: int
    container: str


# Major brands of still pictures in the ISO container (HEIF/HEIC, AVIF): images for describe_image, which FFmpeg
# would otherwise read as a one-frame video, past the image size limits the image decoder checks.
_STILL_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"mif2", b"avif"})


def demuxer_for(data: bytes) -> str | None:
    """The FFmpeg demuxer for these bytes, decided from magic bytes, or None when not a supported video."""
    if data[4:8] == b"ftyp":
        return None if data[8:12] in _STILL_BRANDS else "mov"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if data.startswith(b"RIFF") and data[8:12] == b"AVI ":
        return "avi"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(_PNG_SIGNATURE) and _png_is_animated(data):
        return "apng"
    return None


def _png_is_animated(data: bytes) -> bool:
    """True when an acTL chunk comes before the first IDAT (the APNG rule)."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"acTL":
            return True
        if kind in {b"IDAT", b"IEND"}:
            return False
        pos += 12 + length
    return False


def check_num_frames(num_frames: int, max_frames: int) -> None:
    """The one check of a frame count (the service's, before any work, and sample_frames' own)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= max_frames:
        raise InputError(
            f"num_frames={num_frames!r} is out of range: ask for 1 to {max_frames} frames (MCP_VISION_MAX_FRAMES)."
        )


def check_video(media: Media, start: float | None, end: float | None) -> str:
    """The checks that need no decoding (the times asked for, the container by its bytes), so a caller can make
    them before any slow work; returns the demuxer's name."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise InputError(f"{name}={value!r} is not a time in seconds: pass a number that is 0 or more.")
    if start is not None and end is not None and start >= end:
        raise InputError(f"start ({start:g} s) is not before end ({end:g} s): pass a start earlier than the end.")
    demuxer = demuxer_for(media.data)
    if demuxer is None:
        raise InputError(f"{media.label} is not a video in a supported format ({SUPPORTED}).")
    return demuxer


def sample_frames(
    media: Media,
    num_frames: int,
    start: float | None,
    end: float | None,
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = 896,
    max_duration: float = 3 * 3600,
    time_budget: float = 60.0,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> VideoSample:
    """Sample `num_frames` frames at the midpoints of equal segments of [start, end] (default: all)."""
    check_num_frames(num_frames, max_frames)
    demuxer = check_video(media, start, end)

    import av

    deadline = time.monotonic() + time_budget
    too_slow = InputError(
        f"Decoding {media.label} took longer than {time_budget:g} s: "
        "ask for fewer frames or a shorter start-end span, or pass a smaller video."
    )
    try:
        with _Reader(media, demuxer, deadline, too_slow) as reader:
            w, h = reader.coded_size
            if w * h > max_pixels:
                raise InputError(
                    f"{media.label} has {w}x{h} frames, over the {max_pixels:,} pixel limit "
                    "(MCP_VISION_MAX_IMAGE_PIXELS): downscale it first."
                )
            duration = reader.duration()
            if duration > max_duration:
                raise InputError(
                    f"{media.label} lasts {_clock(duration)}, over the {_clock(max_duration)} limit: "
                    "trim it to a shorter clip first."
                )
            first = 0.0 if start is None else float(start)
            last = duration if end is None else min(float(end), duration)
            if first >= duration:
                raise InputError(
                    f"start={first:g} s is beyond the end of {media.label}, which lasts {duration:.3f} s: "
                    "pass a start below that."
                )
            step = (last - first) / num_frames
            targets = [first + (i + 0.5) * step for i in range(num_frames)]
            images: list[PILImage.Image] = []
            stamps: list[float] = []
            size = (0, 0)
            previous: Any = None
            for target in targets:
                t, frame = reader.frame_at(target)
                if frame is previous:
                    images.append(images[-1].copy())  # a short clip: two targets on one frame
                else:
                    image, display = reader.to_image(frame, max_side)
                    if not images:
                        size = display
                    images.append(image)
                previous = frame
                stamps.append(round(t, 3))
            return VideoSample(
                frames=images,
                timestamps=stamps,
                duration=round(duration, 3),
                width=size[0],
                height=size[1],
                container=demuxer,
            )
    except InputError:
        raise
    except av.error.FFmpegError as exc:
        raise InputError(f"{media.label} is a corrupt or truncated video ({summary(exc, 120)}).") from None
    except Exception as exc:  # a demuxer or decoder can fail in many ways on hostile bytes
        raise InputError(f"{media.label} is a corrupt or truncated video ({summary(exc, 120)}).") from exc


class _Reader:
    """The first video stream of one container, read forward, seeking only where it saves decoding."""

    def __init__(self, media: Media, demuxer: str, deadline: float, too_slow: InputError) -> None:
        self._media = media
        self._demuxer = demuxer
        self._deadline = deadline
        self._too_slow = too_slow
        self._gen: Generator[tuple[float, Any], None, None] | None = None
        self._container: Any = self._open()
        videos = self._container.streams.video
        if not videos:
            self._close()
            raise InputError(f"{media.label} has no video stream (it may be audio only): pass a file with video.")
        self._stream = videos[0]
        ctx = self._stream.codec_context
        if ctx is not None:
            ctx.thread_type = "AUTO"
        self._time_base = float(self._stream.time_base or 0) or 1e-6
        start_time = self._stream.start_time
        self._origin = 0.0 if start_time is None else float(start_time) * self._time_base
        self._seekable = demuxer not in _SEQUENTIAL
        self._pending: tuple[float, Any] | None = None  # decoded but later than the last target
        self._last: tuple[float, Any] | None = None  # latest frame at or before the last target
        self._ended = False
        self._decoded = 0
        self.coded_size = (int(self._stream.width or 0), int(self._stream.height or 0))

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def _open(self) -> Any:
        import av

        options = dict(_CONTAINER_OPTIONS)
        if self._demuxer == "mov":
            options.update(_MOV_OPTIONS)
        return av.open(
            io.BytesIO(self._media.data),
            mode="r",
            format=self._demuxer,
            container_options=options,
            io_open=_refuse_nested_open,
        )

    def _check_time(self) -> None:
        if time.monotonic() > self._deadline:
            raise self._too_slow

    # --- duration ---------------------------------------------------------------------------------

    def duration(self) -> float:
        """Seconds from the first frame to the end of the last; GIF and APNG add up frame durations."""
        import av

        if self._demuxer not in _SEQUENTIAL:
            stream = self._stream
            if stream.duration and stream.duration > 0:
                return float(stream.duration) * self._time_base
            if self._container.duration and self._container.duration > 0:
                return self._container.duration / av.time_base
        return self._scan_duration()

    def _scan_duration(self) -> float:
        """Demux (without decoding) a second copy of the container to find where the last frame ends."""
        container = self._open()
        try:
            stream = container.streams.video[0]
            tb = float(stream.time_base or 0) or self._time_base
            end: float | None = None
            for packet in container.demux(stream):
                self._check_time()
                if packet.pts is None:
                    continue
                stop = (packet.pts + max(packet.duration or 0, 0)) * tb
                end = stop if end is None else max(end, stop)
        finally:
            container.close()
        if end is None:
            raise InputError(f"{self._media.label} is a corrupt or truncated video (no frames were found).")
        return max(end - self._origin, 0.0) or 1e-3

    # --- frames -----------------------------------------------------------------------------------

    def _frames(self) -> Generator[tuple[float, Any], None, None]:
        """Decoded frames in presentation order with their time in seconds from the stream start."""
        import av

        packets = self._container.demux(self._stream)
        rate = self._stream.average_rate or self._stream.guessed_rate
        step = 1.0 / float(rate) if rate else 0.0
        previous: float | None = None
        while True:
            self._check_time()
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError:
                if self._decoded:
                    return  # a damaged tail: keep what was decoded
                raise
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # one damaged packet: skip it, as players do
            for frame in frames:
                self._decoded += 1
                if frame.time is not None:
                    t = max(float(frame.time) - self._origin, 0.0)
                else:
                    t = previous + step if previous is not None else 0.0
                previous = t
                yield t, frame

    def _next(self) -> tuple[float, Any] | None:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        if self._gen is None or self._ended:
            return None
        item = next(self._gen, None)
        if item is None:
            self._ended = True
        return item

    def _position(self) -> float | None:
        """Time of the latest frame taken from the decoder."""
        if self._pending is not None:
            return self._pending[0]
        return self._last[0] if self._last is not None else None

    def _should_seek(self, target: float) -> bool:
        if not self._seekable:
            return False
        if self._gen is None:
            return True
        position = self._position()
        if self._ended or (position is not None and target <= position):
            return False
        if position is None:
            return True
        keyframe = self._keyframe_before(target)
        if keyframe is not None:
            return keyframe > position  # a seek would skip frames between here and the target
        return target - position > _FORWARD_WINDOW

    def _keyframe_before(self, target: float) -> float | None:
        """Time of the last keyframe at or before `target` from the demuxer's index, if it covers it."""
        entries = getattr(self._stream, "index_entries", None)
        if entries is None:
            return None
        count = len(entries)
        goal = (target + self._origin) / self._time_base
        if count == 0 or entries[count - 1].timestamp < goal:
            return None
        lo, hi = 0, count  # first entry later than the goal
        while lo < hi:
            mid = (lo + hi) // 2
            if entries[mid].timestamp <= goal:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo - 1, max(lo - 10_000, 0) - 1, -1):
            entry = entries[i]
            if entry.is_keyframe:
                return entry.timestamp * self._time_base - self._origin
        return None

    def _seek(self, target: float) -> None:
        """Seek to the keyframe at or before `target`, stepping further back if the demuxer overshoots."""
        import av

        back = 0.0
        while True:
            at = max(target - back, 0.0)
            if self._gen is not None:
                self._gen.close()
            try:
                self._container.seek(
                    round((at + self._origin) / self._time_base),
                    stream=self._stream,
                    backward=True,
                    any_frame=False,
                )
            except av.error.FFmpegError:
                self._restart_sequential()
                return
            self._gen = self._frames()
            self._pending, self._last, self._ended = None, None, False
            first = self._next()
            self._pending = first
            if first is None or first[0] <= target + 1e-6 or at <= 0.0 or back >= 8.0:
                return
            back = max(1.0, 2 * back)

    def _restart_sequential(self) -> None:
        """Seeking failed: read the container again from the start and never seek."""
        self._close()
        self._container = self._open()
        self._stream = self._container.streams.video[0]
        self._seekable = False
        self._gen = self._frames()
        self._pending, self._last, self._ended = None, None, False

    def frame_at(self, target: float) -> tuple[float, Any]:
        """The frame on screen at `target` seconds (the last one starting at or before it) and its time."""
        previous = self._last
        if self._should_seek(target):
            self._seek(target)
        elif self._gen is None:
            self._gen = self._frames()
        candidate = self._last
        while True:
            item = self._next()
            if item is None:
                break
            if item[0] <= target:
                candidate = item
            else:
                self._pending = item
                break
        if candidate is None:
            candidate = self._pending  # every remaining frame starts after the target: take the next one
        if candidate is None:
            if previous is None:
                raise InputError(f"{self._media.label} is a corrupt or truncated video (no frame could be decoded).")
            candidate = previous
        if previous is not None and candidate[0] < previous[0]:
            candidate = previous  # keep timestamps non-decreasing if a seek lands early
        self._last = candidate
        return candidate

    def to_image(self, frame: Any, max_side: int) -> tuple[PILImage.Image, tuple[int, int]]:
        """The frame as an RGB image at display orientation and aspect, longer side at most `max_side`."""
        from PIL import Image

        from .images import to_rgb

        sar = self._stream.sample_aspect_ratio
        stretch = float(sar) if sar and 0.1 < float(sar) < 10 else 1.0
        width, height = frame.width * stretch, float(frame.height)
        scale = min(1.0, max_side / max(width, height, 1.0))
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        alpha = any(getattr(c, "is_alpha", False) for c in frame.format.components)
        array = frame.to_ndarray(
            format="rgba" if alpha else "rgb24", width=target[0], height=target[1], interpolation="AREA"
        )
        image = to_rgb(Image.fromarray(array))
        display = (round(width), round(height))
        rotation = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4  # counter-clockwise quarter turns
        if rotation:
            turn = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}
            image = image.transpose(turn[rotation])
            if rotation % 2:
                display = (display[1], display[0])
        return image, display


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    raise PermissionError("opening further files or URLs from a video is not allowed")


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


__all__ = ["SUPPORTED", "VideoSample", "check_num_frames", "check_video", "demuxer_for", "sample_frames"]
