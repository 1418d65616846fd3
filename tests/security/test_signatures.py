"""Forged, tampered, stale and replayed requests on every inbound endpoint (the table
in tests/security/endpoints.py): each forgery is a 4xx that stores nothing; a
replay of a request that was accepted changes nothing the first one did not."""

from __future__ import annotations

import pytest

from bot.appkeys import CTX, DISPATCH
from tests.security.endpoints import Endpoint, Req, endpoints
from tests.support import Client, FakeClock, table_counts

NAMES = [e.name for e in endpoints(FakeClock())]


def endpoint(clock: FakeClock, name: str) -> Endpoint:
    return next(e for e in endpoints(clock) if e.name == name)


async def send(client: Client, req: Req) -> int:
    resp = await client.request(
        req.method, req.path, data=req.body or None, params=req.params, headers=req.headers
    )
    await resp.read()
    await client.app[DISPATCH].idle()
    return resp.status


@pytest.mark.usefixtures("errors")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("attack", ["forged", "tampered", "stale"])
async def test_forgeries_are_refused_and_store_nothing(
    everything: Client, clock: FakeClock, name: str, attack: str
) -> None:
    build = getattr(endpoint(clock, name), attack)
    if build is None:  # no such attack on this protocol: see the endpoint's note
        assert endpoint(clock, name).note
        return
    before = await table_counts(everything.app[CTX].db)
    status = await send(everything, build())
    assert status in (400, 401, 403), status
    assert await table_counts(everything.app[CTX].db) == before


@pytest.mark.usefixtures("errors")
@pytest.mark.parametrize("name", NAMES)
async def test_a_replay_changes_nothing_the_original_did_not(
    everything: Client, clock: FakeClock, name: str
) -> None:
    request = endpoint(clock, name).good()
    assert await send(everything, request) in (200, 202)
    after_first = await table_counts(everything.app[CTX].db)
    assert await send(everything, request) < 500
    assert await table_counts(everything.app[CTX].db) == after_first
