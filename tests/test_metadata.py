"""server.json is valid for the registry and in step with the package; prompts and the viewer ship in the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import mcp_vision
from mcp_vision.settings import ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "schemas" / "server.schema.json"


def _server_json() -> dict:
    return json.loads((ROOT / "server.json").read_text())


def _schema() -> dict:
    if SCHEMA.exists():
        return json.loads(SCHEMA.read_text())
    return json.loads((ROOT / "tests" / "data" / "server.schema.json").read_text())


def test_server_json_is_valid_against_the_registry_schema():
    from jsonschema import Draft7Validator

    validator = Draft7Validator(_schema())
    errors = sorted(validator.iter_errors(_server_json()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_versions_agree():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server = _server_json()
    assert pyproject["version"] == server["version"] == mcp_vision.__version__
    package = server["packages"][0]
    assert package["version"] == pyproject["version"]
    assert package["identifier"] == pyproject["name"]
    assert package["registryType"] == "pypi" and package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}


def test_every_setting_is_in_server_json_and_readme():
    names = {v["name"] for v in _server_json()["packages"][0]["environmentVariables"]}
    assert names == set(ENVIRONMENT.values())
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in ENVIRONMENT.values() if n not in readme]
    assert not missing, f"README does not document {missing}"
    assert f"<!-- mcp-name: {_server_json()['name']} -->" in readme


@pytest.mark.slow
def test_wheel_ships_the_prompts_and_the_viewer(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0 and "hatchling" in proc.stderr:
        pytest.skip("hatchling is not installed for a no-isolation build")
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for prompt in (ROOT / "prompts").glob("*.md"):
        assert f"mcp_vision/prompts/{prompt.name}" in names
    assert "mcp_vision/viewer/viewer.html" in names


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert f"\n{command}\n" in readme
