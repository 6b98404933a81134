"""The `mcp-vision-internvl` command line: serve over stdio (default) or streamable HTTP, or fetch the model."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from . import limits
from .errors import summary
from .settings import DEFAULT_MODEL, ENVIRONMENT, Settings, parse_setting


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-vision-internvl",
        description="MCP server that gives AI agents local eyes: a local InternVL or Qwen2-VL vision-language model "
        "describes images, reads documents, compares images and answers questions about video.",
        epilog="The options above override the environment variables of the same settings. Every setting, "
        "including those without a flag, is read from its MCP_VISION_* variable: "
        + ", ".join(sorted(ENVIRONMENT.values()))
        + ".",
    )
    parser.add_argument("--version", action="version", version=f"mcp-vision-internvl {__version__}")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio",
                        help="how clients connect (default: stdio)")
    parser.add_argument("--host", default="127.0.0.1", help="address for streamable-http (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port for streamable-http (default: 8000)")
    parser.add_argument("--cors-origin", action="append", dest="cors_origins", metavar="ORIGIN",
                        help="a web origin (such as http://localhost:8080) whose pages may call the streamable-http "
                        "endpoint, for browser-based hosts and inspectors (repeatable; default: none)")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="serve streamable-http beyond loopback without authentication (anyone who reaches the "
                        "port may call the tools); without it, such a server needs MCP_VISION_AUTH_TOKENS_FILE or "
                        "MCP_VISION_AUTH_ISSUER")
    parser.add_argument("--remote-allowed-dir", action="append", dest="remote_allowed_dirs", metavar="DIR",
                        help="directory callers over the network (authenticated, or beyond loopback) may name files "
                        "in (repeatable); by default they send data: URIs or URLs, never server-side paths")
    parser.add_argument("--public-metrics", action="store_true", dest="public_metrics", default=None,
                        help="serve /metrics without a bearer token (by default it needs one, like the tools)")
    parser.add_argument("--model", help=f"hub id or local directory of an InternVL -hf, Qwen2-VL or Qwen2.5-VL model (default: {DEFAULT_MODEL})")
    parser.add_argument("--device", choices=["auto", "cuda", "mps", "cpu"],
                        help="where the model runs; auto: CUDA if available, else an Apple GPU (mps), else CPU (default: auto)")
    parser.add_argument("--quantization", choices=["auto", "nf4", "int8", "none"],
                        help="auto: NF4 4-bit on CUDA, none (bf16) on CPU")
    parser.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"],
                        help="weight and compute dtype; auto: bfloat16 (float16 on a GPU without bf16) (default: auto)")
    parser.add_argument("--backend", choices=["auto", "local", "openvino", "openai"],
                        help="the engine: auto (OpenVINO on a CPU when the openvino extra is installed, else PyTorch), "
                        "local (PyTorch), openvino, or openai (a remote engine at MCP_VISION_BASE_URL) (default: auto)")
    parser.add_argument("--allowed-dir", action="append", dest="allowed_dirs", metavar="DIR",
                        help="directory the tools may read files from (repeatable); when given, client roots change nothing. "
                        "Default: the client's roots, else the working directory unless it is / or your home")
    parser.add_argument("--no-client-roots", action="store_false", dest="client_roots", default=None,
                        help="ignore the roots the client offers (by default they are where files are read while no "
                        "directory is configured)")
    parser.add_argument("--max-tiles", metavar="N",
                        help=f"most 448x448 tiles per image, 1 to {limits.MAX_TILES_CAP} (default {limits.DEFAULT_MAX_TILES})")
    parser.add_argument("--max-new-tokens", metavar="N",
                        help=f"default answer length limit in tokens, 1 to {limits.MAX_NEW_TOKENS_CAP} "
                        f"(default {limits.DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--allow-download", action="store_true", default=None,
                        help="download the model on first use if it is not cached")
    parser.add_argument("--no-urls", action="store_false", dest="allow_urls", default=None,
                        help="refuse http(s) URLs as media")
    parser.add_argument("--preload", action="store_true", default=None,
                        help="start loading the model in the background as soon as the server starts")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                        help="how much the server logs to stderr (default: INFO)")
    sub = parser.add_subparsers(dest="command", metavar="command")
    download = sub.add_parser("download", help="fetch the model into the Hugging Face cache ahead of time (and convert "
                              "it when the OpenVINO engine will run it), then exit")
    download.add_argument("--model", dest="download_model", help="model id (default: the configured model)")
    convert = sub.add_parser("convert", help="convert the model for the OpenVINO engine ahead of time (minutes, "
                             "once; the server otherwise converts on first use), then exit")
    convert.add_argument("--model", dest="convert_model", help="model id or directory (default: the configured model)")
    convert.add_argument("--weights", dest="convert_weights", choices=["int8", "int4", "f16"],
                         help="the language model's weights (default: MCP_VISION_OPENVINO_WEIGHTS, else int8)")
    convert.add_argument("--vision", dest="convert_vision", choices=["int8", "f16"],
                         help="the vision tower (default: MCP_VISION_OPENVINO_VISION, else int8)")
    return parser


# Flags whose text goes through the parser of the variable it overrides (same checks, same words).
_PARSED_FLAGS = {"model": "--model", "max_tiles": "--max-tiles", "max_new_tokens": "--max-new-tokens"}


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings with the flags on top; a bad value (either) raises one ValueError."""
    settings = Settings.from_env()
    parsed = {
        field: parse_setting(field, getattr(args, field), flag)
        for field, flag in _PARSED_FLAGS.items()
        if getattr(args, field) is not None
    }
    if args.allowed_dirs:
        parsed["allowed_dirs"] = tuple(
            d for raw in args.allowed_dirs for d in parse_setting("allowed_dirs", raw, "--allowed-dir")
        )
    if args.remote_allowed_dirs:
        parsed["remote_allowed_dirs"] = tuple(
            d for raw in args.remote_allowed_dirs for d in parse_setting("remote_allowed_dirs", raw, "--remote-allowed-dir")
        )
    if args.cors_origins:
        parsed["cors_origins"] = tuple(dict.fromkeys(
            o for raw in args.cors_origins for o in parse_setting("cors_origins", raw, "--cors-origin")
        ))
    return settings.with_overrides(
        **parsed,
        device=args.device,
        quantization=args.quantization,
        dtype=args.dtype,
        backend=args.backend,
        client_roots=args.client_roots,
        allow_download=args.allow_download,
        allow_urls=args.allow_urls,
        preload=args.preload,
        log_level=args.log_level,
        public_metrics=args.public_metrics,
    )


