"""The garbage collector, set for a server whose requests make almost no reference cycles.

Measured under load (c=32, the benchmark's small JSON request, single runs): with CPython's
defaults the p99 was 80 ms; with the startup heap frozen it was 31 ms, and with young
collections also made rarer, 26 ms. Even frozen, at the default thresholds the collector ran
~130 young collections a second (1,068 young, 97 middle and 8 full in one run, 0.37 s in all)
and freed 40 objects in total: requests make almost no reference cycles, so its work was
walking live objects.

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
