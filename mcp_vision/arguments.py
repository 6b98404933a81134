"""One sentence, in the server's own style, for a tool argument its schema refuses (instead of pydantic's
multi-line report with a link), using the limits the schema states."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _range(schema: dict[str, Any]) -> tuple[str | None, str | None]:
    """(lowest, highest) of an argument's schema in words, looking inside `anyOf` (optional arguments)."""
    for option in [schema, *schema.get("anyOf", [])]:
        low = f"{option['minimum']:g}" if "minimum" in option else (
            f"more than {option['exclusiveMinimum']:g}" if "exclusiveMinimum" in option else None
        )
        high = f"{option['maximum']:g}" if "maximum" in option else None
        if low is not None or high is not None:
            return low, high
    return None, None


def argument_error(tool: str, error: ValidationError, parameters: dict[str, Any]) -> str:
    """The first problem of `error` (arguments for `tool`, whose input schema is `parameters`) as one sentence."""
    problem = error.errors(include_url=False)[0]
    loc = [str(part) for part in problem.get("loc", ())]
    name = loc[0] if loc else "the arguments"
    value = problem.get("input")
    kind = problem.get("type", "")
    ctx = problem.get("ctx") or {}
    schema = parameters.get("properties", {}).get(name, {})
    if kind == "missing":
        return f"{name} is missing: {tool} needs it."
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        low, high = _range(schema)
        if low is not None and high is not None:
            return f"{name}={_shown(value)} is out of range: use {low} to {high}."
        bound = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
        relation = {"greater_than_equal": "at least", "greater_than": "more than",
                    "less_than_equal": "at most", "less_than": "less than"}[kind]
        return f"{name}={_shown(value)} is out of range: use a value {relation} {bound:g}."
    if kind in {"too_short", "too_long"}:
        low, high = schema.get("minItems"), schema.get("maxItems")
        count = len(value) if isinstance(value, list | tuple) else 0
        span = f"{low} to {high}" if low is not None and high is not None else f"{low or 0} or more"
        return f"{name} has {count} {'item' if count == 1 else 'items'}: {tool} takes {span}."
    if kind == "string_too_short":
        return f"{name} is empty: pass a value."
    if kind == "string_too_long":
        return f"{name} is too long: at most {ctx.get('max_length')} characters."
    if kind == "literal_error":
        return f"{name}={_shown(value)} is not one of: {ctx.get('expected', '').replace(' or ', ', ')}."
    if kind.startswith(("int_", "float_", "bool_", "string_", "list_")):
        expected = kind.split("_")[0].replace("int", "an integer").replace("float", "a number").replace(
            "bool", "true or false").replace("string", "a string").replace("list", "a list")
        return f"{name}={_shown(value)} is not valid: pass {expected}."
    message = str(problem.get("msg", "is not valid")).rstrip(".")
    return f"{name}={_shown(value)}: {message[0].lower() + message[1:] if message else 'is not valid'}."


__all__ = ["argument_error"]