def _configure_process(settings: Settings) -> None:
    # MuPDF writes its messages to stdout unless told otherwise; stdout carries the protocol.
    os.environ.setdefault("PYMUPDF_MESSAGE", "fd:2")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not settings.allow_download and "HF_HUB_OFFLINE" not in os.environ:
        os.environ["HF_HUB_OFFLINE"] = "1"
        _OFFLINE_SET_HERE.add("HF_HUB_OFFLINE")
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx2 logs every request's full URL at INFO: a fetched URL's query may hold a signature or token, and
    # the engine's calls are logged by the remote engine itself (without credentials).
    logging.getLogger("httpx2").setLevel(logging.WARNING)


# Offline variables this process set itself (the server without MCP_VISION_ALLOW_DOWNLOAD), as opposed
# to the user's own: `download` refuses under the user's, and ignores its own.
_OFFLINE_SET_HERE: set[str] = set()
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of a boolean variable


def _download(model: str) -> int:
    """Fetch `model` into the Hugging Face cache; every failure is one line on stderr and exit status 1."""
    if os.path.isdir(os.path.expanduser(model)):  # offline or not: there is nothing to fetch
        print(f"{model} is a local directory; nothing to download.", file=sys.stderr)
        return 0
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if var not in _OFFLINE_SET_HERE and os.environ.get(var, "").strip().upper() in _TRUE:
            print(
                f"mcp-vision-internvl download: {var}={os.environ[var]} forbids downloads; unset {var} to "
                "download, or point MCP_VISION_MODEL at a local model directory instead.",
                file=sys.stderr,
            )
            return 1
        os.environ.pop(var, None)
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub import errors as hub

    print(f"downloading {model} ...", file=sys.stderr)
    try:
        path = snapshot_download(model)
    except Exception as exc:  # a line saying what failed and what to do, never a traceback
        print(f"mcp-vision-internvl download: {_download_failure(model, exc, hub, constants.ENDPOINT)}",
              file=sys.stderr)
        return 1
    print(path)
    return 0


def _convert(settings: Settings) -> int:
    """`convert`: the OpenVINO conversion the engine would make on first use, made now, with its steps on stderr."""
    from .backend import openvino_installed

    if not openvino_installed():
        print("mcp-vision-internvl convert: the OpenVINO engine is not installed: "
              "pip install 'mcp-vision-internvl[openvino]' (adds openvino and nncf).", file=sys.stderr)
        return 1
    from .backend.openvino.engine import OpenVINOBackend
    from .errors import ModelUnavailableError
    from .worker import Job

    def report(_progress: float, _total: float | None, message: str | None) -> None:
        if message:
            print(message, file=sys.stderr, flush=True)

    try:
        target = OpenVINOBackend(settings).prepare(Job(_report=report))
    except ModelUnavailableError as exc:
        print(f"mcp-vision-internvl convert: {exc}", file=sys.stderr)
        return 1
    print(f"OpenVINO conversion of {settings.model} (language model {settings.openvino_weights}, vision "
          f"{settings.openvino_vision}): {target}", file=sys.stderr)
    return 0


