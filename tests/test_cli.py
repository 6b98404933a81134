"""The command line itself: `--help` tells the truth, and `download` fails in one line, never a traceback.

The download tests run the real command in a subprocess against loopback only: a closed port, or a tiny
local server that answers like the hub does for a missing repository. Nothing leaves the machine.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_vision import cli
from mcp_vision.settings import ENVIRONMENT, Settings

from .servers import loopback_http


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN"}
           and not k.startswith("MCP_VISION_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=endpoint, NO_PROXY="127.0.0.1,localhost",
               HF_HUB_DISABLE_TELEMETRY="1", **extra)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(proxy, None)  # loopback only, straight to the port
    return env


def _download(tmp_path: Path, env: dict[str, str], model: str = "some/model") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_vision", "download", "--model", model],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)


def _assert_one_line_failure(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 2, proc.stderr  # "downloading ..." and the one line that says what failed
    assert lines[-1].startswith("mcp-vision-internvl download: "), proc.stderr
    assert proc.stdout == ""
    return lines[-1]


def test_download_with_the_hub_unreachable_is_one_line(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    line = _assert_one_line_failure(_download(tmp_path, _env(tmp_path, endpoint)))
    assert f"could not reach {endpoint}" in line and "some/model" in line
    assert "MCP_VISION_MODEL" in line  # what to do instead


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_download_refuses_under_the_users_offline_setting(tmp_path, var):
    # The endpoint is a closed loopback port all the same, should the refusal ever not happen.
    env = _env(tmp_path, f"http://127.0.0.1:{_closed_port()}", **{var: "1"})
    proc = _download(tmp_path, env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"unset {var}" in line and "MCP_VISION_MODEL" in line


def test_download_treats_a_false_offline_value_as_unset(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    line = _assert_one_line_failure(_download(tmp_path, _env(tmp_path, endpoint, HF_HUB_OFFLINE="0")))
    assert "could not reach" in line


@pytest.fixture
def missing_repo_hub() -> Iterator[str]:
    """A loopback server answering every request the way the hub answers for a repository that does not exist."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _missing(self) -> None:
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _missing

        def log_message(self, *args) -> None:
            pass

    with loopback_http(Handler) as url:
        yield url


def test_download_of_a_missing_repo_is_one_line(tmp_path, missing_repo_hub):
    line = _assert_one_line_failure(_download(tmp_path, _env(tmp_path, missing_repo_hub), model="nobody/no-such-model"))
    assert "no model nobody/no-such-model" in line and "--model" in line


def test_download_of_a_local_directory_needs_nothing(tmp_path):
    proc = _download(tmp_path, _env(tmp_path, f"http://127.0.0.1:{_closed_port()}"), model=str(tmp_path))
    assert proc.returncode == 0 and "nothing to download" in proc.stderr


