"""Decoding of untrusted media in decoder processes, so a decoder that crashes, hangs or runs out of memory
cannot take the server down.

Pillow, MuPDF and FFmpeg parse hostile bytes in native code. `run_isolated` sends a plain top-level
function and its picklable arguments to a decoder process, which runs it under an address-space limit
(RLIMIT_AS) and a CPU-time limit (RLIMIT_CPU) while the server waits with a wall-clock deadline. A
decoder that dies, or that is killed for taking too long, is replaced by a fresh one on the next call;
the caller gets one InputError (DecoderCrashed, DecodeTimeout, DecodeTooLarge, DecodeFailed or the
decoder's own error, of the same class as in-process decoding raises) and the server keeps serving.
Each call has a decoder to itself, so one hostile file never fails another caller's decode.

Decoder processes are forked from a fork server that has already imported Pillow, pillow-heif, PyMuPDF and PyAV
(started on the first decode, or at start-up with MCP_VISION_PRELOAD=1; never at import or
`tools/list`), so a replacement starts in a fraction of a second. A `DecoderLease` keeps one decoder
process for a sequence of calls, so an object it opened (a PDF read page by page) stays open there and
its bytes cross the pipe once. The server's threads (torch, the event loop) are never forked, and torch
is never imported in a decoder. As with any use of `multiprocessing`, a script that embeds the server must guard its entry
point with `if __name__ == "__main__":` (the `mcp-vision-internvl` command and `python -m mcp_vision` do).
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

from ..errors import (
    Cancelled,
    DecodeFailed,
    DecoderCrashed,
    DecodeTimeout,
    DecodeTooLarge,
    InputError,
    VisionError,
    summary,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")

DECODE_TIMEOUT = 60.0  # wall-clock seconds one decode may take
MEMORY_MB = 3072  # address space one decode may add to a decoder
MAX_DECODERS = max(1, min(4, os.cpu_count() or 1))
JOBS_PER_DECODER = 100  # then the decoder is replaced, handing its fragmented heap back to the system
_POLL_SECONDS = 0.05  # how often a waiting call looks at its deadline and at cancellation
# Imported once by the fork server, so no decoder process imports them again (a test imports each by name).
_PRELOAD = (
    "numpy",
    "PIL.Image",
    "pillow_heif",
    "pymupdf",
    "av",
    "mcp_vision.inputs.images",
    "mcp_vision.inputs.pdf",
    "mcp_vision.inputs.video",
    "mcp_vision.inputs.diff",
)


def _signal_name(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _crashed(what: str, how: str) -> DecoderCrashed:
    return DecoderCrashed(
        f"{what} crashed the decoder ({how}): the file is damaged or malformed, so re-save it with a standard "
        "tool or pass another file."
    )


def _too_slow(what: str, timeout: float) -> DecodeTimeout:
    return DecodeTimeout(f"{what} took longer than {timeout:g} s to decode: pass a smaller or simpler file.")


def _too_big(what: str, memory_mb: int) -> DecodeTooLarge:
    return DecodeTooLarge(f"{what} needed more than {memory_mb:,} MB to decode: pass a smaller or simpler file.")


def _failed(what: str, reason: str) -> DecodeFailed:
    return DecodeFailed(f"{what} could not be decoded ({reason}): the file is damaged or in an unexpected form.")


def _first_line(exc: BaseException) -> str:
    return summary(exc, 160, with_type=True)


def _portable(exc: VisionError) -> VisionError:
    """`exc` itself when it crosses the pipe intact (its class, so callers catch the same types in and
    out of process), else an InputError with its message."""
    try:
        import pickle

        if type(pickle.loads(pickle.dumps(exc))) is type(exc):
            return exc
    except Exception:
        pass
    return InputError(str(exc))


# Objects a decoder process keeps between the calls of one lease (see `hold` and `held`).
_HELD: dict[str, Any] = {}


def hold(key: str, value: Any) -> None:
    """In a decoder process: keep `value` for later calls of the same lease (closed when the lease ends)."""
    _HELD[key] = value


def held(key: str) -> Any:
    """In a decoder process: what `hold` kept, or KeyError when this process has none (a fresh process)."""
    return _HELD[key]


def _release_held() -> None:
    """Close (when closable) and forget everything this process holds."""
    for value in _HELD.values():
        close = getattr(value, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.debug("closing a held object failed", exc_info=True)
    _HELD.clear()


# ------------------------------------------------------------------ the decoder process


def _serve(conn: Connection) -> None:
    """A decoder process's whole life: run jobs one at a time until the server closes the pipe."""
    os.dup2(2, 1)  # whatever a decoder prints goes to stderr, never to the MCP channel on stdout
    os.environ["PYMUPDF_MESSAGE"] = "fd:2"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the server's to handle; it stops its decoders
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
    """Linux: the kernel kills this decoder when the process that forked it (the fork server) ends."""
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
        return ("input", _portable(exc))
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


