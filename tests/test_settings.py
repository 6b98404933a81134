"""Settings.from_env: every MCP_VISION_* variable, bad values, allowed dirs, overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mcp_vision.settings import DEFAULT_MODEL, ENVIRONMENT, Settings


def test_empty_env_gives_defaults():
    s = Settings.from_env({})
    assert s.model == DEFAULT_MODEL
    assert (s.device, s.quantization, s.dtype) == ("auto", "auto", "auto")
    assert s.allow_urls is True and s.allow_private_urls is False and s.allow_download is False
    assert s.prompts_dir is None
    assert s.log_level == "INFO"


def test_blank_values_are_ignored():
    s = Settings.from_env({"MCP_VISION_MAX_TILES": "   ", "MCP_VISION_DEVICE": ""})
    assert s.max_tiles == Settings().max_tiles
    assert s.device == "auto"


def test_every_variable_is_parsed(tmp_path):
    env = {
        "MCP_VISION_MODEL": "  some/model  ",
        "MCP_VISION_DEVICE": "CPU",
        "MCP_VISION_QUANTIZATION": "nf4",
        "MCP_VISION_DTYPE": "bfloat16",
        "MCP_VISION_ALLOWED_DIRS": str(tmp_path),
        "MCP_VISION_CLIENT_ROOTS": "no",
        "MCP_VISION_ALLOW_DOWNLOAD": "yes",
        "MCP_VISION_ALLOW_URLS": "off",
        "MCP_VISION_ALLOW_PRIVATE_URLS": "1",
        "MCP_VISION_MAX_FILE_BYTES": "1234",
        "MCP_VISION_MAX_IMAGE_PIXELS": "5000",
        "MCP_VISION_MAX_TILES": "6",
        "MCP_VISION_MAX_NEW_TOKENS": "99",
        "MCP_VISION_MAX_PAGES": "7",
        "MCP_VISION_OCR_BATCH": "16",
        "MCP_VISION_MAX_FRAMES": "64",
        "MCP_VISION_MAX_OUTPUT_CHARS": "5000",
        "MCP_VISION_CACHE_BYTES": "0",
        "MCP_VISION_MAX_SESSIONS": "3",
        "MCP_VISION_SESSION_TTL": "60",
        "MCP_VISION_URL_TIMEOUT": "2.5",
        "MCP_VISION_CALL_BUDGET": "25",
        "MCP_VISION_GROUNDING": "Qwen2_VL",
        "MCP_VISION_ISOLATE_DECODING": "off",
        "MCP_VISION_PROMPTS_DIR": str(tmp_path / "p"),
        "MCP_VISION_PRELOAD": "true",
        "MCP_VISION_LOG_LEVEL": "debug",
        "MCP_VISION_BACKEND": "OpenAI",
        "MCP_VISION_BASE_URL": " http://engine.internal:23333/v1/ ",
        "MCP_VISION_API_KEY": " sk-secret ",
        "MCP_VISION_REMOTE_MODEL": " OpenGVLab/InternVL3-2B ",
        "MCP_VISION_REMOTE_CONCURRENCY": "8",
        "MCP_VISION_REMOTE_TIMEOUT": "90",
        "MCP_VISION_REMOTE_RETRIES": "0",
        "MCP_VISION_OPENVINO_WEIGHTS": "INT4",
        "MCP_VISION_OPENVINO_VISION": "f16",
        "MCP_VISION_OPENVINO_CACHE": str(tmp_path / "ov"),
        "MCP_VISION_THREADS": "1",
        "MCP_VISION_CORS_ORIGINS": "https://host.example,http://localhost:5173 https://host.example",
        "MCP_VISION_PREVIEWS": "Declared",
        "MCP_VISION_AUTH_TOKENS_FILE": str(tmp_path / "tokens"),
        "MCP_VISION_AUTH_ISSUER": " https://auth.example.com ",
        "MCP_VISION_AUTH_JWKS_URL": "https://auth.example.com/keys",
        "MCP_VISION_AUTH_SCOPES": "vision, read vision",
        "MCP_VISION_RESOURCE_URL": "https://vision.example.com/mcp",
        "MCP_VISION_REMOTE_ALLOWED_DIRS": str(tmp_path / "shared"),
        "MCP_VISION_QUEUE_PER_CALLER": "5",
        "MCP_VISION_PUBLIC_METRICS": "yes",
    }
    assert set(env) == set(ENVIRONMENT.values())  # the test covers every variable
    s = Settings.from_env(env)
    assert s.model == "some/model"
    assert (s.openvino_weights, s.openvino_vision, s.openvino_cache, s.threads) == ("int4", "f16", tmp_path / "ov", 1)
    assert s.device == "cpu"
    assert s.quantization == "nf4"
    assert s.client_roots is False
    assert s.ocr_batch == 16
    assert s.dtype == "bfloat16"
    assert s.allowed_dirs == (tmp_path,)
    assert s.allow_download is True
    assert s.allow_urls is False
    assert s.allow_private_urls is True
    assert s.max_file_bytes == 1234
    assert s.max_image_pixels == 5000
    assert s.max_tiles == 6
    assert s.max_new_tokens == 99
    assert s.max_pages == 7
    assert s.max_frames == 64
    assert s.max_output_chars == 5000
    assert (s.cache_bytes, s.max_sessions, s.session_ttl) == (0, 3, 60.0)
    assert s.url_timeout == 2.5
    assert s.call_budget == 25.0
    assert s.grounding == "qwen2_vl"
    assert s.isolate_decoding is False
    assert s.prompts_dir == tmp_path / "p"
    assert s.preload is True
    assert s.log_level == "DEBUG"
    assert (s.backend, s.base_url, s.api_key) == ("openai", "http://engine.internal:23333/v1", "sk-secret")
    assert s.remote_model == "OpenGVLab/InternVL3-2B"
    assert (s.remote_concurrency, s.remote_timeout, s.remote_retries) == (8, 90.0, 0)
    assert s.cors_origins == ("https://host.example", "http://localhost:5173")
    assert s.previews == "declared"
    assert (s.auth_tokens_file, s.auth_issuer, s.auth_jwks_url) == (
        tmp_path / "tokens", "https://auth.example.com", "https://auth.example.com/keys")
    assert s.auth_scopes == ("vision", "read") and s.resource_url == "https://vision.example.com/mcp"
    assert s.remote_allowed_dirs == (tmp_path / "shared",)
    assert (s.queue_per_caller, s.public_metrics) == (5, True)
    for var, bad in (("MCP_VISION_AUTH_ISSUER", "auth.example.com"), ("MCP_VISION_RESOURCE_URL", "ftp://x/mcp"),
                     ("MCP_VISION_QUEUE_PER_CALLER", "0")):
        with pytest.raises(ValueError, match=var):
            Settings.from_env({var: bad})


def test_the_remote_engine_needs_a_base_url_and_keeps_the_key_out_of_repr():
    assert Settings.from_env({}).backend == "auto"
    with pytest.raises(ValueError, match="MCP_VISION_BACKEND=openai needs MCP_VISION_BASE_URL"):
        Settings.from_env({"MCP_VISION_BACKEND": "openai"})
    with pytest.raises(ValueError, match="MCP_VISION_BASE_URL"):
        Settings(backend="openai")
    s = Settings.from_env({"MCP_VISION_BACKEND": "openai", "MCP_VISION_BASE_URL": "https://e.example/v1",
                           "MCP_VISION_API_KEY": "sk-do-not-print"})
    assert "sk-do-not-print" not in repr(s) and "sk-do-not-print" not in str(s)


@pytest.mark.parametrize("raw,expected", [("1", True), ("TRUE", True), ("On", True), ("0", False), ("no", False)])
def test_boolean_spellings(raw, expected):
    assert Settings.from_env({"MCP_VISION_PRELOAD": raw}).preload is expected


@pytest.mark.parametrize(
    "var,value,message",
    [
        ("MCP_VISION_MAX_TILES", "500", "MCP_VISION_MAX_TILES='500' is out of range: use 1 to 40"),
        ("MCP_VISION_MAX_TILES", "0", "MCP_VISION_MAX_TILES='0' is out of range: use 1 to 40"),
        ("MCP_VISION_MAX_NEW_TOKENS", "-5", "MCP_VISION_MAX_NEW_TOKENS='-5' is out of range: use 1 to 8192"),
        ("MCP_VISION_OCR_BATCH", "99", "MCP_VISION_OCR_BATCH='99' is out of range: use 1 to 16"),
        ("MCP_VISION_MAX_FRAMES", "100", "MCP_VISION_MAX_FRAMES='100' is out of range: use 1 to 64"),
    ],
)
def test_values_beyond_a_cap_are_refused_not_silently_capped(var, value, message):
    with pytest.raises(ValueError) as refused:
        Settings.from_env({var: value})
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "var,value",
    [
        ("MCP_VISION_DEVICE", "tpu"),
        ("MCP_VISION_QUANTIZATION", "int4"),
        ("MCP_VISION_DTYPE", "float8"),
        ("MCP_VISION_ALLOW_URLS", "maybe"),
        ("MCP_VISION_ALLOW_DOWNLOAD", "2"),
        ("MCP_VISION_ALLOW_PRIVATE_URLS", "y"),
        ("MCP_VISION_PRELOAD", "enabled"),
        ("MCP_VISION_MAX_FILE_BYTES", "10MB"),
        ("MCP_VISION_MAX_FILE_BYTES", "0"),
        ("MCP_VISION_MAX_IMAGE_PIXELS", "-5"),
        ("MCP_VISION_MAX_TILES", "1.5"),
        ("MCP_VISION_MAX_NEW_TOKENS", "many"),
        ("MCP_VISION_URL_TIMEOUT", "soon"),
        ("MCP_VISION_URL_TIMEOUT", "0"),
        ("MCP_VISION_URL_TIMEOUT", "-1"),
        ("MCP_VISION_LOG_LEVEL", "verbose"),
        ("MCP_VISION_BACKEND", "vllm"),
        ("MCP_VISION_BASE_URL", "localhost:23333/v1"),
        ("MCP_VISION_BASE_URL", "ftp://engine/v1"),
        ("MCP_VISION_REMOTE_CONCURRENCY", "0"),
        ("MCP_VISION_REMOTE_TIMEOUT", "0"),
        ("MCP_VISION_REMOTE_RETRIES", "-1"),
    ],
)
def test_bad_value_raises_value_error_naming_the_variable(var, value):
    with pytest.raises(ValueError) as info:
        Settings.from_env({var: value})
    assert var in str(info.value)
    assert value in str(info.value)


def test_nan_url_timeout_is_refused():
    with pytest.raises(ValueError, match="MCP_VISION_URL_TIMEOUT"):
        Settings.from_env({"MCP_VISION_URL_TIMEOUT": "nan"})


def test_allowed_dirs_split_on_pathsep_and_skip_empty_parts(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    raw = os.pathsep.join([str(a), "", " ", str(b)])
    assert Settings.from_env({"MCP_VISION_ALLOWED_DIRS": raw}).allowed_dirs == (a, b)


def test_allowed_dirs_and_prompts_dir_expand_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings.from_env({"MCP_VISION_ALLOWED_DIRS": "~/pics", "MCP_VISION_PROMPTS_DIR": "~/prompts"})
    assert s.allowed_dirs == (tmp_path / "pics",)
    assert s.prompts_dir == tmp_path / "prompts"


def test_default_allowed_dir_is_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.allowed_dirs is None and settings.default_dirs() == (Path.cwd(),)


@pytest.mark.parametrize("where", ["/", "home"])
def test_the_root_and_home_directories_are_never_a_default(monkeypatch, tmp_path, where):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir("/" if where == "/" else tmp_path)
    assert Settings().default_dirs() == ()


def test_with_overrides_ignores_none_and_applies_values():
    base = Settings(max_tiles=7, device="cpu")
    s = base.with_overrides(max_tiles=None, device="cuda", preload=True)
    assert s.max_tiles == 7
    assert s.device == "cuda"
    assert s.preload is True
    assert base.device == "cpu"  # frozen original unchanged


def test_with_overrides_keeps_false_and_zero_like_values():
    s = Settings(allow_urls=True).with_overrides(allow_urls=False)
    assert s.allow_urls is False


def test_resolved_allowed_dirs_follow_symlinks(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert Settings(allowed_dirs=(link,)).resolved_allowed_dirs() == (real.resolve(),)


def test_command_line_flags_override_the_environment(tmp_path, monkeypatch):
    from mcp_vision.cli import build_parser, settings_from

    monkeypatch.setenv("MCP_VISION_CLIENT_ROOTS", "1")
    monkeypatch.setenv("MCP_VISION_ALLOW_URLS", "1")
    monkeypatch.setenv("MCP_VISION_MAX_TILES", "12")
    args = build_parser().parse_args(
        ["--no-client-roots", "--no-urls", "--max-tiles", "3", "--allowed-dir", str(tmp_path)]
    )
    s = settings_from(args)
    assert (s.client_roots, s.allow_urls, s.max_tiles, s.allowed_dirs) == (False, False, 3, (tmp_path,))
    assert settings_from(build_parser().parse_args([])).client_roots is True  # absent flags leave the env


def test_the_call_budget_can_be_switched_off_and_is_bounded():
    assert Settings.from_env({"MCP_VISION_CALL_BUDGET": "0"}).call_budget == 0
    with pytest.raises(ValueError, match="MCP_VISION_CALL_BUDGET='-1' is out of range: use 0 \\(no budget\\) to 3600"):
        Settings.from_env({"MCP_VISION_CALL_BUDGET": "-1"})
