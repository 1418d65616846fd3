"""POST /webhooks/generic refusals: bad signatures, replays, missing headers, malformed
or mistyped bodies, oversized bodies, an unconfigured channel. Each gets a 4xx (or
503) with a JSON error naming the problem, and the database is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from storage.db import Database
from tests.fakes.oms import FakeOms
from tests.support import (
    Client,
    FakeClock,
    MakeClient,
    make_settings,
    post_generic,
    return_body,
    sign_generic,
    table_counts,
)


def bad_requests(now: int) -> list[tuple[str, bytes, dict[str, str], int, str]]:
    """(what, raw body, headers, expected status, a word the error must contain)."""
    good = json.dumps(return_body()).encode()

    def signed(body: dict[str, Any] | bytes) -> tuple[bytes, dict[str, str]]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return raw, sign_generic("test-secret", raw, now)

    def case(
        what: str, body: dict[str, Any] | bytes, status: int, word: str
    ) -> tuple[str, bytes, dict[str, str], int, str]:
        return (what, *signed(body), status, word)

    headers = sign_generic("test-secret", good, now)
    item = return_body()["items"][0]
    return [
        ("bad signature", good, sign_generic("wrong-secret", good, now), 401, "Signature"),
        ("tampered body", good.replace(b"29.90", b"99.90"), headers, 401, "Signature"),
        ("stale timestamp", good, sign_generic("test-secret", good, now - 301), 401, "window"),
        ("future timestamp", good, sign_generic("test-secret", good, now + 301), 401, "window"),
        (
            "missing timestamp",
            good,
            {"X-Returnhub-Signature": headers["X-Returnhub-Signature"]},
            401,
            "Timestamp",
        ),
        ("missing signature", good, {"X-Returnhub-Timestamp": str(now)}, 401, "Signature"),
        ("no headers", good, {}, 401, "missing"),
        (
            "timestamp not a number",
            good,
            {**headers, "X-Returnhub-Timestamp": "soon"},
            401,
            "unix seconds",
        ),
        case("malformed JSON", b'{"event_id": "x", ', 400, "JSON"),
        case("not UTF-8", b'{"event_id": "\xff"}', 400, "UTF-8"),
        case("not an object", b"[1, 2]", 400, "object"),
        case("duplicate key", b'{"amount": "1.00", "amount": "2.00"}', 400, "duplicate"),
        case("NaN", json.dumps(return_body(amount=float("nan"))).encode(), 400, "NaN"),
        case("amount as a float", return_body(amount=29.9), 422, "amount"),
        case("amount as an int", return_body(amount=30), 422, "amount"),
        case("amount with 3 decimals", return_body(amount="29.901"), 422, "amount"),
        case("negative amount", return_body(amount="-1.00"), 422, "amount"),
        case("qty 0", return_body(items=[{**item, "qty": 0}]), 422, "items[0].qty"),
        case("qty as a string", return_body(items=[{**item, "qty": "1"}]), 422, "items[0].qty"),
        case(
            "unit_price as a float",
            return_body(items=[{**item, "unit_price": 29.9}]),
            422,
            "items[0].unit_price",
        ),
        case("no items", return_body(items=[]), 422, "items"),
        case("unknown kind", return_body(kind="refund"), 422, "kind"),
        case("unknown status", return_body(status="shipped"), 422, "status"),
        case("missing external_id", return_body(drop=["external_id"]), 422, "external_id"),
        case(
            "numeric external_id",
            return_body(external_id=12345678901234567890),
            422,
            "external_id",
        ),
        case("missing event_id", return_body(drop=["event_id"]), 422, "event_id"),
        case("currency USD", return_body(currency="USD"), 422, "currency"),
        case(
            "shipped without waybill", return_body(status="buyer_shipped"), 422, "return_waybill"
        ),
        case(
            "occurred_at without offset",
            return_body(occurred_at="2026-11-21T10:00:00"),
            422,
            "occurred_at",
        ),
        case(
            "evidence not a URL", return_body(evidence=["javascript:alert(1)"]), 422, "evidence[0]"
        ),
        case("buyer not an object", return_body(buyer="buyer-8812"), 422, "buyer"),
        case("unknown field", return_body(reasoncode="x"), 422, "reasoncode"),
        case("version as a float", return_body(version=1.5), 422, "version"),
        # One order for versions (issue 6 E): integers only, never compared as text
        case("version with letters", return_body(version="10a"), 422, "version"),
        case("version with a sign", return_body(version="-1"), 422, "version"),
        case("version with spaces", return_body(version=" 1"), 422, "version"),
        case(
            "version as a timestamp", return_body(version="2026-11-21T10:00:00Z"), 422, "version"
        ),
        case("version too long", return_body(version="9" * 33), 422, "version"),
        # The amount against the items (issue 6 D)
        case("amount above the items", return_body(amount="29.91"), 422, "items' total"),
        case("refund of 0", return_body(amount="0.00"), 422, "greater than 0"),
        case(
            "return_refund of 0",
            return_body(kind="return_refund", amount="0"),
            422,
            "only an exchange",
        ),
        # int("²") raises although "²".isdigit(): a later update could never be compared
        case("version with a non-ASCII digit", return_body(version="²"), 422, "version"),
        case(
            "occurred_at before year 1 in UTC",
            return_body(occurred_at="0001-01-01T00:00:00+08:00"),
            422,
            "occurred_at",
        ),
        case(
            "occurred_at past year 9999 in UTC",
            return_body(occurred_at="9999-12-31T23:59:59-08:00"),
            422,
            "occurred_at",
        ),
        case("deeply nested JSON", b"[" * 100_000, 400, "JSON"),
        case("integer too long to parse", b'{"qty": ' + b"9" * 5000 + b"}", 400, "JSON"),
        case("NUL in a text", return_body(reason_text="a\u0000b"), 422, "reason_text"),
        case(
            "lone surrogate", json.dumps(return_body(order_id="\ud800")).encode(), 422, "order_id"
        ),
        case("oversized body", return_body(reason_text="长" * 400_000), 413, "larger"),
        case(
            "exchange_shipped without its waybill",
            return_body(kind="exchange", status="exchange_shipped"),
            422,
            "exchange_waybill",
        ),
        case(
            "exchange_shipped of a refund",
            return_body(status="exchange_shipped", exchange_waybill="SF1"),
            422,
            "kind exchange",
        ),
    ]


BAD = {case[0]: case for case in bad_requests(FakeClock().timestamp())}


@pytest.mark.parametrize("what", list(BAD))
async def test_bad_requests_get_a_json_error_and_store_nothing(
    client: Client, clock: FakeClock, oms: FakeOms, what: str
) -> None:
    db = client.app[CTX].db
    before = await table_counts(db)
    _, raw, headers, expected, word = BAD[what]
    resp = await client.post("/webhooks/generic", data=raw, headers=headers)
    assert resp.status == expected, await resp.text()
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert word in error, error
    assert await table_counts(db) == before
    await client.app[WORKER].drain()
    assert oms.deliveries == []


async def test_an_oversized_chunked_body_is_cut_off(client: Client, clock: FakeClock) -> None:
    """No Content-Length to trust: the limit applies while reading."""
    before = await table_counts(client.app[CTX].db)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 32 * 1024

    headers = sign_generic("test-secret", b"irrelevant", clock.timestamp())
    resp = await client.post("/webhooks/generic", data=chunks(), headers=headers)
    assert resp.status == 413 and "larger" in (await resp.json())["error"]
    assert await table_counts(client.app[CTX].db) == before


async def test_unconfigured_channel_answers_503(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    settings = make_settings(tmp_path, db.url, generic_secret="")
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    before = await table_counts(client.app[CTX].db)
    status, answer = await post_generic(client, return_body(), clock, secret="")
    assert (status, answer) == (503, {"error": "generic channel not configured"})
    assert await table_counts(client.app[CTX].db) == before
