"""What the service tells about its work (`Events`, which does nothing), and the Prometheus metrics that count
it for `/metrics` when serving HTTP (prometheus-client, imported only then, into a registry of this server's own).
MCP-free."""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 300.0, 900.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Events:
    """The service's observer; this one ignores everything (stdio, tests)."""

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        """A tool call ended: outcome "ok", "error" (the caller's to fix, isError) or "busy" (refused, retry)."""

    def queue_wait(self, seconds: float) -> None:
        """A model call left the queue after waiting this long."""

    def generated(self, tokens: int) -> None:
        """The model wrote this many tokens."""


class PrometheusMetrics(Events):
    """The counters, histograms and gauges behind `/metrics`; gauges are read from the service at scrape time."""

    def __init__(self, service: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self._calls = Counter("mcp_vision_tool_calls", "Tool calls by tool and outcome (ok, error, busy).",
                              ["tool", "outcome"], registry=self.registry)
        self._latency = Histogram("mcp_vision_tool_call_seconds", "Seconds from a tool call's arrival to its answer.",
                                  ["tool"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._waits = Histogram("mcp_vision_queue_wait_seconds", "Seconds a model call waited in the queue.",
                                buckets=WAIT_BUCKETS, registry=self.registry)
        self._tokens = Counter("mcp_vision_generated_tokens", "Tokens the model wrote.", registry=self.registry)
        worker = service.worker
        Gauge("mcp_vision_queue_depth", "Model calls waiting in the queue.",
              registry=self.registry).set_function(lambda: worker.waiting)
        Gauge("mcp_vision_queue_running", "Model calls running.",
              registry=self.registry).set_function(lambda: worker.running)
        Gauge("mcp_vision_model_load_seconds", "Seconds the model took to load (0 until it has).",
              registry=self.registry).set_function(lambda: service.load_seconds)
        self._engine = Gauge("mcp_vision_engine_info", "The engine in use (1), by engine and model.",
                             ["engine", "model"], registry=self.registry)
        self._service = service

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        self._calls.labels(tool=tool, outcome=outcome).inc()
        self._latency.labels(tool=tool).observe(seconds)

    def queue_wait(self, seconds: float) -> None:
        self._waits.observe(seconds)

    def generated(self, tokens: int) -> None:
        if tokens > 0:
            self._tokens.inc(tokens)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        engine, model = self._service.engine_in_use()
        self._engine.clear()
        self._engine.labels(engine=engine, model=model).set(1)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def endpoint(self, _request: Any) -> Any:
        from starlette.responses import Response

        body, content_type = self.render()
        return Response(body, media_type=content_type.split(";")[0], headers={"Content-Type": content_type})


__all__ = ["Events", "PrometheusMetrics"]
