"""A serving process's heap: what start-up made is kept out of the collector's scans.

CPython's cyclic collector walks every tracked object in a full (oldest-generation)
collection. A serving process holds some hundreds of thousands of long-lived ones
(modules, SQLAlchemy's mappers and compiled statements, templates, settings) that
never become garbage, and each intake batch allocates enough ORM objects and dicts
to trigger full collections regularly: in-process, on a batch of 200 new cases,
those cost 0.15–0.22 ms of CPU per case, a third of the batch's cost.

`freeze_after_start` collects once when the app has started, then `gc.freeze()`s
what is left: the collector then scans only what was allocated since. Garbage
still goes, cycles included; only objects alive at start-up are never scanned
again. It also lets the youngest generation grow to YOUNG objects before a
collection instead of CPython's 700: a batch of 200 new cases keeps some tens of
thousands of objects alive until it commits (model objects, rows, dicts), all
freed by reference counting when it ends, and at 700 the collector ran 25 times
a batch, scanning and promoting them to find almost nothing (0.08–0.12 ms per
case on a loaded machine; 0.01–0.02 at YOUNG). A collection of the young
generation then scans at most about YOUNG objects, a millisecond or two.
Only `serve` (one process or each worker) does this, not tests that build many
apps in one process.
"""

from __future__ import annotations

import gc
import logging

from aiohttp import web

from bot.app import STARTED

log = logging.getLogger(__name__)
YOUNG = 20_000  # allocations between collections of the youngest generation


async def _freeze(_app: web.Application) -> None:
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, oldest)
    log.debug("heap: %d start-up objects frozen out of collection", gc.get_freeze_count())


def freeze_after_start(app: web.Application) -> None:
    """Freeze the heap and raise the young generation's threshold once `app` has
    started (its last start-up hook)."""
    app[STARTED].append(_freeze)
