"""Media the tests build: short videos."""

from __future__ import annotations

from pathlib import Path


def mp4(path: Path, colors: list[tuple[int, int, int]], fps: int = 10, seconds_each: int = 1) -> Path:
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


__all__ = ["mp4"]


def before_after(directory: Path) -> tuple[Path, Path]:
    """before.png (white) and after.png (the same with a red and a blue block): compare_images' known changes."""
    from PIL import Image

    before = Image.new("RGB", (640, 400), (255, 255, 255))
    after = before.copy()
    after.paste((200, 20, 20), (100, 80, 260, 180))
    after.paste((20, 20, 200), (420, 250, 560, 330))
    paths = directory / "before.png", directory / "after.png"
    before.save(paths[0])
    after.save(paths[1])
    return paths
