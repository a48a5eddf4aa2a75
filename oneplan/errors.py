"""One exception tree for everything a request can fail with.

Each error carries the HTTP status and a protocol-neutral *kind*; ``server/errors.py``
renders it as an OpenAI, Anthropic or Responses error body. Nothing else decides statuses;
``refusals.py`` decides what a refusal tells clients besides (retry or not, OpenAI's
``insufficient_quota``, the quota headers).

    OneplanError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error
    │   └── RequestTooLarge           413 request_too_large
    ├── AuthenticationFailed          401 authentication_error
    ├── PermissionDenied              403 permission_error
    │   └── ModelNotInPlan            403 permission_error
    ├── NotFound                      404 not_found_error
    │   └── ModelNotFound             404 not_found_error (code model_not_found)
    ├── Conflict                      409 invalid_request_error (admin API: it exists, or is in use)
    ├── QuotaExceeded                 429 rate_limit_error (+ Retry-After; insufficient_quota
    │                                 when the window frees up later than refusals.RETRY_SOON)
    ├── ConfigError                   (start-up only: one line naming file, key and fix)
    ├── BackendUnavailable            503 overloaded_error (oneplan's own Redis / database)
    ├── DeliveryFailed                (alerts: a channel could not deliver; retried, never to a client)
    └── UpstreamError                 502 upstream_error
        ├── UpstreamTimeout           504 timeout_error
        ├── UpstreamUnavailable       503 overloaded_error
        │   └── CircuitOpen           503, every deployment's circuit is open (+ Retry-After)
        ├── UpstreamRateLimited       429 rate_limit_error (provider's own 429)
        └── UpstreamRejected          the provider's 4xx, passed on with its status
"""

from __future__ import annotations


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """``Retry-After`` in whole seconds, rounded up, never 0; none if unknown."""
    if seconds is None:
        return {}
    return {"retry-after": str(max(1, int(seconds + 0.999)))}


class OneplanError(Exception):
    status = 500
    kind = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def headers(self) -> dict[str, str]:
        return {}



class InternalError(OneplanError):
    """Something in oneplan itself failed while serving a request (logged with its traceback)."""

    def __init__(self, cause: BaseException | None = None) -> None:
        super().__init__("Internal error in oneplan; the operator's log has the details.")
        self.cause = cause

class InvalidRequest(OneplanError):
    status = 400
    kind = "invalid_request_error"


class RequestTooLarge(InvalidRequest):
    status = 413
    kind = "request_too_large"

    @property
    def headers(self) -> dict[str, str]:
        return {"connection": "close"}  # the rest of the body was drained or is not wanted


class AuthenticationFailed(OneplanError):
    status = 401
    kind = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(OneplanError):
    status = 403
    kind = "permission_error"


class ModelNotInPlan(PermissionDenied):
    code = "model_not_in_plan"


class NotFound(OneplanError):
    status = 404
    kind = "not_found_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(OneplanError):
    status = 409
    kind = "invalid_request_error"


class QuotaExceeded(OneplanError):
    status = 429
    kind = "rate_limit_error"
    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: float, window: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.window = window

    @property
    def headers(self) -> dict[str, str]:
        return retry_after_header(self.retry_after)


class ConfigError(OneplanError):
    """A catalog or settings problem. The message is one line: file, key, fix."""


class BackendUnavailable(OneplanError):
    """A store oneplan itself depends on (the shared quota counters, the database) cannot be
    reached, or is being rebuilt. Carries ``Retry-After``: it heals by itself."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, message: str, *, retry_after: float | None = 2.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return retry_after_header(self.retry_after)


class DeliveryFailed(OneplanError):
    """An alert channel could not deliver (``oneplan/alerts/``): retried with back-off, shown in
    ``oneplan alerts status``; never reaches a model request."""


class UpstreamError(OneplanError):
    status = 502
    kind = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.retryable = retryable


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout_error"


class UpstreamUnavailable(UpstreamError):
    status = 503
    kind = "overloaded_error"


class CircuitOpen(UpstreamUnavailable):
    """Every deployment that could serve the request is known to be failing: refuse at once.

    Carries ``Retry-After`` (when the first one will be probed again), like a provider's 503."""

    @property
    def headers(self) -> dict[str, str]:
        return retry_after_header(self.retry_after)


class UpstreamRateLimited(UpstreamError):
    status = 429
    kind = "rate_limit_error"

    @property
    def headers(self) -> dict[str, str]:
        return retry_after_header(self.retry_after)


class UpstreamRejected(UpstreamError):
    """The provider refused the request itself (a 4xx other than 429): not retried."""

    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message, upstream_status=upstream_status, retryable=False)
        # The provider refusing *oneplan's* credentials is the operator's problem, not the
        # caller's: it must not look like the caller's key was bad.
        if upstream_status in (400, 404, 413, 422):
            self.status = upstream_status
            self.kind = {413: "request_too_large", 404: "not_found_error"}.get(
                upstream_status, "invalid_request_error"
            )
