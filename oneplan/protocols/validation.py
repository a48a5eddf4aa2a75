"""Typed validation at the protocol boundary, before any protocol code reads a request.

Each inbound protocol declares the *types* of the fields it reads (``*_schema.py``, TypedDicts
that pydantic validates in place): strict (no coercion: ``"10"`` is not an integer, ``true`` is not a number),
lenient on extras (real clients send fields oneplan has never heard of), and bounded (lists and
names far beyond what a real client sends). What a field *means* (required or not, which values
make sense together) stays with the protocol's parser, which can then trust every type it reads.

Before the types, ``check_shape`` walks the whole body once: JSON nested deeper than
``MAX_DEPTH``, integers no encoder can write back (beyond 64 bits) and non-finite numbers are
refused, wherever they are, extras included (pass-through forwards the body as sent).

Every violation is an ``InvalidRequest`` naming the field in the protocol's own spelling:
``messages[3].role`` for OpenAI, ``messages.3.role`` for Anthropic, and the message says what
was expected: ``messages[3].role: expected one of system, user, assistant, tool, developer``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    with_config,
)

from oneplan.errors import InvalidRequest

MAX_DEPTH = 64  # objects and arrays inside each other; real requests stay well under 20
MAX_ITEMS = 100_000  # messages, input items, content parts of one message
MAX_TOOLS = 4_096
MAX_STOPS = 256
MAX_NAME = 512  # model, tool and function names
MAX_ID = 4_096  # ids the client echoes back (tool call ids, response ids)
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson (and every upstream) can encode

Style = Literal["brackets", "dots"]


STRICT = ConfigDict(extra="ignore", strict=True)

# A request schema is a TypedDict (``@lenient``: declared fields typed strictly, extras ignored,
# every field optional unless ``Required``): validated as it is, no objects built, which keeps
# the check within a small fraction of a request's CPU.
lenient = with_config(STRICT)


class Lenient(BaseModel):
    """The same rules for a payload that is read as an object (the admin API's)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(max_length=MAX_NAME, pattern=_PRINTABLE)]
Id = Annotated[str, StringConstraints(max_length=MAX_ID, pattern=_PRINTABLE)]
Number = float  # strict float accepts JSON integers too, never booleans or strings
JsonObject = dict[str, Any]


def items(kind: Any, limit: int = MAX_ITEMS) -> Any:
    return Annotated[list[kind], Field(max_length=limit)]


def _json_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<string>"
    if isinstance(value, list):
        return "<array>"
    if isinstance(value, dict):
        return "<object>"
    return None


def one_of(expected: str, **branches: Any) -> Any:
    """A union chosen by the value's JSON type (``string=``, ``array=``, ``object=``); any other
    type is refused with ``expected`` (e.g. "a string or an array")."""
    members = tuple(Annotated[kind, Tag(f"<{name}>")] for name, kind in branches.items())
    return Annotated[
        _union(members),
        Discriminator(_json_kind, custom_error_type="oneplan_type", custom_error_message=f"expected {expected}"),
    ]


def tagged(field: str, known: dict[str, Any], other: Any, absent: str | None = None) -> Any:
    """A union of objects chosen by their ``field`` (``type``), with ``other`` for every other
    value (the parser decides what an unknown type means) and ``absent`` naming the member for
    an object without the field. Non-objects are refused."""

    def pick(value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        kind = value.get(field, absent)
        return f"<{kind}>" if isinstance(kind, str) and kind in known else "<other>"

    members = (
        *(Annotated[kind, Tag(f"<{name}>")] for name, kind in known.items()),
        Annotated[other, Tag("<other>")],
    )
    return Annotated[
        _union(members),
        Discriminator(pick, custom_error_type="oneplan_type", custom_error_message="expected an object"),
    ]


def _union(members: Sequence[Any]) -> Any:
    from typing import Union

    return Union[tuple(members)]  # noqa: UP007 - built from a runtime tuple


def validator(model: Any) -> Callable[[Any], None]:
    """``validate(body)`` for a schema (a TypedDict, a model or an annotated type)."""
    adapter = TypeAdapter(model)
    return adapter.validate_python


def validate(check: Callable[[Any], None], body: Any, style: Style) -> None:
    """Shape first (depth, numbers), then types; the first violation as ``InvalidRequest``."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    check_shape(body, style)
    try:
        check(body)
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False, include_input=False)[0], style) from None


def check_shape(body: Any, style: Style) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` and integers that cannot be encoded again
    (orjson reads neither NaN nor infinities, and reads huge integers as floats; bodies built in
    Python may still hold them)."""
    if not _shape_ok(body, 1):
        raise _locate(body, style)


def _shape_ok(value: Any, depth: int) -> bool:
    # The fast walk (every request takes it): no paths, recursion bounded by MAX_DEPTH.
    if depth > MAX_DEPTH:
        return False
    for inner in value.values() if type(value) is dict else value:
        kind = type(inner)
        if kind is dict or kind is list:
            if not _shape_ok(inner, depth + 1):
                return False
        elif kind is int and not INT_MIN <= inner <= INT_MAX:
            return False
        elif kind is float and not math.isfinite(inner):
            return False
    return True


def _locate(body: Any, style: Style) -> InvalidRequest:
    """The error for the first violation ``_shape_ok`` found, with its path."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(body, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            where = path_text(path, style)
            return InvalidRequest(
                f"{where or 'the request body'}: JSON nested deeper than {MAX_DEPTH} levels is not accepted",
                param=where or None,
            )
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, inner in pairs:
            if isinstance(inner, dict | list):
                stack.append((inner, depth + 1, (*path, key)))
            elif not _encodable(inner):
                where = path_text((*path, key), style)
                return InvalidRequest(f"{where}: the number is out of range", param=where)
    return InvalidRequest("the request body: cannot be read")  # unreachable: _shape_ok agreed


def _encodable(value: Any) -> bool:
    if type(value) is int:
        return INT_MIN <= value <= INT_MAX
    if type(value) is float:
        return math.isfinite(value)
    return True


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
MAX_PATH_PARTS = 12


def path_text(loc: Sequence[Any], style: Style) -> str:
    """``("messages", 3, "role")`` as ``messages[3].role`` or ``messages.3.role``; a key that is
    not a plain name is quoted (``metadata["a b"]``), a very deep path is cut short (``...``)."""
    out = ""
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith("<") and p.endswith(">"))]
    for part in parts[:MAX_PATH_PARTS]:  # (the <...> parts are union branches, not fields)
        if isinstance(part, int):
            out += f"[{part}]" if style == "brackets" else f".{part}"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += "[" + json.dumps(part) + "]"
    if len(parts) > MAX_PATH_PARTS:
        out += "..."
    return out.lstrip(".")


_MESSAGES = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "list_type": "expected an array",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "missing": "field required",
    "none_required": "expected null",
}


def reason(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        return "expected one of " + expected.replace("'", "").replace(" or ", ", ")
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items are accepted"
    if kind == "string_pattern_mismatch":
        return "must not contain NUL or other control characters"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters are accepted"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return str(error["msg"]).replace("Input should be", "must be")
    if kind == "oneplan_type":
        return str(error["msg"])
    return str(error["msg"])


def invalid(error: Any, style: Style) -> InvalidRequest:
    path = path_text(error["loc"], style)
    if not path:
        return InvalidRequest(f"the request body: {reason(error)}")
    return InvalidRequest(f"{path}: {reason(error)}", param=path)
