"""`serve` freezes what start-up made out of the cyclic collector's scans and lets the
young generation grow (bot/heap.py); garbage made afterwards, cycles included, is
still collected."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from bot.app import create_app
from bot.heap import YOUNG, freeze_after_start
from storage.db import Database
from tests.support import FakeClock, MakeClient, make_settings


class _Node:
    partner: _Node | None = None


async def test_a_started_app_freezes_its_heap_and_garbage_is_still_collected(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    app = create_app(make_settings(tmp_path, db.url), clock=FakeClock(), background=False)
    freeze_after_start(app)
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    try:
        client = await aiohttp_client(app)
        assert gc.get_freeze_count() > 10_000  # modules, mappers, settings, templates
        assert gc.get_threshold() == (YOUNG, *thresholds[1:])
        cycle = _Node()
        cycle.partner = _Node()
        cycle.partner.partner = cycle
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None
        assert (await client.get("/healthz")).status == 200
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
