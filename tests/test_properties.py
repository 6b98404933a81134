"""Property-based tests (hypothesis) on the input parsers: whatever an agent sends, they answer or
raise InputError (AccessError is one), never anything else, and their invariants hold."""

from __future__ import annotations

import base64
import ipaddress
import socket
from pathlib import Path, PurePosixPath
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_vision.inputs.pdf import parse_pages
from mcp_vision.errors import InputError
from mcp_vision.inputs.fetch import fetch_url, is_public_address
from mcp_vision.inputs.sources import _decode_data_uri, describe_source, is_within, load_media, sniff
from mcp_vision.settings import Settings

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

page_specs = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(alphabet="0123456789-, \t", max_size=30),
    st.lists(
        st.tuples(st.integers(0, 250), st.one_of(st.none(), st.just(""), st.integers(0, 250))), min_size=1, max_size=6
    ).map(lambda parts: ",".join(f"{a}" if b is None else f"{a}-{b}" for a, b in parts)),
)


@FAST
@given(spec=page_specs, count=st.integers(1, 200))
def test_parse_pages_returns_sorted_pages_in_range_or_refuses(spec, count):
    try:
        pages = parse_pages(spec, count)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message and str(count) in message  # it states the page count
        return
    assert pages == sorted(set(pages))
    assert pages and all(1 <= p <= count for p in pages)
    if spec is None or not spec.strip():
        assert pages == list(range(1, count + 1))


@FAST
@given(ranges=st.lists(st.tuples(st.integers(1, 50), st.integers(0, 10)), min_size=1, max_size=8))
def test_parse_pages_is_the_union_of_its_ranges(ranges):
    spec = ",".join(f"{a}-{a + n}" if n else str(a) for a, n in ranges)
    expected = sorted({p for a, n in ranges for p in range(a, a + n + 1)})
    assert parse_pages(spec, 60) == expected


@FAST
@given(data=st.binary(max_size=2048))
def test_sniff_always_names_a_kind(data):
    assert sniff(data) in {"image", "pdf", "video", "unknown"}


@FAST
@given(rest=st.binary(max_size=256))
def test_sniff_decides_by_the_leading_magic(rest):
    assert sniff(b"%PDF-1.7\n" + rest) == "pdf"
    assert sniff(b"\x89PNG\r\n\x1a\n" + rest) == "image"
    assert sniff(b"\x1a\x45\xdf\xa3" + rest) == "video"


@FAST
@given(uri=st.text(max_size=300), limit=st.integers(1, 4096))
def test_data_uri_parser_returns_bytes_within_the_limit_or_refuses(uri, limit):
    try:
        data = _decode_data_uri("data:" + uri, limit)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(data, bytes) and len(data) <= limit


@FAST
@given(data=st.binary(max_size=1024), mime=st.sampled_from(["image/png", "application/pdf", "", "text/plain;charset=x"]))
def test_data_uri_round_trips(data, mime):
    limit = max(len(data), 1)
    assert _decode_data_uri(f"data:{mime};base64," + base64.b64encode(data).decode(), limit) == data
    assert _decode_data_uri(f"data:{mime}," + quote_from_bytes(data), limit) == data


@FAST
@given(source=st.text(max_size=200))
def test_load_media_on_any_text_answers_or_refuses(tmp_path_factory, source):
    """Any string as a media source: read, or refused with InputError. No URL is fetched (URLs are off)."""
    allowed = tmp_path_factory.mktemp("allowed")
    try:
        media = load_media(source, Settings(allowed_dirs=(allowed,), allow_urls=False))
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert media.data and media.kind in {"image", "pdf", "video", "unknown"}  # only data: URIs get here


@FAST
@given(
    url=st.one_of(
        st.text(max_size=80).map(lambda t: "http://" + t),
        st.from_regex(r"\Ahttps?://[a-z0-9.\[\]:%@-]{0,30}(:[0-9x]{0,7})?/[ -~]{0,20}\Z"),
    )
)
def test_fetch_url_never_raises_anything_but_input_error(url):
    """URL parsing and resolution on hostile URLs, with a resolver that refuses every name (no traffic)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _no_dns)
        try:
            fetch_url(url, Settings(url_timeout=1.0), describe_source(url))
        except InputError as exc:
            assert "\n" not in str(exc)
        else:
            pytest.fail(f"{url!r} was fetched")


def _no_dns(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "no resolver in this test")


@FAST
@given(address=st.one_of(st.text(max_size=60), st.ip_addresses().map(str)))
def test_is_public_address_is_total(address):
    assert is_public_address(address) in {True, False}


@FAST
@given(ip=st.ip_addresses(v=4))
def test_ipv4_mapped_and_6to4_forms_are_judged_like_their_ipv4(ip):
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80))
    assert is_public_address(str(mapped)) == is_public_address(str(ip))
    assert is_public_address(str(sixtofour)) == is_public_address(str(ip))
    if not ip.is_global:
        assert not is_public_address(str(ip))


@FAST
@given(ip=st.ip_addresses())
def test_private_loopback_and_link_local_are_never_public(ip):
    embedded = None
    if ip.version == 6:  # IPv4-mapped, 6to4, Teredo and NAT64 addresses are judged by the IPv4 inside
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if embedded is not None:
        assert is_public_address(str(ip)) == is_public_address(str(embedded))
    elif ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved:
        assert not is_public_address(str(ip))


segments = st.text(alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s not in {".", ".."}
)


@FAST
@given(root=st.lists(segments, min_size=1, max_size=4), rest=st.lists(segments, max_size=4), suffix=segments)
def test_is_within_is_a_whole_component_prefix(root, rest, suffix):
    base = Path("/", *root)
    assert is_within(Path(base, *rest), (base,))
    sibling = Path("/", *root[:-1], root[-1] + suffix)  # /data/img_evil beside /data/img
    assert not is_within(sibling, (base,))
    assert not is_within(base.parent, (base,)) or base.parent == base
    inside = is_within(Path("/", *rest), (base,))
    assert inside == (PurePosixPath("/", *rest).parts[: len(base.parts)] == base.parts)
