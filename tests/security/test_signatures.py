"""Forged, tampered, stale and replayed requests on every inbound endpoint (the table
in tests/security/endpoints.py): each forgery is a 4xx that stores nothing; a
replay of a request that was accepted changes nothing the first one did not."""

from __future__ import annotations

import pytest

from bot.appkeys import CTX, DISPATCH
from tests.security.endpoints import Req, endpoints
from tests.support import Client, FakeClock, table_counts


async def send(client: Client, req: Req) -> int:
    resp = await client.request(
        req.method, req.path, data=req.body or None, params=req.params, headers=req.headers
    )
    await resp.read()
    await client.app[DISPATCH].idle()
    return resp.status


@pytest.mark.usefixtures("errors")
async def test_forgeries_are_refused_and_store_nothing(
    everything: Client, clock: FakeClock
) -> None:
    before = await table_counts(everything.app[CTX].db)
    tried = 0
    for endpoint in endpoints(clock):
        for attack in ("forged", "tampered", "stale"):
            build = getattr(endpoint, attack)
            if build is None:  # no such attack on this protocol: the note says why
                assert endpoint.note, (endpoint.name, attack)
                continue
            status = await send(everything, build())
            assert status in (400, 401, 403), (endpoint.name, attack, status)
            assert await table_counts(everything.app[CTX].db) == before, (endpoint.name, attack)
            tried += 1
    assert tried >= 20


@pytest.mark.usefixtures("errors")
async def test_a_replay_changes_nothing_the_original_did_not(
    everything: Client, clock: FakeClock
) -> None:
    for endpoint in endpoints(clock):
        request = endpoint.good()
        assert await send(everything, request) in (200, 202), endpoint.name
        after_first = await table_counts(everything.app[CTX].db)
        assert await send(everything, request) < 500, endpoint.name
        assert await table_counts(everything.app[CTX].db) == after_first, endpoint.name
