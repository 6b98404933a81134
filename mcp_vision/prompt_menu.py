"""The prompt menu (MCP prompts): the `kind: mcp` prompt files, listed by `prompts/list` for people to pick.

Each renders to one user message that tells the agent which tool to call with which arguments.
Placeholders `{name}` take the argument values in one pass; a line naming an optional argument that
was not given is left out, so a prompt reads naturally with or without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.prompts.base import PromptArgument, UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from .model_prompts import PLACEHOLDER, PromptFile, PromptLibrary



def render(prompt: PromptFile, values: Mapping[str, str]) -> str:
    """The prompt's text with `values` filled in; lines naming a declared argument without a value are dropped."""
    declared = {argument.name for argument in prompt.arguments}
    given = {name: value for name, value in values.items() if value.strip()}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return given[name] if name in given else match.group(0)

    lines = []
    for line in prompt.text.splitlines():
        named = set(PLACEHOLDER.findall(line)) & declared
        if named - given.keys():
            continue
        lines.append(PLACEHOLDER.sub(fill, line))
    return "\n".join(lines).strip() + "\n"


def check_arguments(prompt: PromptFile, values: Mapping[str, Any] | None) -> dict[str, str]:
    """The arguments as strings, or an invalid-params error naming what is missing or unknown."""
    values = dict(values or {})
    declared = {argument.name: argument for argument in prompt.arguments}
    unknown = sorted(set(values) - declared.keys())
    if unknown:
        raise MCPError(
            INVALID_PARAMS,
            f"Prompt {prompt.name!r} has no argument {', '.join(map(repr, unknown))}; "
            f"its arguments are {', '.join(map(repr, declared)) or 'none'}.",
        )
    missing = [
        argument
        for argument in prompt.arguments
        if argument.required and not str(values.get(argument.name) or "").strip()
    ]
    if missing:
        wanted = "; ".join(f"{a.name!r} ({a.description})" if a.description else repr(a.name) for a in missing)
        raise MCPError(INVALID_PARAMS, f"Prompt {prompt.name!r} needs a value for {wanted}.")
    return {name: "" if value is None else str(value) for name, value in values.items()}


class FilePrompt(Prompt):
    """A prompt built from a file; missing or unknown arguments are the client's error (-32602).

    Checked before the SDK's own check, whose plain ValueError reaches a 2026-07-28 client only as
    "Internal server error".
    """

    source: PromptFile = Field(exclude=True)

    async def render(self, arguments: dict[str, Any] | None, context: Any) -> Any:
        return await super().render(check_arguments(self.source, arguments), context)


def to_mcp_prompt(source: PromptFile) -> FilePrompt:
    async def fn(**values: str) -> list[UserMessage]:
        return [UserMessage(render(source, values))]

    return FilePrompt(
        source=source,
        name=source.name,
        title=source.title,
        description=source.description,
        arguments=[PromptArgument(name=a.name, description=a.description or None, required=a.required) for a in source.arguments],
        fn=fn,
    )


def register_prompts(mcp: MCPServer, library: PromptLibrary) -> None:
    """Add every `kind: mcp` prompt of the library to the server."""
    for source in library.mcp_prompts():
        mcp.add_prompt(to_mcp_prompt(source))


__all__ = ["register_prompts", "render", "check_arguments", "FilePrompt", "to_mcp_prompt"]
