"""Operations without HTTP: readiness follows the model load and the engine's last answer; the metrics count tool
calls by outcome (ok, error, busy), queue waits and generated tokens (the stub OpenAI-compatible engine)."""

from __future__ import annotations

import base64
import re

import pytest
from mcp import Client

from mcp_vision.errors import BusyError
from mcp_vision.metrics import PrometheusMetrics
from mcp_vision.server import build_server
from mcp_vision.service import VisionService

from . import hostile
from .support.remote import Reply, engine, quick_backoff, remote_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio

PNG_URI = "data:image/png;base64," + base64.b64encode(hostile.png()).decode()


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_readiness_follows_the_load_and_the_engines_last_answer(engine, remote_settings):  # noqa: F811
    service = VisionService(remote_settings)
    server = build_server(service=service)
    state = service.readiness()
    assert state["ready"] is False and "not loaded yet" in state["reason"] and "--preload" in state["reason"]
    async with Client(server) as client:
        assert not (await client.call_tool("describe_image", {"image": PNG_URI})).is_error
        assert service.readiness() | {"ready": True, "engine": "remote"} == service.readiness()
        engine.replies.append(Reply(status=500, error={"error": {"message": "engine fell over"}}))
        failed = await client.call_tool("describe_image", {"image": PNG_URI})
        assert failed.is_error
        state = service.readiness()
        assert state["ready"] is False and state["reason"].startswith("the last model call failed"), state
        assert not (await client.call_tool("describe_image", {"image": PNG_URI})).is_error
        assert service.readiness()["ready"] is True
        # A caller's own mistake says nothing about the engine.
        assert (await client.call_tool("describe_image", {"image": "data:image/png;base64,AAAA"})).is_error
        assert service.readiness()["ready"] is True


async def test_metrics_count_calls_by_outcome_waits_and_tokens(engine, remote_settings):  # noqa: F811
    service = VisionService(remote_settings)
    metrics = PrometheusMetrics(service)
    service.events = metrics
    server = build_server(service=service)
    async with Client(server) as client:
        for _ in range(2):
            assert not (await client.call_tool("describe_image", {"image": PNG_URI})).is_error
        assert (await client.call_tool("describe_image", {"image": "/nowhere/x.png"})).is_error
        assert (await client.call_tool("follow_up", {"session_id": "vs_unknown", "question": "?"})).is_error
        def full(_caller):  # the queue's refusal itself is tested in test_worker.py and test_fairness.py
            raise BusyError("The server is busy with 9 queued model calls: retry in about 1.0 s.")

        service.worker._admit = full
        busy = await client.call_tool("describe_image", {"image": PNG_URI})
        assert busy.is_error and "retry in about" in busy.content[0].text
    text, content_type = metrics.render()
    text = text.decode()
    assert content_type.startswith("text/plain")
    assert _value(text, 'mcp_vision_tool_calls_total{outcome="ok",tool="describe_image"}') == 2
    assert _value(text, 'mcp_vision_tool_calls_total{outcome="error",tool="describe_image"}') == 1
    assert _value(text, 'mcp_vision_tool_calls_total{outcome="error",tool="follow_up"}') == 1
    assert _value(text, 'mcp_vision_tool_calls_total{outcome="busy",tool="describe_image"}') == 1
    assert _value(text, 'mcp_vision_tool_call_seconds_count{tool="describe_image"}') == 4
    assert _value(text, "mcp_vision_queue_wait_seconds_count") >= 3  # the load and the two answered calls
    assert _value(text, "mcp_vision_generated_tokens_total") == 8  # the engine reports 4 a call
    assert _value(text, "mcp_vision_queue_depth") == 0
    assert _value(text, f'mcp_vision_engine_info{{engine="remote",model="{remote_settings.remote_model}"}}') == 1
