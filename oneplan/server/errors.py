"""Rendering any failure as the caller's protocol's error, with the right status and headers."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from oneplan.errors import OneplanError
from oneplan.protocols.base import Protocol


def error_response(protocol: Protocol, error: OneplanError, extra_headers: dict[str, str] | None = None) -> Response:
    headers = {**error.headers, **(extra_headers or {})}
    return Response(
        orjson.dumps(protocol.error_body(error)),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )
