"""Decoding of untrusted media in worker processes, so a decoder that crashes, hangs or runs out of memory
cannot take the server down.

Pillow, MuPDF and FFmpeg parse hostile bytes in native code. `run_isolated` sends a plain top-level
function and its picklable arguments to a worker process, which runs it under an address-space limit
(RLIMIT_AS) and a CPU-time limit (RLIMIT_CPU) while the server waits with a wall-clock deadline. A worker
that dies, or that is killed for taking too long, is replaced by a fresh one on the next call; the caller
gets one InputError and the server keeps serving. Each call has a worker to itself, so one hostile file
never fails another caller's decode.

Workers are forked from a fork server that has already imported Pillow, PyMuPDF and PyAV (started on
the first decode, never at import or `tools/list`), so a replacement worker starts in a fraction of a
second. The server's threads (torch, the event loop) are never forked, and torch is never imported in a
worker. As with any use of `multiprocessing`, a script that embeds the server must guard its entry
point with `if __name__ == "__main__":` (the `mcp-vision` command and `python -m mcp_vision` do).
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .errors import InputError, VisionError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from PIL import Image as PILImage

    from .media import Media

log = logging.getLogger(__name__)

T = TypeVar("T")

DECODE_TIMEOUT = 60.0  # wall-clock seconds one decode may take
MEMORY_MB = 3072  # address space one decode may add to a worker
MAX_WORKERS = max(1, min(4, os.cpu_count() or 1))
JOBS_PER_WORKER = 100  # then the worker is replaced, handing its fragmented heap back to the system
_POLL_SECONDS = 0.05  # how often a waiting call looks at its deadline and at cancellation
_PRELOAD = (
    "numpy",
    "PIL.Image",
    "pymupdf",
    "av",
    "mcp_vision.images",
    "mcp_vision.documents",
    "mcp_vision.video",
    "mcp_vision.diff",
)


class _Cancelled(Exception):
    """The awaiting caller went away; its worker was killed."""


def _signal_name(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _crashed(what: str, how: str) -> InputError:
    return InputError(
        f"{what} crashed the decoder ({how}): the file is damaged or malformed, so re-save it with a standard "
        "tool or pass another file."
    )


def _too_slow(what: str, timeout: float) -> InputError:
    return InputError(f"{what} took longer than {timeout:g} s to decode: pass a smaller or simpler file.")


def _too_big(what: str, memory_mb: int) -> InputError:
    return InputError(f"{what} needed more than {memory_mb:,} MB to decode: pass a smaller or simpler file.")


def _failed(what: str, reason: str) -> InputError:
    return InputError(f"{what} could not be decoded ({reason}): the file is damaged or in an unexpected form.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


# ------------------------------------------------------------------ the worker process


def _serve(conn: Connection) -> None:
    """A worker's whole life: run jobs one at a time until the server closes the pipe."""
    os.dup2(2, 1)  # whatever a decoder prints goes to stderr, never to the MCP channel on stdout
    os.environ["PYMUPDF_MESSAGE"] = "fd:2"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the server's to handle; it stops its workers
    _die_with_parent()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    except (ImportError, ValueError, OSError):
        pass
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the server closed the pipe or went away
        except Exception as exc:  # an argument that cannot be unpickled here
            conn.send(("error", _first_line(exc), traceback.format_exc()))
            continue
        fn, args, kwargs, memory_bytes, cpu_seconds = job
        outcome = _run_limited(fn, args, kwargs, memory_bytes, cpu_seconds)
        del job, fn, args, kwargs
        try:
            conn.send(outcome)
        except (EOFError, OSError):
            return
        except Exception as exc:  # a result that cannot be pickled
            conn.send(("error", f"the result could not be returned ({_first_line(exc)})", ""))


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the process that forked it (the fork server) ends."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _address_space() -> int:
    """This process's current virtual memory size in bytes (Linux), or 0 when unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _run_limited(
    fn: Callable[..., Any], args: tuple, kwargs: dict, memory_bytes: int, cpu_seconds: int
) -> tuple[Any, ...]:
    """Call `fn` with the address space and CPU time limited to what this job may add; limits lifted after."""
    try:
        import resource
    except ImportError:  # not POSIX: run without limits
        resource = None  # type: ignore[assignment]
    saved: list[tuple[int, tuple[int, int]]] = []
    try:
        if resource is not None:
            for which, extra in (
                (resource.RLIMIT_AS, _address_space() + memory_bytes if memory_bytes else 0),
                (resource.RLIMIT_CPU, _cpu_used() + cpu_seconds if cpu_seconds else 0),
            ):
                if not extra:
                    continue
                soft, hard = resource.getrlimit(which)
                limit = extra if hard == resource.RLIM_INFINITY else min(extra, hard)
                try:
                    resource.setrlimit(which, (limit, hard))
                    saved.append((which, (soft, hard)))
                except (ValueError, OSError):
                    pass
        return ("ok", fn(*args, **kwargs))
    except VisionError as exc:
        return ("input", str(exc))
    except MemoryError:
        return ("memory",)
    except Exception as exc:
        return ("error", _first_line(exc), traceback.format_exc())
    finally:
        for which, limits in saved:
            resource.setrlimit(which, limits)


def _cpu_used() -> int:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return math.ceil(usage.ru_utime + usage.ru_stime)


# ------------------------------------------------------------------ the server side


class _Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), name="mcp-vision-decoder", daemon=True)
        try:
            self.process.start()
        finally:
            child.close()
        self.jobs = 0

    def exit_code(self) -> int | None:
        self.process.join(2.0)
        return self.process.exitcode

    def stop(self) -> None:
        """Kill the process (if alive), reap it and close the pipe."""
        if self.process.exitcode is None:
            try:
                self.process.kill()
            except (OSError, ValueError):
                pass
            self.process.join(5.0)
        self.conn.close()


class DecoderPool:
    """Up to `size` worker processes, started on demand, each running one job at a time."""

    def __init__(self, size: int = MAX_WORKERS) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._live = 0
        self._cond = threading.Condition()
        self._ctx: Any = None
        self.started = 0  # workers started so far (tests read it)

    def _context(self) -> Any:
        if self._ctx is None:
            # PyMuPDF reads this when imported (in the fork server): its messages go to stderr.
            os.environ.setdefault("PYMUPDF_MESSAGE", "fd:2")
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(list(_PRELOAD))
            else:
                ctx = multiprocessing.get_context("spawn")
            self._ctx = ctx
        return self._ctx

    def _checkout(self, cancelled: threading.Event) -> _Worker:
        with self._cond:
            while True:
                if cancelled.is_set():
                    raise _Cancelled
                while self._idle:
                    worker = self._idle.pop()
                    if worker.process.is_alive():
                        return worker
                    self._live -= 1
                    worker.stop()
                if self._live < self.size:
                    self._live += 1
                    break
                self._cond.wait(_POLL_SECONDS)
        try:
            worker = _Worker(self._context())
        except BaseException as exc:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            if isinstance(exc, (RuntimeError, OSError)):  # no process could be made (limits, an unguarded main)
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                raise VisionError(
                    f"The decoder worker process could not start ({reason}): set MCP_VISION_ISOLATE_DECODING=0 to "
                    "decode in the server process, or, when embedding mcp-vision in a script, run it under "
                    "`if __name__ == \"__main__\":`."
                ) from None
            raise
        with self._cond:
            self.started += 1
        return worker

    def warm(self) -> None:
        """Start one worker ahead of need (starting the fork server is the slow part, about 1.6 s)."""
        with self._cond:
            if self._idle or self._live:
                return
        try:
            worker = self._checkout(threading.Event())
        except VisionError as exc:  # the first call will say so as its error
            log.warning("%s", exc)
            return
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _checkin(self, worker: _Worker, healthy: bool) -> None:
        worker.jobs += 1
        keep = healthy and worker.jobs < JOBS_PER_WORKER
        if not keep:
            worker.stop()
        with self._cond:
            if keep:
                self._idle.append(worker)
            else:
                self._live -= 1
            self._cond.notify()

    def call(
        self,
        fn: Callable[..., T],
        args: tuple,
        kwargs: dict,
        *,
        timeout: float,
        memory_mb: int,
        what: str,
        cancelled: threading.Event,
    ) -> T:
        """Run `fn(*args, **kwargs)` in a worker; block until it answers, dies, times out or is cancelled."""
        cpu_seconds = math.ceil(timeout * (os.cpu_count() or 1)) + 5  # a backstop: the deadline below rules
        job = (fn, args, kwargs, memory_mb * 1024 * 1024, cpu_seconds)
        for attempt in range(2):
            worker = self._checkout(cancelled)
            try:
                worker.conn.send(job)
                break
            except (BrokenPipeError, ConnectionError, EOFError):
                self._checkin(worker, healthy=False)  # it died while idle: take a fresh one
                if attempt:
                    raise _crashed(what, "the decoder process could not be reached") from None
            except BaseException:
                self._checkin(worker, healthy=False)
                raise
        healthy = False
        try:
            deadline = time.monotonic() + timeout
            while not worker.conn.poll(_POLL_SECONDS):
                if cancelled.is_set():
                    raise _Cancelled
                if time.monotonic() >= deadline:
                    raise _too_slow(what, timeout)
            try:
                reply = worker.conn.recv()
            except (EOFError, OSError):
                code = worker.exit_code()
                if code is not None and code == -getattr(signal, "SIGXCPU", 0):
                    raise _too_slow(what, timeout) from None
                raise _crashed(what, _signal_name(code)) from None
            except Exception as exc:  # a reply that cannot be unpickled here
                raise _failed(what, f"unreadable result: {_first_line(exc)}") from None
            healthy = True
        finally:
            self._checkin(worker, healthy)
        status = reply[0]
        if status == "ok":
            return reply[1]
        if status == "input":
            raise InputError(reply[1])
        if status == "memory":
            raise _too_big(what, memory_mb)
        log.warning("decoding %s failed in the worker: %s\n%s", what, reply[1], reply[2])
        raise _failed(what, reply[1])


_POOL: DecoderPool | None = None
_POOL_LOCK = threading.Lock()


def decoder_pool() -> DecoderPool:
    """The process-wide pool, created (not started: workers start on demand) on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = DecoderPool()
        return _POOL


