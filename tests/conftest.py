"""Shared fixtures: the tiny random-weight InternVL (built once per test run, offline) and settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mcp_vision.settings import Settings

from bench.tiny_internvl import build_tiny_internvl
from bench.tiny_qwen import build_tiny_qwen

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYMUPDF_MESSAGE", "fd:2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real InternVL checkpoint layout (config, safetensors, tokenizer, processors), tiny widths."""
    return build_tiny_internvl(tmp_path_factory.mktemp("tiny-internvl"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    d = tmp_path / "media"
    d.mkdir()
    return d


@pytest.fixture
def settings(tiny_model_dir: Path, media_dir: Path) -> Settings:
    """Float32 on CPU so greedy outputs are exactly repeatable."""
    return Settings(
        model=str(tiny_model_dir),
        device="cpu",
        quantization="none",
        dtype="float32",
        allowed_dirs=(media_dir,),
        max_new_tokens=8,
        max_tiles=4,
    )


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path):
    """One loaded real backend shared by the end-to-end tests (loading once keeps the suite quick)."""
    from mcp_vision.backend.pytorch.engine import PyTorchBackend
    from mcp_vision.worker import Job

    backend = PyTorchBackend(
        Settings(model=str(tiny_model_dir), device="cpu", quantization="none", dtype="float32")
    )
    backend.load(Job())
    return backend


QWEN_FAMILIES = ["qwen2_vl", "qwen2_5_vl"]


@pytest.fixture(scope="session")
def tiny_qwen_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight Qwen2-VL and Qwen2.5-VL checkpoints (stock configs and processors), by model type."""
    return {family: build_tiny_qwen(tmp_path_factory.mktemp(family), family) for family in QWEN_FAMILIES}


@pytest.fixture(scope="session")
def tiny_qwen_backends(tiny_qwen_dirs: dict[str, Path]):
    """One loaded real backend per Qwen family, shared like tiny_backend."""
    from mcp_vision.backend.pytorch.engine import PyTorchBackend
    from mcp_vision.worker import Job

    backends = {}
    for family, path in tiny_qwen_dirs.items():
        backends[family] = PyTorchBackend(Settings(model=str(path), device="cpu", quantization="none", dtype="float32"))
        backends[family].load(Job())
    return backends


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` run only with CUDA present and MCP_VISION_TEST_CUDA=1 (pyproject's marker says so)."""
    wanted = os.environ.get("MCP_VISION_TEST_CUDA") == "1"
    reason = "needs CUDA: set MCP_VISION_TEST_CUDA=1 on a machine with a GPU"
    if wanted:
        import torch

        if torch.cuda.is_available():
            return
        reason = "MCP_VISION_TEST_CUDA=1 but no CUDA device is available"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
