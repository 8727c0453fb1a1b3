"""The garbage collector, kept out of a cycle's way: a cold sync builds about a million objects
that live on, and the collector would walk them all again and again as they pile up."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

LONG_LIVED: Final = 50_000
"""Objects the collector tracks that a cycle may leave behind before they are frozen (see
:func:`collector_paused`)."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile; what a cycle throws away is freed by reference
    counting as before, and the rare reference cycle once the cycle is over. A cycle that leaves
    more than :data:`LONG_LIVED` objects (a start, a big checkout) freezes them, so the collector
    never walks them again; frozen objects are freed as ever once unused."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            if gc.get_count()[0] >= LONG_LIVED:  # tracked objects made, less those freed, meanwhile
                gc.freeze()
            gc.enable()
