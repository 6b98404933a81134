"""run_isolated and the decoder processes: results, crashes, memory and time limits, cancellation,
replacement of dead workers, the PDF reader in both modes, and a pool that starts only when used."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading
import time

import anyio
import pytest

from mcp_vision.inputs.pdf import read_page_text
from mcp_vision.errors import InputError
from mcp_vision.inputs.images import DecodedImage, decode_image
from mcp_vision.inputs.sources import Media, sniff
from mcp_vision.inputs.pdf import open_pdf
from mcp_vision.inputs.sandbox import decoder_pool, run_isolated

from . import hostile

pytestmark = pytest.mark.anyio


def _media(data: bytes, label: str) -> Media:
    return Media(data=data, label=label, kind=sniff(data))


async def _decode_ok() -> DecodedImage:
    """A good decode: proof that the pool serves after whatever came before."""
    decoded = await run_isolated(decode_image, _media(hostile.png(), "'ok.png'"), 10_000_000, what="'ok.png'")
    assert decoded.image.size == (64, 48) and decoded.image.getpixel((3, 3)) == (200, 30, 30)
    return decoded


async def test_decodes_in_another_process_without_torch():
    await _decode_ok()
    pid, has_torch = await run_isolated(hostile.whoami)
    assert pid != os.getpid()
    assert has_torch is False


async def test_decoder_errors_come_back_as_they_are():
    with pytest.raises(InputError) as info:
        await run_isolated(decode_image, _media(hostile.png_bomb(), "'bomb.png'"), 64_000_000, what="'bomb.png'")
    assert str(info.value).startswith("'bomb.png' has more pixels than the 64,000,000 pixel limit")


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (hostile.abort_decoder, (), r"^'x.png' crashed the decoder \(SIGABRT\): "),
        (ctypes.string_at, (0,), r"^'x.png' crashed the decoder \(SIGSEGV\): "),
        (os._exit, (3,), r"^'x.png' crashed the decoder \(exit code 3\): "),
    ],
    ids=["abort", "segfault", "exit"],
)
async def test_a_crashing_decoder_is_one_error_and_the_next_call_works(fn, args, expected):
    with pytest.raises(InputError, match=expected) as info:
        await run_isolated(fn, *args, what="'x.png'")
    assert "\n" not in str(info.value)
    await _decode_ok()


async def test_memory_beyond_the_limit_is_refused():
    with pytest.raises(InputError, match=r"^'big.png' needed more than 256 MB to decode: "):
        await run_isolated(hostile.exhaust_memory, what="'big.png'", memory_mb=256)
    await _decode_ok()


async def test_a_hanging_decoder_is_killed_at_the_deadline():
    pool = decoder_pool()
    started = pool.started
    begun = time.monotonic()
    with pytest.raises(InputError, match=r"^'slow.mp4' took longer than 1 s to decode: "):
        await run_isolated(hostile.hang, what="'slow.mp4'", timeout=1)
    assert time.monotonic() - begun < 30  # generous: the deadline is 1 s
    await _decode_ok()
    assert pool.started > started  # the hung worker was killed and a fresh one started


async def test_unexpected_exceptions_become_one_input_error():
    with pytest.raises(InputError, match=r"^'odd.gif' could not be decoded \(ValueError: invalid literal"):
        await run_isolated(int, "not a number", what="'odd.gif'")
    with pytest.raises(InputError, match=r"^'odd.gif' could not be decoded \(ValueError: invalid literal"):
        await run_isolated(int, "not a number", what="'odd.gif'", isolate=False)


async def test_cancelling_the_caller_kills_its_worker():
    pool = decoder_pool()
    await _decode_ok()
    with anyio.move_on_after(0.5):
        await run_isolated(hostile.hang)
    # The waiting thread sees the cancellation within a poll interval and kills the worker.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pool._live > len(pool._idle):
        await anyio.sleep(0.05)
    assert pool._live == len(pool._idle), "the cancelled job still holds a worker"
    await _decode_ok()


async def test_concurrent_calls_each_get_a_worker_and_a_crash_fails_only_its_own():
    results: dict[str, object] = {}

    async def good(name: str) -> None:
        results[name] = await _decode_ok()

    async def bad() -> None:
        try:
            await run_isolated(hostile.abort_decoder, what="'bad'")
        except InputError as exc:
            results["bad"] = exc

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(good, f"good{i}")
        tg.start_soon(bad)
        for i in range(3, 6):
            tg.start_soon(good, f"good{i}")
    assert isinstance(results.pop("bad"), InputError)
    assert len(results) == 6 and all(isinstance(r, DecodedImage) for r in results.values())


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "threads"])
async def test_pdf_pages_read_the_same_in_both_modes(isolate):
    data = hostile.pdf(3)
    media = _media(data, "'doc.pdf'")
    doc = await open_pdf(media, isolate=isolate)
    try:
        assert doc.page_count == 3
        assert await doc.has_text_layer(2) is True
        assert await doc.text_layer(2) == read_page_text(media, 2)
        image = await doc.render(1, 36, 10_000_000)
        assert image.size == (298, 421) and image.mode == "RGB"
        with pytest.raises(InputError, match=r"Page 9 is out of range: the document has 3 pages"):
            await doc.text_layer(9)
        with pytest.raises(InputError, match="would render at .* over the 1,000 pixel limit"):
            await doc.render(1, 150, 1000)
    finally:
        doc.close()


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "threads"])
async def test_pdf_open_errors_in_both_modes(isolate):
    with pytest.raises(InputError, match=r"^'a.pdf' is a ZIP archive"):
        await open_pdf(_media(hostile.zip_named_pdf(), "'a.pdf'"), isolate=isolate)


async def test_an_isolated_pdf_is_sent_to_the_decoder_once_per_call():
    """The document stays open in one leased decoder process: reading every page's text and rendering
    pages sends its bytes through the pipe once, not once per page."""
    data = hostile.pdf(20)
    media = _media(data, "'doc.pdf'")
    pool = decoder_pool()
    before = pool.bytes_sent
    doc = await open_pdf(media)
    try:
        assert doc._doc is None
        texts = [await doc.text_layer(n) for n in range(1, 21)]
        images = [await doc.render(n, 36, 10_000_000) for n in (1, 7, 20)]
    finally:
        doc.close()
    assert all(f"Page {n} says hello" in text for n, text in enumerate(texts, start=1))
    assert [image.size for image in images] == [(298, 421)] * 3
    sent = pool.bytes_sent - before
    assert len(data) < sent < 1.5 * len(data) + 10_000, sent


async def test_a_pdf_whose_decoder_died_is_opened_again_in_a_fresh_one():
    media = _media(hostile.pdf(3), "'doc.pdf'")
    doc = await open_pdf(media)
    try:
        assert "Page 1 says hello" in await doc.text_layer(1)
        generation = doc._lease.generation
        doc._lease._decoder.process.kill()  # as a page that crashes MuPDF would
        doc._lease._decoder.process.join(5)
        with pytest.raises(InputError, match="crashed the decoder"):
            await doc.render(2, 36, 10_000_000)
        image = await doc.render(3, 36, 10_000_000)  # a fresh process, the document opened there again
        assert image.size == (298, 421) and doc._lease.generation == generation + 1
    finally:
        doc.close()


def test_the_pool_starts_only_when_something_is_decoded(tmp_path):
    """Importing, building the server and listing tools start no process (cold start unchanged)."""
    code = textwrap.dedent(
        f"""
        import multiprocessing, sys, anyio
        from mcp import Client
        from mcp_vision.server import build_server
        from mcp_vision.settings import Settings

        async def main():
            async with Client(build_server(Settings(model={str(tmp_path)!r}))) as client:
                await client.list_tools()
        if __name__ == "__main__":
            anyio.run(main)
            print("mcp_vision.inputs.sandbox" in sys.modules, len(multiprocessing.active_children()))
        """
    )
    script = tmp_path / "cold.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "0"]


def test_workers_serve_calls_from_many_threads():
    """The pool is thread-safe: calls from several event loops at once all complete."""
    errors: list[BaseException] = []

    def one_loop() -> None:
        try:
            anyio.run(_decode_ok)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors


def test_nothing_a_decoder_prints_reaches_stdout(tmp_path):
    """stdout is the MCP channel: a worker's prints and MuPDF's complaints about a broken PDF go to stderr."""
    data = hostile.pdf(2)
    broken = data[: data.rindex(b"xref")].replace(b"endobj", b"endobjx", 2)
    (tmp_path / "broken.pdf").write_bytes(broken)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(
        """
        import sys, anyio
        from pathlib import Path
        from mcp_vision.errors import InputError
        from mcp_vision.inputs.sources import Media, sniff
        from mcp_vision.inputs.pdf import open_pdf
        from mcp_vision.inputs.sandbox import run_isolated

        async def main():
            await run_isolated(print, "printed by a decoder")
            data = Path(sys.argv[1]).read_bytes()
            try:
                doc = await open_pdf(Media(data, "'broken.pdf'", sniff(data)))
                for n in range(1, doc.page_count + 1):
                    await doc.text_layer(n)
                    await doc.render(n, 30, 10_000_000)
            except InputError as exc:
                sys.stderr.write(f"refused: {exc}\\n")
            sys.stderr.write("done\\n")

        if __name__ == "__main__":
            anyio.run(main)
        """
    ))
    env = {k: v for k, v in os.environ.items() if k != "PYMUPDF_MESSAGE"}
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "broken.pdf")], capture_output=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert out.stdout == b""
    assert b"printed by a decoder" in out.stderr and b"done" in out.stderr


async def test_isolated_text_layers_are_read_in_batches(monkeypatch):
    """Reading page after page asks the decoder process for TEXT_BATCH text layers at a time, not one per page."""
    from mcp_vision.inputs.sandbox import DecoderLease

    media = _media(hostile.pdf(20), "'doc.pdf'")
    calls: list[str] = []
    run = DecoderLease.run

    async def counting(self, fn, *args, **kwargs):
        calls.append(fn.__name__)
        return await run(self, fn, *args, **kwargs)

    doc = await open_pdf(media)
    monkeypatch.setattr(DecoderLease, "run", counting)
    try:
        texts = [await doc.text_layer(n) for n in range(1, 21)]
    finally:
        doc.close()
    assert all(f"Page {n} says hello" in text for n, text in enumerate(texts, start=1))
    assert calls == ["held_texts", "held_texts"]  # pages 1-16, then 17-20


def test_warm_starts_one_idle_worker_that_the_next_call_uses():
    from mcp_vision.inputs.sandbox import DecoderPool

    pool = DecoderPool(size=2)
    pool.warm()
    pool.warm()  # already warm: nothing more starts
    assert pool.started == 1 and len(pool._idle) == 1
    worker = pool._idle[0]
    assert worker.process.is_alive()
    for w in list(pool._idle):
        w.stop()


def test_a_worker_that_cannot_start_is_one_error_saying_what_to_do(monkeypatch):
    import mcp_vision.inputs.sandbox as sandbox
    from mcp_vision.errors import VisionError

    def refuse(_context):
        raise RuntimeError("An attempt has been made to start a new process before the current process has finished")

    monkeypatch.setattr(sandbox, "_Decoder", refuse)
    pool = sandbox.DecoderPool(size=1)
    pool.warm()  # in the background: logged, nothing raised
    with pytest.raises(VisionError, match="MCP_VISION_ISOLATE_DECODING=0") as refused:
        pool._checkout(threading.Event())
    assert "\n" not in str(refused.value) and pool._live == 0  # the slot is free again


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "threads"])
async def test_errors_keep_their_class_in_and_out_of_the_decoder_process(isolate):
    """Isolated or not, a decode raises the same error classes, so callers catch exactly what they mean."""
    from mcp_vision.errors import TooLarge

    big = _media(hostile.png((64, 64)), "'big.png'")
    with pytest.raises(TooLarge, match="pixel limit"):
        await run_isolated(decode_image, big, 100, what=big.label, isolate=isolate)
    pdf = _media(hostile.pdf(1), "'doc.pdf'")
    doc = await open_pdf(pdf, isolate=isolate)
    try:
        with pytest.raises(InputError, match="out of range") as refused:
            await doc.text_layer(5)
        assert type(refused.value) is InputError
    finally:
        doc.close()


def test_an_error_that_cannot_cross_the_pipe_intact_keeps_its_message():
    from mcp_vision.errors import ContextOverflowError, OutsideAllowedDirs
    from mcp_vision.inputs.sandbox import _portable

    kept = _portable(OutsideAllowedDirs("outside"))
    assert type(kept) is OutsideAllowedDirs and str(kept) == "outside"
    plain = _portable(ContextOverflowError(10, 2, 8))  # its constructor takes numbers, not a message
    assert type(plain) is InputError and str(plain) == str(ContextOverflowError(10, 2, 8))


async def test_cancelling_a_page_read_kills_the_leased_decoder_and_frees_it():
    """A render or frame decode cancelled mid-way: the lease's process is killed at once, the pool's slot
    is free again, and the next call decodes normally."""
    pool = decoder_pool()
    media = _media(hostile.pdf(2), "'doc.pdf'")
    doc = await open_pdf(media)
    try:
        started = time.monotonic()
        with anyio.move_on_after(0.3):
            await doc._lease.run(hostile.hang)
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and doc._lease.holding:
            await anyio.sleep(0.05)
        assert not doc._lease.holding and pool._leased == 0
        assert "Page 2 says hello" in await doc.text_layer(2)  # opened again in a fresh process
    finally:
        doc.close()
    await _decode_ok()
