"""load_media / read_allowed_file / sniff on real files, links, pipes and URIs built in tmp_path."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest

from mcp_vision.errors import AccessError, InputError
from mcp_vision.inputs.sources import load_media, missing_dirs_warning, read_allowed_file, sniff
from mcp_vision.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def _settings(*dirs: Path, **kw) -> Settings:
    return Settings(allowed_dirs=tuple(dirs), **kw)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "img"
    d.mkdir()
    return d


# --- paths and URIs -------------------------------------------------------------------------------


def test_absolute_path_is_read_and_sniffed(root):
    (root / "a.png").write_bytes(PNG)
    media = load_media(str(root / "a.png"), _settings(root))
    assert media.data == PNG
    assert media.kind == "image"
    assert "a.png" in media.label


def test_relative_path_resolves_against_cwd(root, monkeypatch):
    (root / "a.png").write_bytes(PNG)
    monkeypatch.chdir(root)
    assert load_media("a.png", _settings(root)).data == PNG


def test_relative_path_outside_cwd_dir_is_not_found_there(root, tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(PNG)  # exists one level up, not in cwd
    monkeypatch.chdir(root)
    with pytest.raises(InputError, match="does not exist") as info:
        load_media("a.png", _settings(root))
    assert not isinstance(info.value, AccessError)


def test_tilde_expands_to_home(root, monkeypatch):
    (root / "a.png").write_bytes(PNG)
    monkeypatch.setenv("HOME", str(root.parent))
    assert load_media("~/img/a.png", _settings(root)).data == PNG


def test_file_uri_is_read(root):
    (root / "a b.png").write_bytes(PNG)
    uri = (root / "a b.png").as_uri()  # percent-encodes the space
    assert "%20" in uri
    assert load_media(uri, _settings(root)).data == PNG


def test_file_uri_with_localhost_is_read(root):
    (root / "a.png").write_bytes(PNG)
    assert load_media(f"file://localhost{root / 'a.png'}", _settings(root)).data == PNG


def test_file_uri_with_remote_host_is_refused(root):
    with pytest.raises(InputError, match="remote host"):
        load_media(f"file://example.com{root / 'a.png'}", _settings(root))


def test_file_uri_outside_allowed_dirs_is_refused(root, tmp_path):
    (tmp_path / "secret.png").write_bytes(PNG)
    with pytest.raises(AccessError):
        load_media((tmp_path / "secret.png").as_uri(), _settings(root))


def test_data_uri_base64(root):
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    media = load_media(uri, _settings(root))
    assert media.data == PNG
    assert media.kind == "image"
    assert media.label == "the data: URI"


def test_data_uri_base64_with_line_breaks(root):
    encoded = base64.encodebytes(PNG * 4).decode()  # wrapped at 76 columns
    assert "\n" in encoded
    assert load_media("data:image/png;base64," + encoded, _settings(root)).data == PNG * 4


def test_data_uri_bad_base64(root):
    with pytest.raises(InputError, match="not valid base64"):
        load_media("data:image/png;base64,@@@not*base64", _settings(root))


def test_data_uri_without_comma(root):
    with pytest.raises(InputError, match="','"):
        load_media("data:image/png;base64", _settings(root))


def test_data_uri_over_size_limit(root):
    uri = "data:image/png;base64," + base64.b64encode(b"x" * 1000).decode()
    with pytest.raises(InputError, match="MCP_VISION_MAX_FILE_BYTES"):
        load_media(uri, _settings(root, max_file_bytes=100))


def test_data_uri_decoding_just_over_limit_is_refused(root):
    uri = "data:application/octet-stream;base64," + base64.b64encode(b"x" * 12).decode()
    with pytest.raises(InputError, match="MCP_VISION_MAX_FILE_BYTES"):
        load_media(uri, _settings(root, max_file_bytes=10))


def test_plain_data_uri_over_limit_is_refused(root):
    with pytest.raises(InputError, match="MCP_VISION_MAX_FILE_BYTES"):
        load_media("data:," + "a" * 13, _settings(root, max_file_bytes=10))


def test_plain_data_uri_ascii_percent_escapes(root):
    assert load_media("data:text/plain,hello%20world", _settings(root)).data == b"hello world"


def test_plain_data_uri_keeps_binary_percent_escapes(root):
    media = load_media("data:image/png,%89PNG%0D%0A%1A%0A", _settings(root))
    assert media.data == b"\x89PNG\r\n\x1a\n"


def test_unsupported_scheme(root):
    with pytest.raises(InputError, match="unsupported scheme 'ftp'"):
        load_media("ftp://example.com/a.png", _settings(root))


@pytest.mark.parametrize("source", ["", "   ", "\n"])
def test_empty_input(root, source):
    with pytest.raises(InputError, match="No media given"):
        load_media(source, _settings(root))


def test_empty_file(root):
    (root / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_media(str(root / "empty.png"), _settings(root))


def test_missing_file_message(root):
    with pytest.raises(InputError, match="does not exist") as info:
        load_media(str(root / "nope.png"), _settings(root))
    assert "nope.png" in str(info.value)
    assert not isinstance(info.value, AccessError)


def test_directory_is_refused(root):
    (root / "sub").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        load_media(str(root / "sub"), _settings(root))


def test_fifo_is_refused_without_hanging(root):
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []

    def run() -> None:
        try:
            outcome.append(read_allowed_file(fifo, _settings(root)))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():
        with open(fifo, "wb"):  # unblock the reader so the thread ends
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], InputError)
    assert "not a regular file" in str(outcome[0])


def test_file_over_max_file_bytes_is_refused(root):
    (root / "big.png").write_bytes(PNG + b"\x00" * 100)
    with pytest.raises(InputError, match="over the 64 byte limit"):
        load_media(str(root / "big.png"), _settings(root, max_file_bytes=64))


def test_file_at_max_file_bytes_is_read(root):
    (root / "ok.png").write_bytes(PNG)
    assert load_media(str(root / "ok.png"), _settings(root, max_file_bytes=len(PNG))).data == PNG


# --- the allowed-directory boundary ---------------------------------------------------------------


def test_outside_allowed_dirs_is_refused(root, tmp_path):
    (tmp_path / "secret.png").write_bytes(PNG)
    with pytest.raises(AccessError, match="outside the allowed directories") as info:
        load_media(str(tmp_path / "secret.png"), _settings(root))
    assert "MCP_VISION_ALLOWED_DIRS" in str(info.value)


@pytest.mark.parametrize("relative", ["secret.png", "./secret.png", "sub/../secret.png"])
def test_a_relative_path_refused_says_where_it_was_resolved(root, tmp_path, monkeypatch, relative):
    """The working directory a relative path was resolved against is named, so the caller sees why it is outside;
    the path shown is worked out from the text (the same whether the file is there or not)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(AccessError) as missing:
        load_media(relative, _settings(root))
    (elsewhere / "secret.png").write_bytes(PNG)
    with pytest.raises(AccessError) as existing:
        load_media(relative, _settings(root))
    assert str(missing.value) == str(existing.value) == (
        f"'{Path(relative)}' (resolved against {elsewhere} as '{elsewhere / 'secret.png'}') is outside the allowed "
        f"directories ({root}): move the file there or add its directory to MCP_VISION_ALLOWED_DIRS."
    )


def test_a_relative_path_that_climbs_out_says_where_it_landed(root, tmp_path, monkeypatch):
    monkeypatch.chdir(root)
    with pytest.raises(AccessError) as refused:
        load_media("../other/a.png", _settings(root))
    assert str(refused.value).startswith(
        f"'../other/a.png' (resolved against {root} as '{tmp_path / 'other' / 'a.png'}') is outside the allowed"
    )


def test_an_absolute_path_refused_is_shown_as_given(root, tmp_path):
    with pytest.raises(AccessError) as refused:
        load_media(str(tmp_path / "secret.png"), _settings(root))
    assert str(refused.value).startswith(f"'{tmp_path / 'secret.png'}' is outside the allowed directories ({root}): ")


def test_the_start_warning_names_each_configured_directory_that_is_not_one(root, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory")
    gone = tmp_path / "gone"
    assert missing_dirs_warning(_settings(root, gone, a_file)) == (
        f"MCP_VISION_ALLOWED_DIRS names {gone}, {a_file}, which are not existing directories: no file there can be "
        "read; create them or correct MCP_VISION_ALLOWED_DIRS"
    )
    assert missing_dirs_warning(_settings(root)) is None
    assert missing_dirs_warning(Settings()) is None  # nothing configured: the default is the working directory


def test_outside_error_does_not_reveal_existence(root, tmp_path):
    target = tmp_path / "secret.png"
    with pytest.raises(AccessError) as missing:
        load_media(str(target), _settings(root))
    target.write_bytes(PNG)
    with pytest.raises(AccessError) as existing:
        load_media(str(target), _settings(root))
    assert type(missing.value) is type(existing.value)
    assert str(missing.value) == str(existing.value)


def test_outside_directory_is_refused_like_a_file(root, tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(AccessError):
        load_media(str(tmp_path / "other"), _settings(root))


def test_sibling_with_shared_prefix_is_refused(tmp_path):
    allowed = tmp_path / "img"
    evil = tmp_path / "img_evil"
    allowed.mkdir()
    evil.mkdir()
    (evil / "x.png").write_bytes(PNG)
    with pytest.raises(AccessError):
        load_media(str(evil / "x.png"), _settings(allowed))


def test_symlink_inside_pointing_outside_is_refused(root, tmp_path):
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(AccessError):
        load_media(str(root / "link.png"), _settings(root))


def test_symlinked_directory_inside_pointing_outside_is_refused(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(PNG)
    (root / "door").symlink_to(outside, target_is_directory=True)
    with pytest.raises(AccessError):
        load_media(str(root / "door" / "secret.png"), _settings(root))


def test_symlink_inside_pointing_inside_is_read(root):
    (root / "real.png").write_bytes(PNG)
    (root / "link.png").symlink_to(root / "real.png")
    assert load_media(str(root / "link.png"), _settings(root)).data == PNG


def test_allowed_dir_given_through_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.png").write_bytes(PNG)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert load_media(str(link / "a.png"), _settings(link)).data == PNG
    assert load_media(str(real / "a.png"), _settings(link)).data == PNG


def test_dotdot_traversal_is_refused(root, tmp_path):
    (tmp_path / "secret.png").write_bytes(PNG)
    with pytest.raises(AccessError):
        load_media(str(root / ".." / "secret.png"), _settings(root))


def test_relative_dotdot_traversal_is_refused(root, tmp_path, monkeypatch):
    (tmp_path / "secret.png").write_bytes(PNG)
    monkeypatch.chdir(root)
    with pytest.raises(AccessError):
        load_media("../secret.png", _settings(root))


def test_dotdot_that_stays_inside_is_read(root):
    (root / "sub").mkdir()
    (root / "a.png").write_bytes(PNG)
    assert load_media(str(root / "sub" / ".." / "a.png"), _settings(root)).data == PNG


def test_no_allowed_dirs_refuses_everything(root):
    (root / "a.png").write_bytes(PNG)
    with pytest.raises(AccessError):
        load_media(str(root / "a.png"), _settings())


def test_urls_refused_when_allow_urls_false(root):
    with pytest.raises(AccessError, match="MCP_VISION_ALLOW_URLS"):
        load_media("https://example.com/a.png", _settings(root, allow_urls=False))


# --- sniff ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
        b"GIF89a\x01\x00\x01\x00",
        b"GIF87a\x01\x00\x01\x00",
        b"RIFF\x24\x00\x00\x00WEBPVP8 ",
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00",
    ],
)
def test_sniff_images(data):
    assert sniff(data) == "image"


def test_sniff_pdf():
    assert sniff(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n") == "pdf"


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2mp41",
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00",
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",
        b"RIFF\x24\x00\x00\x00AVI LIST",
    ],
)
def test_sniff_videos(data):
    assert sniff(data) == "video"


@pytest.mark.parametrize("data", [b"hello, world\n", b"", b"RIFF\x24\x00\x00\x00WAVEfmt "])
def test_sniff_unknown(data):
    assert sniff(data) == "unknown"


def test_sniff_ignores_file_name(root):
    (root / "photo.png").write_bytes(b"%PDF-1.4\n")
    assert load_media(str(root / "photo.png"), _settings(root)).kind == "pdf"