class _Decoder:
    """One decoder process and the server's end of its pipe."""

    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), name="mcp-vision-decoder", daemon=True)
        try:
            self.process.start()
        finally:
            child.close()
        self.jobs = 0
        self.leased = False

    def send(self, job: tuple) -> int:
        """Send one job; returns its size in bytes."""
        import pickle

        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        self.conn.send_bytes(data)
        return len(data)

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
    """Up to `size` decoder processes for single calls, started on demand, each running one job at a time,
    and up to `size` more held by leases (so a long document read never starves other callers)."""

    def __init__(self, size: int = MAX_DECODERS) -> None:
        self.size = size
        self._idle: list[_Decoder] = []
        self._live = 0  # processes alive or being started, leased ones included
        self._leased = 0
        self._cond = threading.Condition()
        self._ctx: Any = None
        self.started = 0  # decoder processes started so far (tests read it)
        self.bytes_sent = 0  # pickled job bytes sent to decoder processes so far (tests read it)

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

    def _checkout(self, cancelled: threading.Event, leased: bool = False) -> _Decoder:
        with self._cond:
            while True:
                if cancelled.is_set():
                    raise Cancelled
                may_take = not leased or self._leased < self.size
                while may_take and self._idle:
                    decoder = self._idle.pop()
                    if decoder.process.is_alive():
                        self._mark(decoder, leased)
                        return decoder
                    self._live -= 1
                    decoder.stop()
                # Idle ones are all taken: every process counted here is busy.
                room = self._live < 2 * self.size if leased else self._live - self._leased < self.size
                if may_take and room:
                    self._live += 1
                    self._leased += leased
                    break
                self._cond.wait(_POLL_SECONDS)
        try:
            decoder = _Decoder(self._context())
        except BaseException as exc:
            with self._cond:
                self._live -= 1
                self._leased -= leased
                self._cond.notify()
            if isinstance(exc, (RuntimeError, OSError)):  # no process could be made (limits, an unguarded main)
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                raise VisionError(
                    f"The decoder process could not start ({reason}): set MCP_VISION_ISOLATE_DECODING=0 to "
                    "decode in the server process, or, when embedding mcp-vision in a script, run it under "
                    "`if __name__ == \"__main__\":`."
                ) from None
            raise
        decoder.leased = leased
        with self._cond:
            self.started += 1
        return decoder

    def _mark(self, decoder: _Decoder, leased: bool) -> None:
        decoder.leased = leased
        self._leased += leased

    def warm(self) -> None:
        """Start one decoder ahead of need (starting the fork server is the slow part, about 1.6 s)."""
        with self._cond:
            if self._idle or self._live:
                return
        try:
            decoder = self._checkout(threading.Event())
        except VisionError as exc:  # the first call will say so as its error
            log.warning("%s", exc)
            return
        with self._cond:
            self._idle.append(decoder)
            self._cond.notify()

    def _checkin(self, decoder: _Decoder, healthy: bool) -> None:
        decoder.jobs += 1
        keep = healthy and decoder.jobs < JOBS_PER_DECODER
        if not keep:
            decoder.stop()
        with self._cond:
            if decoder.leased:
                self._leased -= 1
                decoder.leased = False
            if keep:
                self._idle.append(decoder)
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
        """Run `fn(*args, **kwargs)` in a decoder; block until it answers, dies, times out or is cancelled."""
        decoder = self._send(self._job(fn, args, kwargs, timeout, memory_mb), what, cancelled)
        healthy = False
        try:
            reply = self._receive(decoder, timeout, memory_mb, what, cancelled)
            healthy = True
        finally:
            self._checkin(decoder, healthy)
        return _outcome(reply, what, memory_mb)

    @staticmethod
    def _job(fn: Callable[..., Any], args: tuple, kwargs: dict, timeout: float, memory_mb: int) -> tuple:
        cpu_seconds = math.ceil(timeout * (os.cpu_count() or 1)) + 5  # a backstop: the wall-clock deadline rules
        return (fn, args, kwargs, memory_mb * 1024 * 1024, cpu_seconds)

    def _send(
        self, job: tuple, what: str, cancelled: threading.Event, decoder: _Decoder | None = None, leased: bool = False
    ) -> _Decoder:
        """Hand `job` to `decoder` (or to a checked-out one, trying a second when the first died idle)."""
        for attempt in range(2):
            current = decoder or self._checkout(cancelled, leased)
            try:
                sent = current.send(job)
                with self._cond:
                    self.bytes_sent += sent
                return current
            except (BrokenPipeError, ConnectionError, EOFError):
                self._checkin(current, healthy=False)  # it died while idle: take a fresh one
                if attempt or decoder is not None:
                    raise _crashed(what, "the decoder process could not be reached") from None
            except BaseException:
                self._checkin(current, healthy=False)
                raise
        raise AssertionError("unreachable")

    @staticmethod
    def _receive(decoder: _Decoder, timeout: float, memory_mb: int, what: str, cancelled: threading.Event) -> tuple:
        """The decoder's reply to the job it was sent; raises when it dies, overruns `timeout` or is cancelled."""
        deadline = time.monotonic() + timeout
        while not decoder.conn.poll(_POLL_SECONDS):
            if cancelled.is_set():
                raise Cancelled
            if time.monotonic() >= deadline:
                raise _too_slow(what, timeout)
        try:
            return decoder.conn.recv()
        except (EOFError, OSError):
            code = decoder.exit_code()
            if code is not None and code == -getattr(signal, "SIGXCPU", 0):
                raise _too_slow(what, timeout) from None
            raise _crashed(what, _signal_name(code)) from None
        except Exception as exc:  # a reply that cannot be unpickled here
            raise _failed(what, f"unreadable result: {_first_line(exc)}") from None

    def lease(self) -> DecoderLease:
        return DecoderLease(self)