async def run_isolated(
    fn: Callable[..., T],
    /,
    *args: Any,
    what: str = "the input",
    timeout: float = DECODE_TIMEOUT,
    memory_mb: int = MEMORY_MB,
    isolate: bool = True,
    **kwargs: Any,
) -> T:
    """`fn(*args, **kwargs)` in a decoder process (with `isolate`) or a thread; `what` names the input in errors.

    `fn` must be a top-level function and its arguments and result picklable. Failures become one
    InputError: the decoder's own, or "... crashed the decoder", "... took longer than N s to decode",
    "... needed more than N MB to decode". Cancelling the caller kills the worker.
    """
    if not isolate:
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
        except VisionError:
            raise
        except MemoryError:
            raise _too_big(what, memory_mb) from None
        except Exception as exc:
            log.warning("decoding %s failed", what, exc_info=True)
            raise _failed(what, _first_line(exc)) from None
    cancelled = threading.Event()
    call = functools.partial(
        decoder_pool().call, fn, args, kwargs, timeout=timeout, memory_mb=memory_mb, what=what, cancelled=cancelled
    )
    try:
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
    finally:
        cancelled.set()  # when the caller was cancelled, the waiting thread kills the worker


TEXT_BATCH = 16  # text layers read per opening of an isolated PDF (the pages from the one asked for on)