def _openvino_will_run(settings: Settings) -> bool:
    """Whether `auto` will run this checkpoint on OpenVINO here: the extra is installed, nothing asks for PyTorch,
    no GPU, and the checkpoint is InternVL (so `download` converts too and the first call finds it done)."""
    from .backend import openvino_candidate

    if settings.backend == "openvino":
        return True
    if settings.backend != "auto" or not openvino_candidate(settings):
        return False
    from .backend.pytorch.loading import accelerator, read_config
    from .errors import ModelUnavailableError

    if accelerator() is not None:
        return False
    try:
        return getattr(read_config(settings)[2], "model_type", None) == "internvl"
    except ModelUnavailableError:  # not a checkpoint (yet): the server says why when it loads
        return False


def _download_failure(model: str, exc: Exception, hub, endpoint: str) -> str:
    detail = summary(exc, 200)
    local = "or copy the model to this machine and set MCP_VISION_MODEL to its directory"
    if isinstance(exc, hub.GatedRepoError):
        return (f"{model} is gated on {endpoint}: accept its terms on the model's page, then log in "
                f"(`hf auth login`, or set HF_TOKEN) and retry")
    if isinstance(exc, hub.RepositoryNotFoundError):
        return (f"no model {model} on {endpoint} (or it is private: log in with `hf auth login` or set HF_TOKEN); "
                f"check the id given by --model or MCP_VISION_MODEL")
    if isinstance(exc, hub.RevisionNotFoundError):
        return f"{model}: the revision asked for does not exist on {endpoint} ({detail})"
    if isinstance(exc, hub.HFValidationError):
        return (f"{model} is neither a local directory nor a valid hub model id (owner/name); check --model or "
                f"MCP_VISION_MODEL")
    if isinstance(exc, hub.LocalEntryNotFoundError):  # what the hub client raises when it cannot connect
        return (f"could not reach {endpoint} to fetch {model} ({detail.removeprefix('Got: ')}); check the "
                f"network, proxy (HTTPS_PROXY) and HF_ENDPOINT and retry, {local}")
    if isinstance(exc, hub.HfHubHTTPError):
        return f"{endpoint} refused the download of {model} ({detail}); retry later, {local}"
    if isinstance(exc, OSError):  # a full disk, an unwritable cache, a dropped connection
        return (f"fetching {model} failed: {type(exc).__name__}: {detail}; check the network and that the "
                f"Hugging Face cache (HF_HOME) is writable with room for the model, then retry")
    return f"fetching {model} from {endpoint} failed: {type(exc).__name__}: {detail}; retry, {local}"


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as exc:  # one line saying which setting and what to use; no usage dump
        print(f"{parser.prog}: {exc} (see --help)", file=sys.stderr)
        return 2
    if args.command == "download":
        settings = settings.with_overrides(model=args.download_model)
        fetched = _download(settings.model)
        if fetched != 0 or not _openvino_will_run(settings):
            return fetched
        _configure_process(settings)
        print("converting it for the OpenVINO engine, the one this machine will run (once; minutes)", file=sys.stderr)
        return _convert(settings)
    if args.command == "convert":
        _configure_process(settings)
        return _convert(settings.with_overrides(model=args.convert_model, openvino_weights=args.convert_weights,
                                                openvino_vision=args.convert_vision))
    loopback = args.transport == "stdio" or args.host in _LOOPBACK
    if not loopback:  # a client anyone can be: its roots may narrow the default directory, never replace it
        settings = settings.with_overrides(roots_replace_default=False, anonymous_remote=True)
    access = None
    if args.transport == "streamable-http":
        try:
            access = _access(settings, args)
        except ValueError as exc:
            print(f"{parser.prog}: {exc}", file=sys.stderr)
            return 2
    _configure_process(settings)
    from .server import build_server

    server = build_server(settings)
    engine = f"model {settings.model}"
    if settings.backend == "openai":
        from urllib.parse import urlsplit

        url = urlsplit(settings.base_url or "")
        host = url.netloc.rpartition("@")[2]  # never credentials in the log
        engine = f"remote engine {url.scheme}://{host}{url.path} (model {settings.remote_model or 'from its list'})"
    log = logging.getLogger("mcp_vision")
    log.info("mcp-vision %s serving over %s; %s; files: %s", __version__, args.transport, engine, _boundary(settings))
    from .inputs.sources import missing_dirs_warning

    if missing := missing_dirs_warning(settings, "--allowed-dir" if args.allowed_dirs else "MCP_VISION_ALLOWED_DIRS"):
        log.warning("%s", missing)
    if settings.allowed_dirs is None and not settings.default_dirs():
        log.warning(
            "MCP_VISION_ALLOWED_DIRS is unset and the working directory %s is / or the home directory, which is "
            "not read by default: only the client's roots can be read; set MCP_VISION_ALLOWED_DIRS to the "
            "directories the tools may read", os.getcwd(),
        )
    if args.transport == "stdio":
        if settings.cors_origins:
            log.warning("MCP_VISION_CORS_ORIGINS / --cors-origin apply to --transport streamable-http only; ignored")
        return _serve_stdio(server)
    # uvicorn stops gracefully on SIGTERM/SIGINT. Bound to a loopback host, the SDK turns on its
    # DNS-rebinding protection (Host and Origin must name 127.0.0.1, localhost or [::1]).
    if access is not None:
        kinds = [f"{access.named_tokens} named tokens"] if access.named_tokens else []
        kinds += [f"JWTs from {access.issuer}"] if access.issuer else []
        log.info("bearer tokens required (%s); resource %s; callers over the network read files: %s",
                 " and ".join(kinds), access.resource_url,
                 os.pathsep.join(map(str, settings.remote_allowed_dirs or ())) or "none (data: URIs and URLs only)")
    elif not loopback:
        log.warning(
            "serving on %s without authentication (--insecure-no-auth): DNS-rebinding protection is off and anyone "
            "who reaches this address can call the tools", args.host,
        )
    if settings.cors_origins:
        log.info("CORS: pages from %s may call this server", ", ".join(settings.cors_origins))
    import anyio

    from .serving import serve_http

    anyio.run(lambda: serve_http(server, args.host, args.port, settings.cors_origins, access=access,
                                 public_metrics=settings.public_metrics))
    return 0


