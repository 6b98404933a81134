"""What one benchmark process measures, in a form that crosses the process boundary as JSON."""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Call:
    """One model request (or one tool call on the server side) and where its time went."""

    label: str
    seconds: float  # wall time the caller waited (server: the MCP tool call)
    engine_seconds: float = 0.0  # time inside the model code (server: backend.chat; reference: processor + generate)
    stages: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    image_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    images_encoded: int = 0
    ids: list[int] = field(default_factory=list)
    chats: int = 1  # model requests inside this call (OCR: one a page)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessResult:
    side: str
    row: str
    run: int
    load_seconds: float = 0.0
    rss_after_load_mb: float = 0.0
    peak_rss_mb: float = 0.0
    calls: list[Call] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessResult:
        calls = [Call(**c) for c in data.pop("calls", [])]
        return cls(**data, calls=calls)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.calls)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far: VmHWM of its own memory where /proc has it.

    Not ru_maxrss on Linux: a child started by subprocess (vfork + exec) inherits the parent's peak into
    ru_maxrss at exec, so every side of a bench once read the runner's peak (4352 MB, all sides alike)."""
    own = work_peak_rss_mb()
    return own if own is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process, so later work has its own peak (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def work_peak_rss_mb() -> float | None:
    """Peak RSS since the last `reset_peak_rss` (VmHWM), None where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def current_rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return peak_rss_mb()


__all__ = ["Call", "ProcessResult", "current_rss_mb", "peak_rss_mb", "reset_peak_rss", "work_peak_rss_mb"]