class PdfPages:
    """A PDF read page by page. Isolated, every read re-opens the document from its bytes in a decoder
    process (text layers `TEXT_BATCH` pages at a time); otherwise one open `PdfDocument` is read in
    threads. Each page's text layer is read once."""

    def __init__(self, media: Media, page_count: int, doc: Any = None) -> None:
        self.media = media
        self.page_count = page_count
        self._doc = doc  # an open PdfDocument when not isolated
        self._texts: dict[int, str] = {}

    async def text_layer(self, page_number: int) -> str:
        from .documents import read_page_text, read_page_texts

        if page_number in self._texts:
            return self._texts[page_number]
        if self._doc is not None:
            text = await run_isolated(self._doc.text_layer, page_number, what=self.media.label, isolate=False)
        else:
            if isinstance(page_number, int) and 1 <= page_number <= self.page_count:
                window = range(page_number, min(page_number + TEXT_BATCH, self.page_count + 1))
                wanted = [n for n in window if n not in self._texts]
                try:
                    self._texts.update(await run_isolated(read_page_texts, self.media, wanted, what=self.media.label))
                except InputError:
                    pass  # a later page may have crashed the decoder: read this one alone below
            if page_number in self._texts:
                return self._texts[page_number]
            text = await run_isolated(read_page_text, self.media, page_number, what=self.media.label)
        self._texts[page_number] = text
        return text

    async def has_text_layer(self, page_number: int) -> bool:
        from .documents import is_real_text

        return is_real_text(await self.text_layer(page_number))

    async def render(self, page_number: int, dpi: float, max_pixels: int) -> PILImage.Image:
        from .documents import render_page

        if self._doc is not None:
            return await run_isolated(
                self._doc.render, page_number, dpi, max_pixels, what=self.media.label, isolate=False
            )
        return await run_isolated(render_page, self.media, page_number, dpi, max_pixels, what=self.media.label)

    def close(self) -> None:
        if self._doc is not None:
            self._doc.close()


async def open_pdf(media: Media, *, isolate: bool = True) -> PdfPages:
    """Open `media` as a PDF (in a decoder process with `isolate`), or raise the InputError that says why not."""
    from .documents import open_document, summarize_pdf

    if isolate:
        summary = await run_isolated(summarize_pdf, media, what=media.label)
        return PdfPages(media, summary.page_count)
    doc = await run_isolated(open_document, media, what=media.label, isolate=False)
    return PdfPages(media, doc.page_count, doc=doc)


__all__ = ["run_isolated", "decoder_pool", "DecoderPool", "PdfPages", "open_pdf", "DECODE_TIMEOUT", "MEMORY_MB"]