def test_the_servers_own_offline_setting_is_not_the_users(tmp_path, monkeypatch):
    """The server sets HF_HUB_OFFLINE itself when downloads are off; that never makes `download` refuse."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYMUPDF_MESSAGE", "HF_HUB_DISABLE_TELEMETRY",
                "TOKENIZERS_PARALLELISM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cli, "_OFFLINE_SET_HERE", set())
    monkeypatch.setattr(cli.logging, "basicConfig", lambda **kw: None)
    cli._configure_process(Settings(allow_download=False))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert cli._download(str(tmp_path)) == 0  # a local directory: not refused
    monkeypatch.setattr(cli, "_OFFLINE_SET_HERE", set())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the same value, set by the user this time
    assert cli._download("some/model") == 1  # refused before any network
    assert cli._download(str(tmp_path)) == 0  # a local directory needs no download, offline or not


def test_help_names_the_command_and_tells_the_truth_about_the_environment():
    parser = cli.build_parser()
    text = parser.format_help()
    assert parser.prog == "mcp-vision-internvl"
    assert text.startswith("usage: mcp-vision-internvl ")
    assert "Every option also reads" not in text
    assert "override the environment variables of the same settings" in text
    flat = " ".join(text.split())
    for var in ENVIRONMENT.values():
        assert var in flat
    for action in parser._actions:  # every option says what it is for
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings


def test_version_names_the_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.run(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("mcp-vision-internvl ")


def test_started_in_the_root_directory_with_nothing_configured_it_warns_what_to_set(tmp_path):
    """Desktop clients start servers in /: nothing there is read by default, and the log says so at start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_VISION_")}
    env.update(MCP_VISION_MODEL=str(tmp_path / "no-model"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "mcp_vision"], env=env, cwd="/", stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "WARNING" in proc.stderr and "set MCP_VISION_ALLOWED_DIRS" in proc.stderr, proc.stderr
    assert "files: the client's roots, which replace the default (none)" in proc.stderr, proc.stderr


@pytest.mark.parametrize("by_flag", [False, True], ids=["variable", "flag"])
def test_a_configured_directory_that_does_not_exist_is_warned_at_start_in_one_line(tmp_path, by_flag):
    """A typo in MCP_VISION_ALLOWED_DIRS would otherwise only show as every file being refused as outside."""
    there, missing = tmp_path / "photos", tmp_path / "nonexistent" / "dir"
    there.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_VISION_")}
    env.update(MCP_VISION_MODEL=str(tmp_path / "no-model"), HF_HUB_OFFLINE="1")
    dirs = os.pathsep.join([str(there), str(missing)])
    argv = ["--allowed-dir", dirs] if by_flag else []
    if not by_flag:
        env["MCP_VISION_ALLOWED_DIRS"] = dirs
    setting = "--allowed-dir" if by_flag else "MCP_VISION_ALLOWED_DIRS"
    proc = subprocess.run([sys.executable, "-m", "mcp_vision", *argv], env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    warned = [line for line in proc.stderr.splitlines() if str(missing) in line and "serving over" not in line]
    assert len(warned) == 1, proc.stderr
    assert "WARNING" in warned[0] and (
        f"{setting} names {missing}, which is not an existing directory: no file there can be read; create it or "
        f"correct {setting}"
    ) in warned[0]
    assert str(there) not in warned[0]  # the directory that exists is not blamed


def test_configured_directories_that_exist_start_without_a_warning(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_VISION_")}
    env.update(MCP_VISION_MODEL=str(tmp_path / "no-model"), HF_HUB_OFFLINE="1", MCP_VISION_ALLOWED_DIRS=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "mcp_vision"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--max-tiles", "100"], "--max-tiles='100' is out of range: use 1 to 40"),
        (["--max-tiles", "0"], "--max-tiles='0' is out of range: use 1 to 40"),
        (["--max-new-tokens", "-5"], "--max-new-tokens='-5' is out of range: use 1 to 8192"),
        (["--max-tiles", "many"], "--max-tiles='many' is not an integer"),
    ],
)
def test_a_bad_flag_refuses_to_start_in_a_few_lines(tmp_path, argv, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_VISION_")}
    proc = subprocess.run([sys.executable, "-m", "mcp_vision", *argv], env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_flags_and_variables_are_read_by_the_same_parsers(monkeypatch):
    monkeypatch.setenv("MCP_VISION_MAX_TILES", "100")
    with pytest.raises(ValueError, match="MCP_VISION_MAX_TILES='100' is out of range"):
        cli.settings_from(cli.build_parser().parse_args([]))
    monkeypatch.setenv("MCP_VISION_MAX_TILES", "6")
    assert cli.settings_from(cli.build_parser().parse_args(["--max-tiles", " 3 "])).max_tiles == 3


def test_download_converts_when_the_openvino_engine_will_run_it(tiny_model_dir, monkeypatch, capsys):
    """The documented set-up step leaves nothing for the first call: on a CPU with the openvino extra, `download`
    converts too (and says so); with the PyTorch engine asked for, it does not."""
    pytest.importorskip("openvino")
    for var in [v for v in os.environ if v.startswith("MCP_VISION_")]:
        monkeypatch.delenv(var)
    monkeypatch.setattr(cli.logging, "basicConfig", lambda **kw: None)
    converted: list[Settings] = []
    monkeypatch.setattr(cli, "_convert", lambda settings: converted.append(settings) or 0)
    assert cli.run(["download", "--model", str(tiny_model_dir)]) == 0
    assert [s.model for s in converted] == [str(tiny_model_dir)]
    assert "converting it for the OpenVINO engine" in capsys.readouterr().err
    assert cli.run(["--backend", "local", "download", "--model", str(tiny_model_dir)]) == 0
    assert len(converted) == 1


def test_one_command_name_everywhere():
    """`mcp-vision` on PyPI is another project: every text that tells a user what to run names this one's
    command, and it is the only script installed."""
    import re
    import tomllib

    root = Path(__file__).resolve().parent.parent
    assert set(tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]) == {"mcp-vision-internvl"}
    wrong = re.compile(r"mcp-vision (download|convert|--[a-z])")
    texts = [root / "README.md", root / "server.json", *(root / "mcp_vision").rglob("*.py")]
    offenders = [f"{path.relative_to(root)}: {m.group(0)}" for path in texts for m in wrong.finditer(path.read_text())]
    assert offenders == []


def test_an_unreachable_hub_is_named_as_the_network_not_the_model(monkeypatch):
    """MCP_VISION_ALLOW_DOWNLOAD=1 with no network: the error says the hub could not be reached, not that the
    model is not a model. (transformers' own failure is raised here as it raises it, without the minute of
    retries the real hub client spends against a closed port first.)"""
    import transformers
    from huggingface_hub.errors import LocalEntryNotFoundError

    from mcp_vision.backend.pytorch.loading import read_config
    from mcp_vision.errors import ModelUnavailableError

    def offline(*_args, **_kwargs):
        try:
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic "
                                          "has been disabled.")
        except LocalEntryNotFoundError as exc:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
                          "them in the cached files.") from exc

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(ModelUnavailableError) as caught:
        read_config(Settings(model="some/model", allow_download=True))
    assert "could not be reached" in str(caught.value) and "check the network" in str(caught.value)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained",
                        lambda *a, **k: (_ for _ in ()).throw(ValueError("Unrecognized model")))
    with pytest.raises(ModelUnavailableError, match="could not be read as a model"):
        read_config(Settings(model="some/model", allow_download=True))
