"""The tools' logic, free of MCP: validate, load media, ask the backend, shape the result."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from .backend.base import Backend, ChatResult, Turn
from .errors import InputError, NotImplementedYetError
from .prompts import PromptLibrary
from .results import DescribeImageResult, FollowUpResult, ImageInfo, Usage
from .sessions import SessionStore
from .settings import Settings
from .worker import InferenceWorker

Progress = Callable[[float, float | None, str | None], Awaitable[None]]

MAX_NEW_TOKENS_CAP = 8192
MAX_QUESTION_CHARS = 20_000


class VisionService:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self.prompts = PromptLibrary(settings.prompts_dir)
        self.sessions = SessionStore()
        self.worker = InferenceWorker()
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from .backend import create_backend

            self._backend = create_backend(self.settings)
        return self._backend

    # ------------------------------------------------------------ helpers

    def _max_new_tokens(self, value: int | None) -> int:
        if value is None:
            return self.settings.max_new_tokens
        if not 1 <= value <= MAX_NEW_TOKENS_CAP:
            raise InputError(f"max_new_tokens={value} is out of range: use 1 to {MAX_NEW_TOKENS_CAP}.")
        return value

    def _max_tiles(self, value: int | None) -> int:
        if value is None:
            return self.settings.max_tiles
        if not 1 <= value <= self.settings.max_tiles:
            raise InputError(f"max_tiles={value} is out of range: use 1 to {self.settings.max_tiles} (MCP_VISION_MAX_TILES).")
        return value

    @staticmethod
    def _question(value: str | None, default: str) -> str:
        if value is None or not value.strip():
            return default
        if len(value) > MAX_QUESTION_CHARS:
            raise InputError(f"The question is {len(value):,} characters; the limit is {MAX_QUESTION_CHARS:,}.")
        return value.strip()

    async def _chat(self, turns: list[Turn], progress: Progress | None, max_new_tokens: int) -> ChatResult:
        backend = self.backend
        label = "loading model" if not backend.loaded else "generating"
        return await self.worker.run(
            lambda job: backend.chat(turns, job, max_new_tokens=max_new_tokens),
            progress=progress,
            label=label,
        )

    async def load_image(self, source: str):
        from .images import decode_image
        from .media import load_media

        def read():
            return decode_image(load_media(source, self.settings), self.settings.max_image_pixels)

        return await anyio.to_thread.run_sync(read)

    async def preload(self) -> float:
        backend = self.backend
        return await self.worker.run(backend.load, label="loading model")

    # ------------------------------------------------------------ tools

    async def describe_image(
        self,
        image: str,
        question: str | None = None,
        max_new_tokens: int | None = None,
        max_tiles: int | None = None,
        session_id: str | None = None,
        progress: Progress | None = None,
    ) -> DescribeImageResult:
        started = time.monotonic()
        tokens = self._max_new_tokens(max_new_tokens)
        tiles = self._max_tiles(max_tiles)
        asked = self._question(question, self.prompts.task("describe").text.strip())
        if session_id:
            self.sessions.get(session_id)  # fail before any work on an unknown session
        decoded = await self.load_image(image)
        session = self.sessions.get_or_create(session_id)
        user = Turn.user(asked, [decoded.image], max_tiles=tiles)
        result = await self._chat([*session.turns, user], progress, tokens)
        session.turns += [user, Turn.assistant(result.text)]
        return DescribeImageResult(
            answer=result.text,
            session_id=session.id,
            model=self.backend.model_name,
            image=ImageInfo(width=decoded.width, height=decoded.height, format=decoded.format),
            tiles=result.tiles[0] if result.tiles else 0,
            usage=_usage(result),
            finish_reason="length" if result.finish_reason == "length" else "stop",
            seconds=round(time.monotonic() - started, 3),
            load_seconds=round(result.load_seconds, 3),
        )

    async def follow_up(
        self,
        session_id: str,
        question: str,
        max_new_tokens: int | None = None,
        progress: Progress | None = None,
    ) -> FollowUpResult:
        started = time.monotonic()
        tokens = self._max_new_tokens(max_new_tokens)
        if not question or not question.strip():
            raise InputError("The question is empty: say what you want to know about the session's media.")
        asked = self._question(question, "")
        session = self.sessions.get(session_id)
        user = Turn.user(asked)
        result = await self._chat([*session.turns, user], progress, tokens)
        session.turns += [user, Turn.assistant(result.text)]
        return FollowUpResult(
            answer=result.text,
            session_id=session.id,
            model=self.backend.model_name,
            turns=session.turn_count,
            usage=_usage(result),
            finish_reason="length" if result.finish_reason == "length" else "stop",
            seconds=round(time.monotonic() - started, 3),
        )

    @staticmethod
    def not_yet(tool: str, issue: int) -> NotImplementedYetError:
        return NotImplementedYetError(
            f"{tool} is not implemented yet in this version of mcp-vision (tracked in issue #{issue}); "
            "describe_image and follow_up work now."
        )


def _usage(result: ChatResult) -> Usage:
    return Usage(prompt_tokens=result.prompt_tokens, image_tokens=result.image_tokens, output_tokens=result.output_tokens)


__all__ = ["VisionService"]
