"""Path attacks on the file boundary, modelled on the reference filesystem server's path-validation
tests: whole-component comparison, traversal, prefix siblings, symlinks out (file, directory, chains,
loops, dangling), NUL bytes, very long paths, file:// hosts, ~user, /proc, FIFOs and devices, swaps
between check and open. Errors never say whether something outside exists and never echo contents."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from mcp import Client

import mcp_vision.inputs.sources as media_module
from mcp_vision.errors import AccessError, InputError, OutsideAllowedDirs
from mcp_vision.inputs.sources import is_within, load_media
from mcp_vision.server import build_server
from mcp_vision.settings import Settings

from . import hostile

SECRET = b"root:x:0:0:SECRET-TOKEN-4711:/root:/bin/bash\n"
PNG = hostile.png()


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """allowed/ (with a real image), a forbidden/ sibling holding a secret, and allowed_evil/ beside it."""
    allowed, forbidden, evil = tmp_path / "allowed", tmp_path / "forbidden", tmp_path / "allowed_evil"
    for d in (allowed, forbidden, evil):
        d.mkdir()
    (allowed / "ok.png").write_bytes(PNG)
    (forbidden / "secret.txt").write_bytes(SECRET)
    (forbidden / "secret.png").write_bytes(PNG)
    (evil / "x.png").write_bytes(PNG)
    return {"allowed": allowed, "forbidden": forbidden, "evil": evil, "root": tmp_path}


def _settings(*dirs: Path) -> Settings:
    return Settings(allowed_dirs=tuple(dirs), allow_urls=False)


def _refused(source: str, settings: Settings) -> InputError:
    with pytest.raises(InputError) as info:
        load_media(source, settings)
    message = str(info.value)
    assert "\n" not in message and "SECRET" not in message and "root:x:" not in message
    return info.value


# ------------------------------------------------------------------ whole-component comparison


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("/home/user/project", True),
        ("/home/user/project/src/index.js", True),
        ("/home/user/project/deeply/nested/file.txt", True),
        ("/home/user/project2", False),
        ("/home/user/project_backup", False),
        ("/home/user/project-old", False),
        ("/home/user/projectile", False),
        ("/home/user/project.bak", False),
        ("/home/user", False),
        ("/", False),
        ("/etc/passwd", False),
        ("/home/user/project/..test", True),  # a name with dots, not traversal
        ("/home/user/project/...", True),
        ("/home/user/project/%2e%2e", True),  # percent signs are just characters in a path
        ("/home/user/my-project (v2)", False),
    ],
)
def test_is_within_compares_whole_components(path, inside):
    assert is_within(Path(path), (Path("/home/user/project"),)) is inside


def test_is_within_with_several_and_nested_roots():
    roots = (Path("/data/a"), Path("/data/b"), Path("/data/b/inner"))
    assert is_within(Path("/data/b/inner/x"), roots)
    assert is_within(Path("/data/a/x"), roots)
    assert not is_within(Path("/data/c/x"), roots)
    assert not is_within(Path("/data/a_x"), roots)
    assert not is_within(Path("/data"), roots)
    assert not is_within(Path("/data/a"), ())


def test_unicode_forms_are_not_normalised_into_a_match():
    composed = "/home/user/caf\u00e9"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert is_within(Path(composed + "/x"), (Path(composed),))
    assert not is_within(Path(decomposed + "/x"), (Path(composed),))


# ------------------------------------------------------------------ escapes through the file system


def test_etc_passwd_is_refused_without_content(tree):
    error = _refused("/etc/passwd", _settings(tree["allowed"]))
    assert isinstance(error, AccessError) and "outside the allowed directories" in str(error)
    assert "root:" not in str(error)


@pytest.mark.parametrize(
    "relative",
    [
        "../forbidden/secret.txt",
        "./../forbidden/secret.txt",
        "sub/../../forbidden/secret.txt",
        "../allowed/../forbidden/secret.txt",
        "..",
        "../allowed_evil/x.png",
        "a/" * 500 + "../" * 502 + "forbidden/secret.txt",
    ],
)
def test_dotdot_escapes_are_refused(tree, relative, monkeypatch):
    settings = _settings(tree["allowed"])
    assert isinstance(_refused(str(tree["allowed"]) + "/" + relative, settings), AccessError)
    monkeypatch.chdir(tree["allowed"])
    assert isinstance(_refused(relative, settings), AccessError)


def test_prefix_sibling_is_refused(tree):
    assert isinstance(_refused(str(tree["evil"] / "x.png"), _settings(tree["allowed"])), AccessError)


def test_symlinked_file_leading_out_is_refused(tree):
    (tree["allowed"] / "link.txt").symlink_to(tree["forbidden"] / "secret.txt")
    assert isinstance(_refused(str(tree["allowed"] / "link.txt"), _settings(tree["allowed"])), AccessError)


def test_symlinked_directory_leading_out_is_refused(tree):
    (tree["allowed"] / "door").symlink_to(tree["forbidden"], target_is_directory=True)
    settings = _settings(tree["allowed"])
    for name in ("secret.txt", "secret.png"):
        assert isinstance(_refused(str(tree["allowed"] / "door" / name), settings), AccessError)


def test_chain_of_symlinks_leading_out_is_refused(tree):
    allowed = tree["allowed"]
    (allowed / "c").symlink_to(tree["forbidden"] / "secret.png")
    (allowed / "b").symlink_to(allowed / "c")
    (allowed / "a").symlink_to(allowed / "b")
    assert isinstance(_refused(str(allowed / "a"), _settings(allowed)), AccessError)


def test_chain_of_symlinks_staying_inside_is_read(tree):
    allowed = tree["allowed"]
    (allowed / "b").symlink_to(allowed / "ok.png")
    (allowed / "a").symlink_to(allowed / "b")
    assert load_media(str(allowed / "a"), _settings(allowed)).data == PNG


@pytest.mark.parametrize("kind", ["self", "pair"])
def test_symlink_loops_are_refused_without_hanging(tree, kind):
    allowed = tree["allowed"]
    if kind == "self":
        (allowed / "loop").symlink_to(allowed / "loop")
    else:
        (allowed / "loop").symlink_to(allowed / "other")
        (allowed / "other").symlink_to(allowed / "loop")
    _refused(str(allowed / "loop"), _settings(allowed))
    _refused(str(allowed / "loop" / "x.png"), _settings(allowed))


def test_dangling_symlink_out_says_the_same_as_one_to_an_existing_file(tree):
    """The answer for a link to a missing outside file equals the one for a link to an existing one."""
    allowed = tree["allowed"]
    (allowed / "link-1").symlink_to(tree["forbidden"] / "secret.txt")
    (allowed / "link-2").symlink_to(tree["forbidden"] / "nothing.txt")
    settings = _settings(allowed)
    there = _refused(str(allowed / "link-1"), settings)
    missing = _refused(str(allowed / "link-2"), settings)
    assert type(there) is type(missing) is OutsideAllowedDirs
    assert str(there).replace("link-1", "X") == str(missing).replace("link-2", "X")


@pytest.mark.parametrize(
    "target",
    ["secret.txt", "nothing.txt", "", "secret.txt/child", "nothing/child"],
    ids=["file", "missing-file", "directory", "below-a-file", "below-missing"],
)
def test_outside_answers_never_depend_on_what_is_there(tree, target):
    settings = _settings(tree["allowed"])
    error = _refused(str(tree["forbidden"] / target), settings)
    reference = _refused(str(tree["forbidden"] / "REF"), settings)
    assert type(error) is type(reference) is OutsideAllowedDirs
    shown = str(tree["forbidden"] / target).rstrip("/")
    assert str(error).replace(shown, "X") == str(reference).replace(str(tree["forbidden"] / "REF"), "X")


# ------------------------------------------------------------------ odd names and schemes


@pytest.mark.parametrize(
    "source",
    ["{allowed}/ok.png\x00.txt", "{allowed}\x00/../forbidden/secret.txt", "\x00{allowed}/ok.png", "file://{allowed}/ok%00.png"],
)
def test_nul_bytes_are_refused(tree, source):
    error = _refused(source.format(allowed=tree["allowed"]), _settings(tree["allowed"]))
    assert "NUL" in str(error)


def test_lone_surrogates_are_refused(tree):
    assert "not a valid file path" in str(_refused(f"{tree['allowed']}/\ud800.png", _settings(tree["allowed"])))


def test_very_long_paths_are_refused_in_one_line(tree):
    settings = _settings(tree["allowed"])
    long_name = _refused(str(tree["allowed"] / ("a" * 5000)), settings)
    deep = _refused(str(tree["allowed"]) + "/a" * 3000 + "/x.png", settings)
    for error in (long_name, deep):
        assert not isinstance(error, AccessError) and len(str(error)) < 600


@pytest.mark.parametrize("host", ["example.com", "127.0.0.1", "attacker.example:445", "user@host"])
def test_file_uri_with_a_host_is_refused(tree, host):
    error = _refused(f"file://{host}{tree['allowed']}/ok.png", _settings(tree["allowed"]))
    assert "names a remote host" in str(error)


def test_file_uri_with_encoded_dotdot_is_refused(tree):
    uri = f"file://{tree['allowed']}/%2e%2e/forbidden/secret.txt"
    assert isinstance(_refused(uri, _settings(tree["allowed"])), AccessError)


def test_tilde_other_user_is_never_expanded(tree, monkeypatch):
    """`~name` is a plain relative name: nothing is learned about other accounts' homes."""
    allowed = tree["allowed"]
    monkeypatch.chdir(allowed)
    error = _refused("~root/.bashrc", _settings(allowed))
    assert "does not exist" in str(error) and "/root" not in str(error)
    (allowed / "~root").mkdir()
    (allowed / "~root" / "pic.png").write_bytes(PNG)
    assert load_media("~root/pic.png", _settings(allowed)).data == PNG  # a directory named ~root, here


