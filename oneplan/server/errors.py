"""Rendering any failure as the caller's protocol's error, with the right status and headers."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.responses import Response

from oneplan import refusals
from oneplan.errors import OneplanError
from oneplan.metering.windows import WindowState
from oneplan.protocols.base import Protocol


def error_response(
    protocol: Protocol,
    error: OneplanError,
    extra_headers: dict[str, str] | None = None,
    *,
    states: Iterable[WindowState] | None = None,
    now: float = 0.0,
) -> Response:
    """``states``: the caller's quota windows, sent as headers with a refusal (``now`` dates them)."""
    headers = refusals.headers(error)
    if states is not None:
        headers.update(refusals.quota_headers(states, now, protocol.name))
    headers.update(extra_headers or {})
    return Response(
        orjson.dumps(protocol.error_body(error)),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )
