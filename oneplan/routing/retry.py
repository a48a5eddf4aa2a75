"""When to try again, and how long to wait first.

Rules (DESIGN: "retries on connect errors, 429 and 5xx before the first byte reached the client"):

* Only an ``UpstreamError`` with ``retryable`` set is retried; a provider refusing the request
  itself (400, 404, 413, 422) is passed on at once - another try would be refused the same way.
* With another deployment left to try, move on at once: no back-off, the next one is healthy as
  far as we know.
* When the failing deployment is the last one left, retry it up to ``retries`` times after a
  jittered exponential back-off, or after the provider's ``Retry-After`` when that is longer.
* Never sleep past the request's deadline. A wait that would cross it means failing now with
  the last error - for a 429 that is the provider's own 429 and its ``Retry-After``, so the
  caller's SDK can wait the right amount itself.

The deadline bounds *starting* attempts and sleeping between them, not an attempt already under
way: a non-streamed answer may legitimately take minutes, and each attempt is already bounded by
its provider's connect / first-token / idle timeouts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from oneplan.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 2  # extra attempts on the last deployment left
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    backoff_max: float = 8.0
    deadline: float = 60.0  # seconds from the request's arrival to its last attempt's start

    def delay(self, retry: int, error: UpstreamError, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        "Equal jitter": half the exponential step plus a random half, so that retries from many
        callers spread out but none retries immediately into the same overload."""
        step = min(self.backoff_max, self.backoff * float(2**retry))
        wait = step / 2 + rng.random() * step / 2
        if error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait
