"""Settings: one object built in `main()` from `MCP_VISION_*` variables and command-line flags."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from . import limits
from .grounding import FAMILIES as GROUNDING_FAMILIES

DEFAULT_MODEL = "OpenGVLab/InternVL3-2B-hf"

Device = Literal["auto", "cuda", "mps", "cpu"]
Quantization = Literal["auto", "nf4", "int8", "none"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
# auto: OpenVINO on a machine without CUDA when the `openvino` extra is installed (and no PyTorch-only knob is
# set), else local; local: PyTorch; openvino: the OpenVINO engine; openai: a remote engine over HTTP.
BackendKind = Literal["auto", "local", "openvino", "openai"]
OpenVINOWeights = Literal["int8", "int4", "f16"]  # the language model's weights under OpenVINO
OpenVINOVision = Literal["int8", "f16"]  # the vision tower under OpenVINO (int8: weights and activations)
# Which clients' results name previews for the viewer: all (hosts render MCP Apps without declaring them: the
# reference host does), only those that declared io.modelcontextprotocol/ui, or none.
PreviewPolicy = Literal["all", "declared", "none"]


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean: use 1/0, true/false, yes/no or on/off")


def _parse_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    lowered = value.strip().lower()
    if lowered not in choices:
        raise ValueError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return lowered


def _parse_int(name: str, value: str, minimum: int = 1, maximum: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None
    if maximum is not None and not minimum <= number <= maximum:
        raise ValueError(f"{name}={value!r} is out of range: use {minimum} to {maximum}")
    if number < minimum:
        raise ValueError(f"{name}={value!r} must be at least {minimum}")
    return number


def _parse_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name}={value!r} must be a positive, finite number")
    return number


def _parse_seconds(name: str, value: str, maximum: float) -> float:
    """Seconds from 0 (off) to `maximum`."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from None
    if not math.isfinite(number) or not 0 <= number <= maximum:
        raise ValueError(f"{name}={value!r} is out of range: use 0 (no budget) to {maximum:g} seconds")
    return number


def _parse_url(name: str, value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(
            f"{name}={value!r} is not an http(s) URL: use the engine's OpenAI-compatible address, "
            "such as http://127.0.0.1:23333/v1"
        )
    return url


def _parse_http_url(name: str, value: str, example: str) -> str:
    """An http(s) URL kept exactly as written: issuers and audiences compare as exact strings."""
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{name}={value!r} is not an http(s) URL: give {example}")
    return url


def _parse_origins(name: str, value: str) -> tuple[str, ...]:
    """Web origins (`scheme://host[:port]`, nothing after), separated by commas or spaces."""
    origins = []
    for part in value.replace(",", " ").split():
        origin = part.rstrip("/")
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path or parts.query or "@" in origin:
            raise ValueError(
                f"{name}={part!r} is not a web origin: give scheme, host and port only, such as "
                "http://localhost:8080 (no path, no wildcard)"
            )
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _parse_dirs(value: str) -> tuple[Path, ...]:
    return tuple(Path(part).expanduser() for part in value.split(os.pathsep) if part.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the server is configured with. Environment names are in `ENVIRONMENT`."""

    model: str = DEFAULT_MODEL
    device: Device = "auto"
    quantization: Quantization = "auto"
    dtype: DType = "auto"
    # None: nothing configured. Then the client's roots are where files are read, or, without roots, the
    # working directory (never `/` or the home directory itself: desktop clients start servers there).
    allowed_dirs: tuple[Path, ...] | None = None
    client_roots: bool = True
    roots_replace_default: bool = True  # off when serving HTTP beyond loopback: roots then only narrow
    anonymous_remote: bool = False  # on when serving HTTP beyond loopback: unauthenticated callers are remote
    allow_download: bool = False
    allow_urls: bool = True
    allow_private_urls: bool = False
    max_file_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = limits.DEFAULT_MAX_IMAGE_PIXELS
    max_tiles: int = limits.DEFAULT_MAX_TILES
    max_new_tokens: int = limits.DEFAULT_MAX_NEW_TOKENS
    max_pages: int = limits.DEFAULT_MAX_PAGES
    ocr_batch: int = limits.DEFAULT_OCR_BATCH
    max_frames: int = limits.DEFAULT_MAX_FRAMES
    max_output_chars: int = limits.DEFAULT_MAX_OUTPUT_CHARS
    cache_bytes: int = 2 * 1024**3
    max_sessions: int = 64
    session_ttl: float = 3600.0
    url_timeout: float = 20.0
    call_budget: float = limits.DEFAULT_CALL_BUDGET  # seconds a call may take; 0: no budget
    grounding: str = "auto"  # whose box syntax locate parses: one of grounding.FAMILIES, or auto (from the model)
    isolate_decoding: bool = True
    prompts_dir: Path | None = None
    preload: bool = False
    log_level: str = "INFO"
    backend: BackendKind = "auto"
    openvino_weights: OpenVINOWeights = "int8"
    openvino_vision: OpenVINOVision = "int8"
    openvino_cache: Path | None = None  # where conversions are kept; None: ~/.cache/mcp-vision/openvino
    threads: int = 0  # CPU threads for the OpenVINO engine; 0: OpenVINO's choice (the physical cores)
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # a secret: never in repr, logs or errors
    remote_model: str | None = None
    remote_concurrency: int = 4
    remote_timeout: float = 300.0
    remote_retries: int = 3
    # Web origins whose pages may call the streamable-HTTP endpoint (CORS); empty: none, as a browser's default.
    cors_origins: tuple[str, ...] = ()
    previews: PreviewPolicy = "all"
    # Serving a team over streamable HTTP (see access.py): named bearer tokens from a file, and/or JWTs from an
    # OAuth authorization server; the resource URL is this server's public address (the JWTs' audience).
    auth_tokens_file: Path | None = None
    auth_issuer: str | None = None
    auth_jwks_url: str | None = None  # None: from the issuer's metadata (RFC 8414, else OpenID discovery)
    auth_scopes: tuple[str, ...] = ()  # scopes every token must carry
    resource_url: str | None = None  # None: http://HOST:PORT/mcp as served
    # Directories authenticated (remote) callers may name server-side paths in; None: none (data: URIs and
    # public URLs only). The local user's boundary (allowed_dirs, roots) never applies to them.
    remote_allowed_dirs: tuple[Path, ...] | None = None
    queue_per_caller: int = limits.DEFAULT_QUEUE_PER_CALLER  # model calls one authenticated caller may have queued
    public_metrics: bool = False  # /metrics without a token (healthz and readyz always are)

    def __post_init__(self) -> None:
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                "MCP_VISION_BACKEND=openai needs MCP_VISION_BASE_URL: set it to the engine's OpenAI-compatible "
                "address, such as http://127.0.0.1:23333/v1"
            )

    def default_dirs(self) -> tuple[Path, ...]:
        """Where files are read when no directory is configured and the client offers no roots: the working
        directory, unless it is `/` or the home directory itself (then nothing)."""
        cwd = Path.cwd()
        too_wide = {Path(os.path.realpath("/")), Path(os.path.realpath(Path.home()))}
        return () if Path(os.path.realpath(cwd)) in too_wide else (cwd,)

    def resolved_allowed_dirs(self) -> tuple[Path, ...]:
        """The configured (or default) directories with symlinks resolved (the form paths are compared in)."""
        dirs = self.allowed_dirs if self.allowed_dirs is not None else self.default_dirs()
        return tuple(Path(os.path.realpath(d)) for d in dirs)

    def with_overrides(self, **overrides: object) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every `MCP_VISION_*` variable; raise ValueError naming the variable on a bad value."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            var = ENVIRONMENT.get(f.name)
            if var is None:  # set by the command line only (roots_replace_default, anonymous_remote)
                continue
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _PARSERS[f.name](var, raw)
        return cls(**values)


# Field name -> environment variable. README and server.json list the same names.
ENVIRONMENT: dict[str, str] = {
    "model": "MCP_VISION_MODEL",
    "device": "MCP_VISION_DEVICE",
    "quantization": "MCP_VISION_QUANTIZATION",
    "dtype": "MCP_VISION_DTYPE",
    "allowed_dirs": "MCP_VISION_ALLOWED_DIRS",
    "client_roots": "MCP_VISION_CLIENT_ROOTS",
    "allow_download": "MCP_VISION_ALLOW_DOWNLOAD",
    "allow_urls": "MCP_VISION_ALLOW_URLS",
    "allow_private_urls": "MCP_VISION_ALLOW_PRIVATE_URLS",
    "max_file_bytes": "MCP_VISION_MAX_FILE_BYTES",
    "max_image_pixels": "MCP_VISION_MAX_IMAGE_PIXELS",
    "max_tiles": "MCP_VISION_MAX_TILES",
    "max_new_tokens": "MCP_VISION_MAX_NEW_TOKENS",
    "max_pages": "MCP_VISION_MAX_PAGES",
    "ocr_batch": "MCP_VISION_OCR_BATCH",
    "max_frames": "MCP_VISION_MAX_FRAMES",
    "max_output_chars": "MCP_VISION_MAX_OUTPUT_CHARS",
    "cache_bytes": "MCP_VISION_CACHE_BYTES",
    "max_sessions": "MCP_VISION_MAX_SESSIONS",
    "session_ttl": "MCP_VISION_SESSION_TTL",
    "url_timeout": "MCP_VISION_URL_TIMEOUT",
    "call_budget": "MCP_VISION_CALL_BUDGET",
    "grounding": "MCP_VISION_GROUNDING",
    "isolate_decoding": "MCP_VISION_ISOLATE_DECODING",
    "prompts_dir": "MCP_VISION_PROMPTS_DIR",
    "preload": "MCP_VISION_PRELOAD",
    "log_level": "MCP_VISION_LOG_LEVEL",
    "backend": "MCP_VISION_BACKEND",
    "openvino_weights": "MCP_VISION_OPENVINO_WEIGHTS",
    "openvino_vision": "MCP_VISION_OPENVINO_VISION",
    "openvino_cache": "MCP_VISION_OPENVINO_CACHE",
    "threads": "MCP_VISION_THREADS",
    "base_url": "MCP_VISION_BASE_URL",
    "api_key": "MCP_VISION_API_KEY",
    "remote_model": "MCP_VISION_REMOTE_MODEL",
    "remote_concurrency": "MCP_VISION_REMOTE_CONCURRENCY",
    "remote_timeout": "MCP_VISION_REMOTE_TIMEOUT",
    "remote_retries": "MCP_VISION_REMOTE_RETRIES",
    "cors_origins": "MCP_VISION_CORS_ORIGINS",
    "previews": "MCP_VISION_PREVIEWS",
    "auth_tokens_file": "MCP_VISION_AUTH_TOKENS_FILE",
    "auth_issuer": "MCP_VISION_AUTH_ISSUER",
    "auth_jwks_url": "MCP_VISION_AUTH_JWKS_URL",
    "auth_scopes": "MCP_VISION_AUTH_SCOPES",
    "resource_url": "MCP_VISION_RESOURCE_URL",
    "remote_allowed_dirs": "MCP_VISION_REMOTE_ALLOWED_DIRS",
    "queue_per_caller": "MCP_VISION_QUEUE_PER_CALLER",
    "public_metrics": "MCP_VISION_PUBLIC_METRICS",
}

_PARSERS = {
    "model": lambda n, v: v.strip(),
    "device": lambda n, v: _parse_choice(n, v, get_args(Device)),
    "quantization": lambda n, v: _parse_choice(n, v, ("auto", "nf4", "int8", "none")),
    "dtype": lambda n, v: _parse_choice(n, v, ("auto", "bfloat16", "float16", "float32")),
    "allowed_dirs": lambda n, v: _parse_dirs(v),
    "client_roots": _parse_bool,
    "allow_download": _parse_bool,
    "allow_urls": _parse_bool,
    "allow_private_urls": _parse_bool,
    "max_file_bytes": _parse_int,
    "max_image_pixels": _parse_int,
    "max_tiles": lambda n, v: _parse_int(n, v, 1, limits.MAX_TILES_CAP),
    "max_new_tokens": lambda n, v: _parse_int(n, v, 1, limits.MAX_NEW_TOKENS_CAP),
    "max_pages": _parse_int,
    "ocr_batch": lambda n, v: _parse_int(n, v, 1, limits.OCR_BATCH_CAP),
    "max_frames": lambda n, v: _parse_int(n, v, 1, limits.MAX_FRAMES_CAP),
    "max_output_chars": lambda n, v: _parse_int(n, v, limits.MIN_OUTPUT_CHARS),
    "cache_bytes": lambda n, v: _parse_int(n, v, 0),
    "max_sessions": _parse_int,
    "session_ttl": _parse_float,
    "url_timeout": _parse_float,
    "call_budget": lambda n, v: _parse_seconds(n, v, limits.MAX_TIME_BUDGET),
    "grounding": lambda n, v: _parse_choice(n, v, ("auto", *GROUNDING_FAMILIES)),
    "isolate_decoding": _parse_bool,
    "prompts_dir": lambda n, v: Path(v).expanduser(),
    "preload": _parse_bool,
    "log_level": lambda n, v: _parse_choice(n, v.upper().lower(), ("debug", "info", "warning", "error")).upper(),
    "backend": lambda n, v: _parse_choice(n, v, get_args(BackendKind)),
    "openvino_weights": lambda n, v: _parse_choice(n, v, get_args(OpenVINOWeights)),
    "openvino_vision": lambda n, v: _parse_choice(n, v, get_args(OpenVINOVision)),
    "openvino_cache": lambda n, v: Path(v).expanduser(),
    "threads": lambda n, v: _parse_int(n, v, 0, 256),
    "base_url": _parse_url,
    "api_key": lambda n, v: v.strip(),  # never echoed in an error
    "remote_model": lambda n, v: v.strip(),
    "remote_concurrency": lambda n, v: _parse_int(n, v, 1, limits.REMOTE_CONCURRENCY_CAP),
    "remote_timeout": _parse_float,
    "remote_retries": lambda n, v: _parse_int(n, v, 0, limits.REMOTE_RETRIES_CAP),
    "cors_origins": _parse_origins,
    "previews": lambda n, v: _parse_choice(n, v, get_args(PreviewPolicy)),
    "auth_tokens_file": lambda n, v: Path(v.strip()).expanduser(),
    "auth_issuer": lambda n, v: _parse_http_url(n, v, "the authorization server's issuer, such as https://auth.example.com"),
    "auth_jwks_url": lambda n, v: _parse_http_url(n, v, "its JWKS address, such as https://auth.example.com/jwks.json"),
    "auth_scopes": lambda n, v: tuple(dict.fromkeys(v.replace(",", " ").split())),
    "resource_url": lambda n, v: _parse_http_url(n, v, "this server's public address, such as https://vision.example.com/mcp"),
    "remote_allowed_dirs": lambda n, v: _parse_dirs(v),
    "queue_per_caller": lambda n, v: _parse_int(n, v, 1, limits.QUEUE_PER_CALLER_CAP),
    "public_metrics": _parse_bool,
}



def parse_setting(field_name: str, raw: str, shown: str) -> object:
    """One setting's value from text, as its variable is read; `shown` names where it came from (the
    variable or a command-line flag) in the ValueError that says what is wrong."""
    return _PARSERS[field_name](shown, raw)


__all__ = ["Settings", "ENVIRONMENT", "DEFAULT_MODEL", "parse_setting"]
