"""Fetch an http(s) URL safely, through httpx2: only public addresses, the checked address is the one
connected to, redirects re-checked per hop, timeouts, a total deadline and a byte cap counted while
streaming, no credentials sent."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlparse

from ..errors import AccessError, InputError, TooLarge
from ..settings import Settings

if TYPE_CHECKING:
    import httpx2

MAX_REDIRECTS = 5
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_USER_AGENT = "mcp-vision (+https://github.com/mcp-vision/mcp-vision)"
_DISALLOWED = re.compile("[\x00-\x20\x7f]")
_VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))  # kept as written by quote(); the rest is encoded


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


# Why the address is pinned by hand: httpx2 resolves a URL's host itself when it connects, after any check made
# here, so a name that answers a public address to the check and a private one to the connection (DNS
# rebinding) would get through. So each hop is resolved and checked here, and httpx2 is handed the checked
# address itself as the URL's host, with the name in the Host header and as the TLS server name (httpx2's
# `sni_hostname` extension), so the certificate is still verified for the name. httpx2 does the rest:
# connecting, TLS, HTTP/1.1 framing, chunked bodies, per-step timeouts.


def _request(client: httpx2.Client, host: str, port: int, address: str, target: str, https: bool) -> httpx2.Request:
    """GET `target` from `address` (a checked IP), named `host`; nothing else is sent: no credentials."""
    import httpx2

    default_port = 443 if https else 80
    named = f"[{host}]" if ":" in host else host
    return client.build_request(
        "GET",
        httpx2.URL(scheme="https" if https else "http", host=address, port=port, raw_path=target.encode("ascii")),
        headers={
            "Host": named if port == default_port else f"{named}:{port}",
            "User-Agent": _USER_AGENT,
            "Accept": "*/*",
            "Accept-Encoding": "identity",  # the bytes as stored: the size cap counts what arrives
        },
        extensions={"sni_hostname": host} if https else {},
    )


def _target(path: str, query: str, shown: str) -> str:
    """The request target as sent: non-ASCII percent-encoded as UTF-8; spaces and control characters refused
    (as http.client refused them)."""
    target = (path or "/") + (f"?{query}" if query else "")
    if _DISALLOWED.search(target):
        raise InputError(f"{shown} could not be fetched (InvalidURL).")
    return quote(target, safe=_VISIBLE_ASCII)


def _ascii_host(host: str, shown: str) -> str:
    """The name as it goes in the Host header and the TLS server name (IDNA for a non-ASCII name)."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InputError(f"{shown}: the host {host!r} could not be resolved.") from None


def _connect(client: httpx2.Client, requests: list[httpx2.Request], shown: str) -> httpx2.Response:
    """The response from the first checked address that answers (headers read, body still to stream)."""
    import httpx2

    for request in requests:
        try:
            return client.send(request, stream=True)
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
            tls = _ssl_error(exc)
            if tls is not None:  # the handshake: a certificate problem, not a missing host
                raise _tls_failed(shown, tls) from None
    raise InputError(f"{shown} could not be reached (connection failed).")


def fetch_url(url: str, settings: Settings, shown: str) -> bytes:
    """GET `url` and return its body, or raise an error that says what to change; `shown` is how the
    caller names the URL in messages (sources.describe_source)."""
    import httpx2

    deadline = time.monotonic() + settings.url_timeout
    tls: ssl.SSLContext | None = None
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
        https = parsed.scheme == "https"
        if https and tls is None:
            tls = httpx2.create_ssl_context()  # the system's CAs (SSL_CERT_FILE / SSL_CERT_DIR honoured)
        target = _target(parsed.path, parsed.query, shown)
        host = _ascii_host(parsed.hostname, shown)
        # A client per hop: no cookie, connection or TLS session carries from one name to another; no
        # environment (proxy variables would route around the address check; no .netrc credentials).
        client = httpx2.Client(
            verify=tls if tls is not None else True, trust_env=False, follow_redirects=False,
            timeout=min(remaining, 10.0),
        )
        try:
            requests = [_request(client, host, port, address, target, https) for address in addresses]
            response = _connect(client, requests, shown)
            try:
                if response.status_code in {301, 302, 303, 307, 308}:
                    location = response.headers.get("Location")
                    if not location:
                        raise InputError(f"{shown} answered a redirect without a Location header.")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise InputError(f"{shown} answered HTTP {response.status_code} {response.reason_phrase}.")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > settings.max_file_bytes:
                    raise TooLarge(
                        f"{shown} is {int(declared):,} bytes, over the {settings.max_file_bytes:,} byte limit "
                        "(MCP_VISION_MAX_FILE_BYTES)."
                    )
                chunks: list[bytes] = []
                total = 0
                for chunk in response.iter_raw(1 << 16):
                    if time.monotonic() > deadline:
                        raise InputError(
                            f"{shown} took longer than {settings.url_timeout:g} s (MCP_VISION_URL_TIMEOUT)."
                        )
                    total += len(chunk)
                    if total > settings.max_file_bytes:
                        raise TooLarge(
                            f"{shown} is over the {settings.max_file_bytes:,} byte limit (MCP_VISION_MAX_FILE_BYTES)."
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                response.close()
        except httpx2.TimeoutException:
            raise InputError(f"{shown} timed out; try again or download the file and pass its path.") from None
        except (httpx2.TransportError, httpx2.InvalidURL) as exc:
            tls_error = _ssl_error(exc)
            if tls_error is not None:
                raise _tls_failed(shown, tls_error) from None
            raise InputError(f"{shown} could not be fetched ({type(exc).__name__}).") from None
        finally:
            client.close()
    raise InputError(f"{shown} redirected more than {MAX_REDIRECTS} times.")


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx2 error (httpx2 wraps the socket's own error twice), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls_failed(shown: str, exc: ssl.SSLError) -> InputError:
    return InputError(f"{shown}: TLS failed ({exc.reason or 'certificate error'}).")


__all__ = ["fetch_url", "is_public_address", "MAX_REDIRECTS"]