def _access(settings: Settings, args: argparse.Namespace):
    """The authentication for streamable HTTP (None: none); ValueError with one sentence when it is wrongly
    configured, or missing beyond loopback without --insecure-no-auth."""
    from .access import build_access
    from .serving import resource_url_for

    if settings.resource_url is None and settings.auth_issuer is not None and args.host not in _LOOPBACK:
        raise ValueError(
            "MCP_VISION_AUTH_ISSUER needs MCP_VISION_RESOURCE_URL when serving beyond loopback: set it to the "
            "address clients use for this server (such as https://vision.example.com/mcp), the tokens' audience"
        )
    access = build_access(settings, resource_url_for(args.host, args.port, settings.resource_url))
    if access is None and args.host not in _LOOPBACK and not args.insecure_no_auth:
        raise ValueError(
            f"refusing to serve on {args.host} without authentication: set MCP_VISION_AUTH_TOKENS_FILE (named "
            "tokens) or MCP_VISION_AUTH_ISSUER (OAuth JWTs), or pass --insecure-no-auth to let anyone who "
            "reaches the port call the tools"
        )
    return access


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _boundary(settings: Settings) -> str:
    """Where the tools read files, in words for the start-up log."""
    if settings.allowed_dirs is not None:
        return "the allowed directories " + os.pathsep.join(map(str, settings.allowed_dirs))
    default = os.pathsep.join(map(str, settings.default_dirs())) or "(none)"
    if not settings.client_roots:
        return f"{default} (MCP_VISION_ALLOWED_DIRS unset; client roots ignored)"
    how = "replace" if settings.roots_replace_default else "narrow"
    return f"the client's roots, which {how} the default {default} (MCP_VISION_ALLOWED_DIRS unset)"


SHUTDOWN_GRACE_SECONDS = 1.0  # for requests in flight to unwind before the process leaves


def _serve_stdio(server) -> int:
    """Serve over stdio until stdin ends, or until SIGTERM/SIGINT, after which the server stops cleanly:
    requests in flight are cancelled (generation stops at its next token) and the process exits 0."""
    import signal

    import anyio

    if sys.platform == "win32":  # no signal receivers on Windows' event loop
        server.run("stdio")
        return 0
    log = logging.getLogger("mcp_vision")

    async def serve() -> None:
        async with anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("%s received: shutting down", signal.Signals(signum).name)
                        # The SDK reads stdin in a thread that nothing can interrupt: if it is still
                        # blocked once everything else has stopped, leave without it.
                        _exit_after(SHUTDOWN_GRACE_SECONDS)
                        tg.cancel_scope.cancel()

            tg.start_soon(stop_on_signal)
            await server.run_stdio_async()
            tg.cancel_scope.cancel()

    try:
        anyio.run(serve)
    except KeyboardInterrupt:  # a second ^C while shutting down
        pass
    return 0


def _exit_after(seconds: float) -> None:
    import threading

    def leave() -> None:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(seconds, leave)
    timer.daemon = True
    timer.start()


__all__ = ["run", "build_parser", "settings_from"]
