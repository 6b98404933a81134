"""is_public_address, and fetch_url through load_media against a local http.server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from mcp_vision.errors import AccessError, InputError
from mcp_vision.inputs.fetch import MAX_REDIRECTS, is_public_address
from mcp_vision.inputs.sources import load_media
from mcp_vision.settings import Settings

from .servers import loopback_http

BODY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses(address):
    assert is_public_address(address) is True


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "0.0.0.0",
        "::",
        "100.64.0.1",
        "224.0.0.1",
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
    ],
)
def test_non_public_addresses(address):
    assert is_public_address(address) is False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, length: bool = True):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        path = self.path
        if path == "/img":
            self._send(200, BODY, {"Content-Type": "image/png"})
        elif path == "/nolength":
            self._send(200, BODY, length=False)
        elif path.startswith("/big"):
            self._send(200, b"x" * 5000, length=path == "/big")
        elif path.startswith("/hops/"):
            n = int(path.rsplit("/", 1)[1])
            if n == 0:
                self._send(200, BODY)
            else:
                self._send(302, headers={"Location": f"/hops/{n - 1}"})
        elif path == "/to-file":
            self._send(302, headers={"Location": "file:///etc/passwd"})
        elif path == "/to-ftp":
            self._send(301, headers={"Location": "ftp://127.0.0.1/img"})
        elif path == "/no-location":
            self._send(302)
        else:
            self._send(404, b"not here")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with loopback_http(_Handler) as url:
        yield url


def _settings(tmp_path, **kw) -> Settings:
    return Settings(allowed_dirs=(tmp_path,), url_timeout=10.0, **kw)


def _private(tmp_path, **kw) -> Settings:
    return _settings(tmp_path, allow_private_urls=True, **kw)


def test_loopback_url_refused_by_default(server, tmp_path):
    with pytest.raises(AccessError, match="MCP_VISION_ALLOW_PRIVATE_URLS"):
        load_media(f"{server}/img", _settings(tmp_path))


def test_localhost_name_refused_by_default(server, tmp_path):
    port = server.rsplit(":", 1)[1]
    with pytest.raises(AccessError, match="MCP_VISION_ALLOW_PRIVATE_URLS"):
        load_media(f"http://localhost:{port}/img", _settings(tmp_path))


def test_decimal_integer_host_refused_by_default(server, tmp_path):
    port = server.rsplit(":", 1)[1]
    url = f"http://2130706433:{port}/img"  # 127.0.0.1 written as one integer
    with pytest.raises(AccessError, match="MCP_VISION_ALLOW_PRIVATE_URLS"):
        load_media(url, _settings(tmp_path))
    assert load_media(url, _private(tmp_path)).data == BODY  # it really is the loopback server


def test_ipv6_loopback_refused_by_default(tmp_path):
    with pytest.raises(AccessError):
        load_media("http://[::1]:9/img", _settings(tmp_path))


def test_allowed_private_url_returns_exact_bytes(server, tmp_path):
    media = load_media(f"{server}/img", _private(tmp_path))
    assert media.data == BODY
    assert media.kind == "image"
    assert "/img" in media.label


def test_body_without_content_length_is_read_fully(server, tmp_path):
    assert load_media(f"{server}/nolength", _private(tmp_path)).data == BODY


def test_http_404_is_input_error_naming_status(server, tmp_path):
    with pytest.raises(InputError, match="HTTP 404") as info:
        load_media(f"{server}/missing", _private(tmp_path))
    assert not isinstance(info.value, AccessError)


def test_redirects_up_to_the_limit_are_followed(server, tmp_path):
    assert load_media(f"{server}/hops/{MAX_REDIRECTS}", _private(tmp_path)).data == BODY


def test_redirect_chain_longer_than_limit_is_refused(server, tmp_path):
    with pytest.raises(InputError, match=f"redirected more than {MAX_REDIRECTS} times"):
        load_media(f"{server}/hops/{MAX_REDIRECTS + 1}", _private(tmp_path))


def test_redirect_without_location_is_refused(server, tmp_path):
    with pytest.raises(InputError, match="Location"):
        load_media(f"{server}/no-location", _private(tmp_path))


def test_body_over_limit_with_content_length_is_refused(server, tmp_path):
    with pytest.raises(InputError, match="5,000 bytes, over the 1,000 byte limit"):
        load_media(f"{server}/big", _private(tmp_path, max_file_bytes=1000))


def test_body_over_limit_without_content_length_is_refused(server, tmp_path):
    with pytest.raises(InputError, match="over the 1,000 byte limit"):
        load_media(f"{server}/big-streamed", _private(tmp_path, max_file_bytes=1000))


def test_redirect_to_file_uri_is_refused(server, tmp_path):
    with pytest.raises(InputError, match="not http"):
        load_media(f"{server}/to-file", _private(tmp_path))


def test_redirect_to_ftp_is_refused(server, tmp_path):
    with pytest.raises(InputError, match="not http"):
        load_media(f"{server}/to-ftp", _private(tmp_path))


def test_connection_refused_is_input_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="could not be (fetched|reached)"):
        load_media(f"http://127.0.0.1:{port}/img", _private(tmp_path))
