"""Fetch an http(s) URL safely: only public addresses, the checked address is the one connected to,
redirects re-checked per hop, timeouts, a total deadline and a byte cap counted while streaming."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urljoin, urlparse

from ..errors import AccessError, InputError, TooLarge
from ..settings import Settings

MAX_REDIRECTS = 5
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_USER_AGENT = "mcp-vision (+https://github.com/mcp-vision/mcp-vision)"


def is_public_address(address: str) -> bool:
    """True for globally routable unicast addresses; IPv4-mapped/6to4 forms are judged by their IPv4.
    Anything that is not an IP address is not a public address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:  # 64:ff9b::7f00:1 reaches 127.0.0.1 through a NAT64 gateway
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(str(embedded))
    # Reserved ranges hold IPv4-compatible (::a.b.c.d) and other never-assigned addresses.
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _resolve(host: str, port: int, allow_private: bool, shown: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):  # ValueError/UnicodeError: not a name at all
        raise InputError(f"{shown}: the host {host!r} could not be resolved.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        blocked = [a for a in addresses if not is_public_address(a)]
        if blocked:
            raise AccessError(
                f"{shown} resolves to a private, loopback or link-local address, which is not fetched: "
                "download the file and pass its path (or set MCP_VISION_ALLOW_PRIVATE_URLS=1 on a trusted network)."
            )
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _connect(cls: type, host: str, port: int, addresses: list[str], timeout: float, shown: str):
    """Connect to the first checked address that answers."""
    for address in addresses:
        conn = cls(host, port, address, timeout=timeout)
        try:
            conn.connect()
            return conn
        except ssl.SSLError as exc:  # the handshake: a certificate problem, not a missing host
            conn.close()
            raise _tls_failed(shown, exc) from None
        except OSError:
            conn.close()
    raise InputError(f"{shown} could not be reached (connection failed).")


def fetch_url(url: str, settings: Settings, shown: str) -> bytes:
    """GET `url` and return its body, or raise an error that says what to change; `shown` is how the
    caller names the URL in messages (sources.describe_source)."""
    deadline = time.monotonic() + settings.url_timeout
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            parsed = urlparse(url)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:  # an out-of-range or non-numeric port, an unbalanced [
            where = shown if _hop == 0 else f"{shown} redirected to a URL that"
            raise InputError(f"{where} is not a valid URL: check the host and port.") from None
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise InputError(f"{shown} redirected to a URL that is not http(s); only http and https are fetched.")
        addresses = _resolve(parsed.hostname, port, settings.allow_private_urls, shown)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InputError(f"{shown} took longer than {settings.url_timeout:g} s (MCP_VISION_URL_TIMEOUT).")
        cls = _PinnedHTTPSConnection if parsed.scheme == "https" else _PinnedHTTPConnection
        target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        conn = _connect(cls, parsed.hostname, port, addresses, min(remaining, 10.0), shown)
        try:
            conn.request("GET", target, headers={"User-Agent": _USER_AGENT, "Accept": "*/*"})
            response = conn.getresponse()
            if response.status in {301, 302, 303, 307, 308}:
                location = response.getheader("Location")
                if not location:
                    raise InputError(f"{shown} answered a redirect without a Location header.")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise InputError(f"{shown} answered HTTP {response.status} {response.reason}.")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > settings.max_file_bytes:
                raise TooLarge(
                    f"{shown} is {int(declared):,} bytes, over the {settings.max_file_bytes:,} byte limit "
                    "(MCP_VISION_MAX_FILE_BYTES)."
                )
            chunks: list[bytes] = []
            total = 0
            while True:
                if time.monotonic() > deadline:
                    raise InputError(f"{shown} took longer than {settings.url_timeout:g} s (MCP_VISION_URL_TIMEOUT).")
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
                if total > settings.max_file_bytes:
                    raise TooLarge(
                        f"{shown} is over the {settings.max_file_bytes:,} byte limit (MCP_VISION_MAX_FILE_BYTES)."
                    )
                chunks.append(chunk)
            return b"".join(chunks)
        except (TimeoutError, socket.timeout):
            raise InputError(f"{shown} timed out; try again or download the file and pass its path.") from None
        except ssl.SSLError as exc:
            raise _tls_failed(shown, exc) from None
        except (OSError, http.client.HTTPException) as exc:
            raise InputError(f"{shown} could not be fetched ({type(exc).__name__}).") from None
        finally:
            conn.close()
    raise InputError(f"{shown} redirected more than {MAX_REDIRECTS} times.")


def _tls_failed(shown: str, exc: ssl.SSLError) -> InputError:
    return InputError(f"{shown}: TLS failed ({exc.reason or 'certificate error'}).")


__all__ = ["fetch_url", "is_public_address", "MAX_REDIRECTS"]
