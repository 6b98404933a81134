"""mcp-vision: an MCP server that gives AI agents local eyes (a local InternVL, Qwen2-VL or Qwen2.5-VL model).

Importing this package is cheap: no torch, no transformers, no model.
"""

__version__ = "0.1.0"


def main(argv: list[str] | None = None) -> int:
    """The `mcp-vision` command line."""
    from .cli import run

    return run(argv)


__all__ = ["main", "__version__"]
