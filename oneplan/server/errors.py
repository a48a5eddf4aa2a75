"""Rendering any failure as the caller's protocol's error, with the right status and headers.

``protocol_for`` says which protocol a path belongs to (the registry's ``prefixes``), so that
what no endpoint handled (Starlette's own 404 and 405, an unexpected exception) is still answered
in the shape the caller's SDK reads: a ``GET /v1/messages`` is an Anthropic error, an unknown
``/v1/...`` path an OpenAI one.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from starlette.responses import Response

from oneplan import refusals
from oneplan.errors import InternalError, OneplanError
from oneplan.metering.windows import WindowState
from oneplan.protocols.base import Protocol
from oneplan.protocols.registry import for_path

# Which protocol a path speaks (its failures are answered in that protocol's error body).
protocol_for = for_path


def error_response(
    protocol: Protocol,
    error: OneplanError,
    extra_headers: dict[str, str] | None = None,
    *,
    states: Sequence[WindowState] | None = None,
    now: float = 0.0,
) -> Response:
    """``states``: the caller's quota windows, sent as headers with a refusal (``now`` dates them)."""
    headers = refusals.headers(error)
    if states is not None:
        headers.update(refusals.quota_headers(states, now, protocol))
    headers.update(extra_headers or {})
    return Response(
        orjson.dumps(protocol.error_body(error)),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


def internal_error(where: Protocol | str, cause: BaseException | None = None, *, close: bool = False) -> Response:
    """The 500 for an exception nothing expected, in the shape of the protocol ``where`` is (or
    the protocol a path speaks); ``close`` when the connection will not be reused (it says so,
    instead of just dropping)."""
    protocol = protocol_for(where) if isinstance(where, str) else where
    return error_response(protocol, InternalError(cause), {"connection": "close"} if close else None)
