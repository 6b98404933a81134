"""Media input: a path, `file://` URI, `http(s)` URL or `data:` URI becomes checked bytes.

Files are read only inside the allowed directories, compared by whole path components after
symlinks are resolved, and only regular files are read. The kind of media is decided by the bytes.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import ParseResult, unquote, unquote_to_bytes, urlparse
from urllib.request import url2pathname

from ..errors import AccessError, InputError, NotFound, OutsideAllowedDirs, TooLarge
from ..settings import Settings
from .formats import format_of

MediaKind = Literal["image", "pdf", "video", "unknown"]

# Kernel interfaces whose "regular files" hold process state (environment, memory maps): never read,
# even when an allowed directory contains them.
_PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"))


@dataclass(frozen=True)
class Media:
    """Bytes read from one source, with a short label that is safe to show the caller."""

    data: bytes
    label: str
    kind: MediaKind


def sniff(data: bytes) -> MediaKind:
    """Decide the media kind from magic bytes, never from a file name."""
    head = data[:64]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if format_of(head) is not None:  # HEIF and AVIF before other ISO media files (ftyp), which are video
        return "image"
    if head[4:8] == b"ftyp":
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        return "video"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):  # MPEG-PS
        return "video"
    # A PDF may have bytes before its header; a file that starts with a format's own signature is that format.
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if format_of(head, weak=True) is not None:  # BMP, ICO, Netpbm: two to four bytes, so after the rest
        return "image"
    return "unknown"


def describe_source(source: str) -> str:
    """A short, single-line label of a source for error messages (data URIs are not echoed)."""
    if source.startswith("data:"):
        return "the data: URI"
    text = source.replace("\n", " ").strip()
    return repr(text if len(text) <= 200 else text[:197] + "...")


def load_media(
    source: str, settings: Settings, roots: tuple[Path, ...] | None = None, *, remote: bool = False
) -> Media:
    """Read one media source into memory, enforcing the file boundary (see `Boundary`; `roots` are the
    client's; a `remote` caller has its own) and the size limit."""
    if not isinstance(source, str) or not source.strip():
        raise InputError("No media given: pass a file path, a file:// URI, an http(s) URL or a data: URI.")
    source = source.strip()
    if "\x00" in source:
        raise InputError("The media source contains a NUL character, which no path or URL holds: pass it without one.")
    try:
        scheme = urlparse(source).scheme.lower() if ":" in source[:12] else ""
    except ValueError:  # such as an unbalanced [ in what looks like a URL
        raise InputError(f"{describe_source(source)} is not a valid path or URL.") from None
    if scheme == "data":
        data = _decode_data_uri(source, settings.max_file_bytes)
        label = "the data: URI"
    elif scheme in {"http", "https"}:
        if not settings.allow_urls:
            raise AccessError(
                f"URL fetching is switched off, so {describe_source(source)} was not fetched: "
                "pass a local file path instead, or set MCP_VISION_ALLOW_URLS=1."
            )
        from .fetch import fetch_url

        label = describe_source(source)
        data = fetch_url(source, settings, label)
    elif scheme == "file":
        path = _local_path(urlparse(source))
        if path is None:
            raise InputError(f"{describe_source(source)} names a remote host; file:// URIs must be local.")
        data = read_allowed_file(path, settings, roots, remote=remote)
        label = describe_source(str(path))
    elif scheme and len(scheme) > 1:
        raise InputError(
            f"{describe_source(source)} uses the unsupported scheme {scheme!r}: "
            "pass a file path, a file:// URI, an http(s) URL or a data: URI."
        )
    else:
        path = _expand_home(source)
        data = read_allowed_file(path, settings, roots, remote=remote)
        label = describe_source(source)
    if not data:
        raise InputError(f"{label} is empty (0 bytes).")
    return Media(data=data, label=label, kind=sniff(data))


def _local_path(parsed: ParseResult) -> Path | None:
    """The path of a parsed file: URI, or None when it names a remote host."""
    if parsed.netloc not in {"", "localhost"}:
        return None
    return Path(url2pathname(unquote(parsed.path)))


def _expand_home(source: str) -> Path:
    """`~` and `~/...` are the user's home; `~name/...` stays a plain relative path, so nothing is
    learned about other accounts."""
    if source == "~" or source.startswith(("~/", "~" + os.sep)):
        return Path(source).expanduser()
    return Path(source)


def _decode_data_uri(uri: str, max_bytes: int) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise InputError("The data: URI has no ',' separating its header from its data.")
    too_big = TooLarge(f"The data: URI is larger than the {max_bytes:,} byte limit (MCP_VISION_MAX_FILE_BYTES).")
    if len(payload) > 3 * max_bytes + 8:  # even percent-encoding needs at most 3 characters a byte
        raise too_big
    if header.lower().endswith(";base64"):
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InputError("The data: URI is not valid base64.") from None
    else:
        try:
            data = unquote_to_bytes(payload)
        except UnicodeEncodeError:  # lone surrogates cannot be bytes
            raise InputError("The data: URI holds characters that are not valid text.") from None
    if len(data) > max_bytes:
        raise too_big
    return data


def is_within(path: Path, roots: tuple[Path, ...]) -> bool:
    """True when `path` equals a root or lies below one, comparing whole components."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def roots_from_uris(uris: Iterable[object]) -> tuple[Path, ...] | None:
    """The local directories among a client's roots (absolute `file://` URIs); None when it offers none."""
    paths: list[Path] = []
    for uri in uris:
        try:
            parsed = urlparse(str(uri))
        except ValueError:
            continue
        path = _local_path(parsed) if parsed.scheme.lower() == "file" else None
        if path is not None and path.is_absolute() and "\x00" not in str(path):
            paths.append(Path(os.path.abspath(path)))
    return tuple(paths) or None


def narrow(allowed: tuple[Path, ...], roots: tuple[Path, ...]) -> tuple[Path, ...]:
    """The directories inside both sets: a root inside an allowed directory, or an allowed directory
    inside a root. Never anything outside `allowed`."""
    shared: list[Path] = []
    for root in roots:
        for directory in allowed:
            if is_within(root, (directory,)):
                shared.append(root)
            elif is_within(directory, (root,)):
                shared.append(directory)
    return tuple(dict.fromkeys(shared))


@dataclass(frozen=True)
class Boundary:
    """Where files may be read: directories as named (checked before touching the file system) and
    resolved (what the opened file must lie in), and how to say so in an error.

    Directories the user configured (MCP_VISION_ALLOWED_DIRS, --allowed-dir) are authoritative: the
    client's roots change nothing. With nothing configured, the client's roots are the directories (they
    replace the default: the working directory, or nothing when that is `/` or the home directory); when
    serving HTTP beyond loopback they only narrow the default."""

    allowed: tuple[Path, ...]  # the directories before any narrowing, resolved
    named: tuple[Path, ...]
    real: tuple[Path, ...]
    roots: tuple[Path, ...] | None  # roots that narrow `allowed` (as given and resolved), or None
    source: Literal["configured", "roots", "default", "remote"]

    @classmethod
    def of(cls, settings: Settings, roots: tuple[Path, ...] | None = None, remote: bool = False) -> Boundary:
        if remote:  # a caller over the network: only the directories allowed for such callers, never roots
            base, source, roots = settings.remote_allowed_dirs or (), "remote", None
        elif settings.allowed_dirs is not None:
            base, source, roots = settings.allowed_dirs, "configured", None
        elif roots is not None and settings.roots_replace_default:
            base, source, roots = roots, "roots", None
        else:
            base, source = settings.default_dirs(), "default"
        allowed = tuple(Path(os.path.realpath(d)) for d in base)
        named = tuple(Path(os.path.abspath(d)) for d in base) + allowed
        if roots is None:
            return cls(allowed=allowed, named=named, real=allowed, roots=None, source=source)
        real_roots = tuple(Path(os.path.realpath(r)) for r in roots)
        return cls(
            allowed=allowed, named=named, real=narrow(allowed, real_roots), roots=tuple(roots) + real_roots,
            source=source,
        )

    def admits_name(self, absolute: Path) -> bool:
        """The check made before the file system is touched (on the path as given)."""
        return is_within(absolute, self.named) and (self.roots is None or is_within(absolute, self.roots))

    def refusal(self, shown: str) -> OutsideAllowedDirs:
        dirs = os.pathsep.join(str(r) for r in self.allowed)
        to_set = "set MCP_VISION_ALLOWED_DIRS to the directories the tools may read"
        if self.source == "remote":
            send = "send the media as a data: URI (base64) or an http(s) URL instead"
            if not self.allowed:
                return OutsideAllowedDirs(
                    f"{shown} is a path on the server, which callers over the network may not read: {send} "
                    "(the operator may allow directories for them with MCP_VISION_REMOTE_ALLOWED_DIRS)."
                )
            return OutsideAllowedDirs(
                f"{shown} is outside the directories callers over the network may read ({dirs}, "
                f"MCP_VISION_REMOTE_ALLOWED_DIRS): {send}, or use a file there."
            )
        if self.source == "configured":
            return OutsideAllowedDirs(
                f"{shown} is outside the allowed directories ({dirs}): "
                "move the file there or add its directory to MCP_VISION_ALLOWED_DIRS."
            )
        if self.source == "roots":
            return OutsideAllowedDirs(
                f"{shown} is outside the client's roots ({dirs}), which are where files are read while "
                f"MCP_VISION_ALLOWED_DIRS is unset: open its folder as a root in the client, or {to_set}."
            )
        if not self.allowed:
            return OutsideAllowedDirs(
                f"{shown} cannot be read: MCP_VISION_ALLOWED_DIRS is unset and the server runs in {os.getcwd()} "
                f"(the root or home directory), which is not read by default: {to_set}."
            )
        if self.roots is None:
            return OutsideAllowedDirs(
                f"{shown} is outside the working directory ({dirs}), where files are read while "
                f"MCP_VISION_ALLOWED_DIRS is unset: move the file there, or {to_set}."
            )
        where = os.pathsep.join(str(r) for r in self.real) or "none"
        return OutsideAllowedDirs(
            f"{shown} is outside the directories this client may read ({where}: the working directory "
            f"{dirs} narrowed to the client's roots): open its folder as a root in the client, or {to_set}."
        )


def missing_dirs_warning(settings: Settings, setting: str = "MCP_VISION_ALLOWED_DIRS") -> str | None:
    """One line for the start-up log when configured allowed directories are not directories (a typo, a drive not
    mounted): every file there would be refused later as outside, with nothing saying why. None when all exist."""
    if settings.allowed_dirs is None:
        return None
    missing = [str(d) for d in settings.allowed_dirs if not os.path.isdir(d)]
    if not missing:
        return None
    if len(missing) == 1:
        what, them = f"{missing[0]}, which is not an existing directory", "it"
    else:
        what, them = f"{', '.join(missing)}, which are not existing directories", "them"
    return f"{setting} names {what}: no file there can be read; create {them} or correct {setting}"


def _resolved(shown: str, path: Path, absolute: Path) -> str:
    """`shown`, and for a relative path the directory it was resolved against and the result, so a refusal says
    what was compared with the allowed directories. Both are worked out from the text alone (the working
    directory, no link followed), so they tell nothing about what exists."""
    if path.is_absolute():
        return shown
    return f"{shown} (resolved against {os.getcwd()} as {describe_source(str(absolute))})"


def read_allowed_file(
    path: Path, settings: Settings, roots: tuple[Path, ...] | None = None, *, remote: bool = False
) -> bytes:
    """Read a regular file inside the file boundary (see `Boundary`: the configured directories, or the
    client's `roots`, or the default; for a `remote` caller, the directories allowed for remote callers),
    opening exactly what was checked."""
    boundary = Boundary.of(settings, roots, remote)
    shown = describe_source(str(path))
    text = str(path)
    if "\x00" in text:
        raise InputError("The path contains a NUL character, which no file name holds: pass it without one.")
    try:
        os.fsencode(text)
    except UnicodeError:  # lone surrogates, as a JSON string can carry
        raise InputError(f"{shown} is not a valid file path (it holds characters no file name can).") from None
    absolute = Path(os.path.abspath(path))
    # A remote caller is not told the server's working directory.
    outside = boundary.refusal(shown if remote else _resolved(shown, path, absolute))
    # Refuse before touching the file system, so nothing is learned about paths outside.
    if not boundary.admits_name(absolute):
        raise outside
    real = Path(os.path.realpath(absolute))
    if not is_within(real, boundary.real):
        raise outside  # a symlink that leads out
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise NotFound(f"{shown} does not exist: check the path (relative paths start at {os.getcwd()}).") from None
    except IsADirectoryError:
        raise InputError(f"{shown} is a directory: pass a file inside it.") from None
    except PermissionError:
        raise InputError(f"{shown} cannot be read: permission denied.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise outside from None
        raise InputError(f"{shown} cannot be opened ({exc.strerror}).") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{shown} is a directory: pass a file inside it.")
        if not stat.S_ISREG(info.st_mode) or is_within(real, _PSEUDO_FILESYSTEMS):
            raise InputError(f"{shown} is not a regular file (devices, pipes, sockets, /proc and /sys are not read).")
        if sys.platform.startswith("linux"):
            # What was opened, after any rename race: it must still be inside.
            opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if not is_within(opened, boundary.real):
                raise outside
        if info.st_size > settings.max_file_bytes:
            raise TooLarge(
                f"{shown} is {info.st_size:,} bytes, over the {settings.max_file_bytes:,} byte limit "
                "(MCP_VISION_MAX_FILE_BYTES)."
            )
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        remaining = settings.max_file_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > settings.max_file_bytes:
            raise TooLarge(f"{shown} grew past the {settings.max_file_bytes:,} byte limit while being read.")
        return data
    finally:
        os.close(fd)


__all__ = [
    "Boundary", "Media", "MediaKind", "load_media", "sniff", "read_allowed_file", "is_within", "narrow",
    "roots_from_uris", "describe_source", "missing_dirs_warning",
]
