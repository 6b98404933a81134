"""The package's layout holds: each tool's path is service -> (ocr | inputs | sessions | model_prompts) -> backend,
with no import back up, no circle, and the forkserver preloading modules that exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mcp_vision

PACKAGE = Path(mcp_vision.__file__).parent

# What each layer may import from the package (besides itself and the modules below every layer).
FOUNDATION = {"mcp_vision.errors", "mcp_vision.limits", "mcp_vision.settings"}
ALLOWED = {
    "mcp_vision.inputs": FOUNDATION,
    # grounding.py (pure standard library, FOUNDATION only) names a served model's box syntax for the remote engine;
    # page_text.py (likewise) tells a runaway repetition loop in a page's decode, which the engines stop.
    "mcp_vision.backend": FOUNDATION | {"mcp_vision.grounding", "mcp_vision.page_text"},
    "mcp_vision.sessions": FOUNDATION | {"mcp_vision.backend"},
    "mcp_vision.results": FOUNDATION,
    "mcp_vision.worker": FOUNDATION | {"mcp_vision.backend"},
    "mcp_vision.budget": FOUNDATION | {"mcp_vision.backend"},
    "mcp_vision.grounding": FOUNDATION,
    "mcp_vision.page_text": FOUNDATION,
    "mcp_vision.previews": FOUNDATION,
    "mcp_vision.viewer": FOUNDATION,
    "mcp_vision.metrics": FOUNDATION,  # what the work tells; prometheus-client only where HTTP serves it
    "mcp_vision.model_prompts": FOUNDATION | {"mcp_vision.backend", "mcp_vision.inputs"},
    "mcp_vision.ocr": FOUNDATION
    | {"mcp_vision.backend", "mcp_vision.budget", "mcp_vision.inputs", "mcp_vision.metrics", "mcp_vision.model_prompts",
       "mcp_vision.previews", "mcp_vision.results", "mcp_vision.worker", "mcp_vision.page_text"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The package modules `path` imports, at any depth of the file (lazy imports count too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("mcp_vision"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("mcp_vision"))
    return {module for module in found if _exists(module)}


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:]) if "." in module else Path()
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _layer(module: str) -> str:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return module


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_no_module_imports_a_layer_above_it(path):
    name = _module_name(path)
    layer = _layer(name)
    if layer not in ALLOWED:
        return  # the top: service, server, cli, prompt_menu
    allowed = ALLOWED[layer] | {layer}
    wrong = sorted(m for m in _imports(path) if m != "mcp_vision" and _layer(m) not in allowed)
    assert not wrong, f"{name} imports {wrong}: only {sorted(allowed)} are below it"


def test_the_protocol_layer_never_touches_torch_and_the_backend_never_touches_mcp():
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
        name = _module_name(path)
        if not name.startswith("mcp_vision.backend"):
            assert not names & {"torch", "transformers", "bitsandbytes", "openvino"}, name
        if name.startswith(("mcp_vision.backend", "mcp_vision.inputs")) or name in ALLOWED:
            assert not names & {"mcp", "mcp_types"}, name


def test_no_import_circle_between_modules():
    graph = {_module_name(p): _imports(p) - {"mcp_vision"} for p in MODULES}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    circles = sorted(
        (a, b) for a, deps in graph.items() for b in deps
        if a < b and not a.startswith(b + ".") and not b.startswith(a + ".") and reaches(b, a, set())
    )
    assert not circles, f"import circles: {circles}"


def test_every_module_the_forkserver_preloads_exists():
    """A renamed module would make every decoder process import it again (or fail): each name must import."""
    from mcp_vision.inputs.sandbox import _PRELOAD

    for name in _PRELOAD:
        importlib.import_module(name)
