"""`POST /console/login` is open to anyone: whatever arrives, the answer is a 4xx (or
the redirect of a good code), never a 500 and never a traceback in the log.

The named cases are the ones that were 500s (issue 6, H); the generated ones are a
few hundred bodies and content types drawn from a seeded generator, so a failure
is reproducible.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from bot.app import create_app
from bot.appkeys import CTX
from bot.settings import Settings
from storage.db import Database
from tests.support import Client, MakeClient, make_settings, table_counts

LOGIN = "/console/login"
NAMED: list[tuple[str, bytes]] = [
    ("multipart/form-data", b"--x\r\ncontent-disposition: form-data; name=code\r\n\r\n1\r\n--x--"),
    ("multipart/form-data; boundary=x", b"\x00garbage\xff\r\n--y"),
    ("multipart/form-data; boundary=", b"--\r\n"),
    ("application/x-www-form-urlencoded; charset=klingon", b"code=1"),
    ("application/x-www-form-urlencoded; charset=utf-16", "code=1".encode("utf-16")),
    ("application/x-www-form-urlencoded", b"code=\xff\xfe"),
    ("application/x-www-form-urlencoded", b"code=%ff%fe"),
    ("application/x-www-form-urlencoded", b"code=%ED%A0%80"),  # an encoded lone surrogate
    ("application/x-www-form-urlencoded", b"&".join([b"a=1"] * 50)),
    ("application/x-www-form-urlencoded", b"code=" + b"A" * 10_000),
    ("application/x-www-form-urlencoded", b"code=%00"),
    ("application/json", b'{"code": "1"}'),
    ("text/plain", b"code=1"),
    ("", b"code=1"),
    (";;;", b"code=1"),
    ("application/x-www-form-urlencoded; charset", b"code=1"),
    ('application/x-www-form-urlencoded; charset="utf-8', b"code=1"),
]
TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data",
    "multipart/form-data; boundary=----x",
    "multipart/mixed; boundary=",
    "text/html; charset=utf-8",
    "application/octet-stream",
    "*/*",
    "x" * 300,
    "application/x-www-form-urlencoded; charset=%ff",
]
PIECES = [b"code=", b"%", b"%f", b"%zz", b"&", b";", b"=", b"+", b"\xff", b"\x00", b"\r\n", b"--"]


def generated(seed: int, count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:
            body = rng.randbytes(rng.randrange(0, 200))
        elif kind == 1:
            body = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 30)))
        else:
            body = b"code=" + bytes(rng.randrange(32, 127) for _ in range(rng.randrange(60)))
        cases.append((rng.choice(TYPES), body))
    return cases


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    return make_settings(tmp_path, db.url, api_token="fuzz-token-0123456789")


async def test_login_never_answers_500(
    settings: Settings, aiohttp_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client: Client = await aiohttp_client(create_app(settings, background=False))
    before = await table_counts(client.app[CTX].db)
    statuses: dict[int, int] = {}
    with caplog.at_level(logging.INFO):
        for content_type, body in NAMED + generated(6, 300):
            headers = {"Content-Type": content_type} if content_type else {}
            resp = await client.post(LOGIN, data=body, headers=headers, allow_redirects=False)
            await resp.read()
            assert 300 <= resp.status < 500 or resp.status == 200, (content_type, body[:80])
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not [r for r in caplog.records if r.exc_info]
    assert await table_counts(client.app[CTX].db) == before
    assert {400, 401, 415} <= set(statuses)  # each kind of refusal was reached
