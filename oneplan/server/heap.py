"""The garbage collector, set for a server whose requests make almost no reference cycles.

Measured under load (c=32, the benchmark's small JSON request): CPython's default thresholds
ran ~130 young collections a second, and every tenth-of-a-tenth one a full collection that
walked the whole startup heap (the catalog, SQLAlchemy's and pydantic's models, the provider
clients) - a pause of tens of milliseconds each, the p99 of 80 ms. Yet each collection found
only a handful of objects to free.

So once the server has started, ``settle()`` moves everything alive into the permanent
generation (``gc.freeze``: never scanned again) and makes young collections rarer. What
requests allocate is still collected - reference counting frees nearly all of it at once, and
the collector still runs for the rest.
"""

from __future__ import annotations

import gc

# Allocations (net of frees) between young collections; CPython's default is 700.
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