def test_own_home_tilde_is_expanded(tree, monkeypatch):
    monkeypatch.setenv("HOME", str(tree["root"]))
    assert load_media("~/allowed/ok.png", _settings(tree["allowed"])).data == PNG


# ------------------------------------------------------------------ special files


def test_proc_is_never_read_even_when_allowed():
    for allowed in (Path("/proc/self"), Path("/")):
        error = _refused("/proc/self/environ", _settings(allowed))
        assert "not a regular file" in str(error) or isinstance(error, AccessError)
    assert "not a regular file" in str(_refused("/proc/self/status", _settings(Path("/proc"))))


def test_proc_reached_through_a_symlink_is_refused(tree):
    (tree["allowed"] / "env").symlink_to("/proc/self/environ")
    assert isinstance(_refused(str(tree["allowed"] / "env"), _settings(tree["allowed"])), AccessError)


def test_devices_are_not_read():
    error = _refused("/dev/zero", _settings(Path("/dev")))
    assert "not a regular file" in str(error)


def test_fifo_inside_is_refused_without_hanging(tree):
    fifo = tree["allowed"] / "pipe.png"
    os.mkfifo(fifo)
    assert "not a regular file" in str(_refused(str(fifo), _settings(tree["allowed"])))


# ------------------------------------------------------------------ swaps between the check and the open


def test_file_swapped_for_a_symlink_after_the_check_is_refused(tree, monkeypatch):
    """O_NOFOLLOW: what is opened is the checked name, never a link planted after the check."""
    allowed = tree["allowed"]
    real_realpath = os.path.realpath

    def realpath_then_swap(path, *args, **kwargs):
        resolved = real_realpath(path, *args, **kwargs)
        if resolved == str(allowed / "ok.png"):
            os.unlink(resolved)
            os.symlink(tree["forbidden"] / "secret.txt", resolved)
        return resolved

    monkeypatch.setattr(media_module.os.path, "realpath", realpath_then_swap)
    assert isinstance(_refused(str(allowed / "ok.png"), _settings(allowed)), AccessError)


def test_directory_swapped_for_a_symlink_after_the_check_is_refused(tree, monkeypatch):
    """A parent directory replaced by a link out after the check: the opened file's real path is checked."""
    allowed = tree["allowed"]
    (allowed / "sub").mkdir()
    (allowed / "sub" / "secret.txt").write_bytes(b"harmless")
    real_realpath = os.path.realpath

    def realpath_then_swap(path, *args, **kwargs):
        resolved = real_realpath(path, *args, **kwargs)
        if resolved == str(allowed / "sub" / "secret.txt"):
            os.rename(allowed / "sub", allowed / "moved")
            os.symlink(tree["forbidden"], allowed / "sub", target_is_directory=True)
        return resolved

    monkeypatch.setattr(media_module.os.path, "realpath", realpath_then_swap)
    assert isinstance(_refused(str(allowed / "sub" / "secret.txt"), _settings(allowed)), AccessError)


# ------------------------------------------------------------------ through the tools


ATTACKS = [
    "/etc/passwd",
    "/etc/shadow",
    "/proc/self/environ",
    "{allowed}/../forbidden/secret.txt",
    "{allowed}/link-out.txt",
    "{allowed}/door/secret.txt",
    "{allowed}/loop",
    "{evil}/x.png",
    "file:///etc/passwd",
    "file://attacker.example/etc/passwd",
    "~root/.ssh/id_rsa",
    "{allowed}/inside-secret.txt",
    "{allowed}/pipe",
]


@pytest.mark.anyio
async def test_attacks_through_every_tool_are_errors_that_leak_nothing(tree, monkeypatch):
    allowed = tree["allowed"]
    (allowed / "link-out.txt").symlink_to(tree["forbidden"] / "secret.txt")
    (allowed / "door").symlink_to(tree["forbidden"], target_is_directory=True)
    (allowed / "loop").symlink_to(allowed / "loop")
    (allowed / "inside-secret.txt").write_bytes(SECRET)  # inside, readable, but not media: never echoed
    os.mkfifo(allowed / "pipe")
    monkeypatch.chdir(allowed)
    settings = Settings(model=str(tree["root"] / "no-model"), allowed_dirs=(allowed,))
    good = str(allowed / "ok.png")
    async with Client(build_server(settings)) as client:
        for attack in ATTACKS:
            source = attack.format(allowed=allowed, evil=tree["evil"])
            for tool, args in hostile.media_tool_calls(source, good):
                result = await client.call_tool(tool, args)
                assert result.is_error, (tool, attack)
                text = result.content[0].text
                assert "\n" not in text and "SECRET" not in text and "root:x:" not in text, text
                assert "PATH=" not in text and "HOME=" not in text  # nothing from /proc/self/environ