def _outcome(reply: tuple, what: str, memory_mb: int) -> Any:
    status = reply[0]
    if status == "ok":
        return reply[1]
    if status == "input":
        raise reply[1]
    if status == "memory":
        raise _too_big(what, memory_mb)
    log.warning("decoding %s failed in the decoder process: %s\n%s", what, reply[1], reply[2])
    raise _failed(what, reply[1])


class DecoderLease:
    """One decoder process kept for a sequence of calls (one tool call reading a document page by page), so
    what a call `hold`s there is still there for the next. When the process dies or is killed, the next
    call gets a fresh one (`generation` changes) and, first, the lease's opener runs there again."""

    def __init__(self, pool: DecoderPool) -> None:
        self._pool = pool
        self._decoder: _Decoder | None = None
        self._lock = threading.Lock()  # one call at a time on the process
        self._opener: tuple[Callable[..., Any], tuple, dict] | None = None
        self.generation = 0  # incremented each time a new process is taken

    @property
    def holding(self) -> bool:
        """Whether a process is held now (what it holds survives until it dies or the lease ends)."""
        return self._decoder is not None

    def call(
        self, fn: Callable[..., T], args: tuple, kwargs: dict, *, timeout: float, memory_mb: int, what: str,
        cancelled: threading.Event,
    ) -> T:
        with self._lock:
            if self._decoder is None and self._opener is not None and fn is not self._opener[0]:
                opener, opener_args, opener_kwargs = self._opener  # a fresh process: open what was held again
                self._call(opener, opener_args, opener_kwargs, timeout, memory_mb, what, cancelled)
            return self._call(fn, args, kwargs, timeout, memory_mb, what, cancelled)

    def _call(
        self, fn: Callable[..., T], args: tuple, kwargs: dict, timeout: float, memory_mb: int, what: str,
        cancelled: threading.Event,
    ) -> T:
        job = self._pool._job(fn, args, kwargs, timeout, memory_mb)
        if self._decoder is None:
            self._decoder = self._pool._send(job, what, cancelled, leased=True)
            self.generation += 1
        else:
            try:
                self._pool._send(job, what, cancelled, decoder=self._decoder)
            except BaseException:
                self._decoder = None  # _send checked it in as unhealthy
                raise
        try:
            reply = self._pool._receive(self._decoder, timeout, memory_mb, what, cancelled)
        except BaseException:
            self._pool._checkin(self._decoder, healthy=False)
            self._decoder = None
            raise
        return _outcome(reply, what, memory_mb)

    async def run(self, fn: Callable[..., T], /, *args: Any, what: str = "the input", timeout: float = DECODE_TIMEOUT,
                  memory_mb: int = MEMORY_MB, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in this lease's decoder process; errors and cancellation as `run_isolated`."""
        return await _waiting(self.call, fn, args, kwargs, timeout=timeout, memory_mb=memory_mb, what=what)

    async def open(self, opener: Callable[..., T], /, *args: Any, what: str = "the input", **kwargs: Any) -> T:
        """Run `opener(*args, **kwargs)`, which `hold`s something in the process, and again in every process
        that replaces this one; the lease is closed when the first opening fails."""
        self._opener = (opener, args, kwargs)
        try:
            return await self.run(opener, *args, what=what, **kwargs)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Hand the process back to the pool, after it closed what it held (or kill it, when it cannot)."""
        with self._lock:
            decoder, self._decoder = self._decoder, None
            if decoder is None:
                return
            try:
                reply = self._pool._receive(
                    self._pool._send(self._pool._job(_release_held, (), {}, 10.0, 64), "", threading.Event(), decoder),
                    10.0, 64, "releasing a document", threading.Event(),
                )
                healthy = reply[0] == "ok"
            except BaseException:
                healthy = False
            self._pool._checkin(decoder, healthy)


async def _waiting(call: Callable[..., T], fn: Callable[..., Any], args: tuple, kwargs: dict, **limits: Any) -> T:
    """`call(fn, args, kwargs, ...)` in a thread the caller waits on; cancelling the caller sets the event
    the call polls, so its decoder process is killed."""
    cancelled = threading.Event()
    try:
        return await anyio.to_thread.run_sync(
            functools.partial(call, fn, args, kwargs, cancelled=cancelled, **limits), abandon_on_cancel=True
        )
    finally:
        cancelled.set()  # when the caller was cancelled, the waiting thread kills the decoder process


_POOL: DecoderPool | None = None
_POOL_LOCK = threading.Lock()


def decoder_pool() -> DecoderPool:
    """The process-wide pool, created (not started: decoders start on demand) on first use."""
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

    `fn` must be a top-level function and its arguments and result picklable. Failures raise the same
    classes either way: the decoder's own InputError, or DecoderCrashed ("... crashed the decoder"),
    DecodeTimeout ("... took longer than N s to decode"), DecodeTooLarge ("... needed more than N MB to
    decode"), DecodeFailed (any other exception). Cancelling the caller kills the decoder process.
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
    return await _waiting(decoder_pool().call, fn, args, kwargs, timeout=timeout, memory_mb=memory_mb, what=what)


__all__ = [
    "run_isolated", "decoder_pool", "DecoderPool", "DecoderLease", "hold", "held", "DECODE_TIMEOUT", "MEMORY_MB",
]
