"""Typed validation of the project's YAML files (training configs, task specs, gate rules, leaderboards): one schema
library (pydantic v2, strict: no 'yes' for true, no 2.5 for an integer) and one way to report a problem, in one line:

    WHERE: FIELD: what was expected, got VALUE

`validate(schema, data, where, error)` checks `data` against a pydantic model (or any type pydantic knows) and
raises `error` (each caller keeps its own error class, which its command line maps to one line and exit 2).
"""
from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

STRICT = ConfigDict(extra="forbid", strict=True)
# PyYAML reads 3e-4 (no dot) as a string: a number written that way is still a number
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _float_text(value: Any) -> Any:
    return float(value) if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()) else value


Number = Annotated[float, BeforeValidator(_float_text)]
PositiveNumber = Annotated[float, BeforeValidator(_float_text), Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


class Schema(BaseModel):
    """Base of the schemas: unknown keys and loose types are refused."""

    model_config = STRICT


_EXPECTED = {
    "int_type": "expected an integer", "int_parsing": "expected an integer", "int_from_float": "expected an integer",
    "float_type": "expected a number", "float_parsing": "expected a number", "finite_number": "expected a finite number",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "string_type": "expected a string", "list_type": "expected a list", "tuple_type": "expected a list",
    "dict_type": "expected a mapping", "model_type": "expected a mapping", "model_attributes_type": "expected a mapping",
    "dataclass_type": "expected a mapping", "missing": "required", "missing_argument": "required",
    "none_required": "expected nothing (null)", "string_too_short": "expected a non-empty string",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


def read_mapping(path: Path, error: type[Exception] = ValueError, expected: str = "a mapping") -> dict:
    """The YAML mapping in the file `path`; malformed YAML or another top-level value is one `error` naming the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise error(f"{path}: malformed YAML: {e}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expected}, got {type(data).__name__}")
    return data


def validate(schema: Any, data: Any, where: str, error: type[Exception] = ValueError, section: str = "") -> Any:
    """`data` as an instance of `schema`, or `error` with one line naming `where`, each bad field (under `section`,
    e.g. "params") and what it expected."""
    try:
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return schema.model_validate(data)
        return TypeAdapter(schema).validate_python(data)
    except ValidationError as e:
        raise error(describe(e, where, schema, section)) from None


def describe(e: ValidationError, where: str, schema: Any = None, section: str = "") -> str:
    """One line for every problem pydantic found: `WHERE: FIELD: expected ..., got VALUE`."""
    problems = []
    for err in e.errors(include_url=False):
        loc = ".".join(filter(None, [section, _loc(err["loc"])]))
        kind = err["type"]
        if kind in _UNKNOWN:
            known = _fields(schema, err["loc"][:-1])
            problems.append(f"{loc}: unknown key" + (f"; expected one of {', '.join(known)}" if known else ""))
            continue
        if kind in ("missing", "missing_argument"):
            problems.append(f"{loc}: required")
            continue
        ctx = err.get("ctx") or {}
        if kind in _BOUNDS:
            bound = next(iter(ctx.values()))
            expected = f"expected a number {_BOUNDS[kind]} {bound}"
        elif kind == "string_pattern_mismatch":
            expected = f"expected text matching {ctx.get('pattern')}"
        elif kind == "literal_error":
            expected = f"expected one of {ctx.get('expected', '')}"
        elif kind in ("value_error", "assertion_error"):
            expected = str(ctx.get("error", err["msg"])).removeprefix("Value error, ")
        else:
            expected = _EXPECTED.get(kind, err["msg"][:1].lower() + err["msg"][1:])
        problems.append(f"{loc}: {expected}, got {_short(err.get('input'))}" if loc else
                        f"{expected}, got {_short(err.get('input'))}")
    return f"{where}: " + "; ".join(problems)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after", "function-before") and not str(part).startswith(("function-", "union[")):
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fields(schema: Any, loc: tuple) -> list[str]:
    """The field names of the model found at `loc` inside `schema` (best effort; [] when unknown)."""
    node = schema
    for part in loc:
        node = _unwrap(node)
        if isinstance(part, int):
            args = typing.get_args(node)
            node = args[0] if args else None
        elif isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = node.model_fields[part].annotation
        elif hasattr(node, "__pydantic_fields__") and part in node.__pydantic_fields__:
            node = node.__pydantic_fields__[part].annotation
        else:
            return []
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return list(getattr(node, "__pydantic_fields__", {}) or [])


def _unwrap(node: Any) -> Any:
    """Annotated[X, ...] -> X; X | None -> X."""
    while True:
        origin = typing.get_origin(node)
        if origin is Annotated:
            node = typing.get_args(node)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(node) if a is not type(None)]
            if len(args) != 1:
                return node
            node = args[0]
        else:
            return node
