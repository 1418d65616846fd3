"""The security suite's shared pieces: one hypothesis profile (few examples, no
deadline, seeded: a failure is reproducible), an app with every inbound endpoint
mounted at once, and the check that a refused request changed nothing.

The app's platforms and channels point at a loopback port nobody listens on: a
refused request must never reach them, and the tests run without their workers
(`background=False`), so an accepted one only queues work.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from bot.app import create_app
from bot.appkeys import CTX
from bot.settings import Settings, load
from storage.db import Database
from tests.fakes.dingtalk_callbacks import with_dingtalk
from tests.fakes.douyin import APP_KEY as DOUYIN_KEY
from tests.fakes.douyin import APP_SECRET as DOUYIN_SECRET
from tests.fakes.douyin import SHOP_ID
from tests.fakes.shopify import DOMAIN
from tests.fakes.shopify import SECRET as SHOPIFY_SECRET
from tests.fakes.wecom_callbacks import with_wecom
from tests.support import Client, FakeClock, MakeClient, make_settings, table_counts

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers there
API_TOKEN = "security-api-token-0123456789"

# The example counts are per engine; PostgreSQL runs the same properties on a fifth.
# RETURNHUB_FUZZ_EXAMPLES=2000 explores further (by hand, when hunting).
EXAMPLES = int(os.environ.get("RETURNHUB_FUZZ_EXAMPLES", "40"))
settings.register_profile(
    "security",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "security-pg", parent=settings.get_profile("security"), max_examples=max(8, EXAMPLES // 5)
)


def fuzz_settings(engine: str) -> settings:
    """The profile for a test running on `engine` ("sqlite" or "pg")."""
    return settings.get_profile("security-pg" if engine == "pg" else "security")


def on_loop(check: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """`check` as a plain function that runs each call on the test's event loop.

    Hypothesis drives only plain functions, and the app under test lives on the
    running loop: the test runs the @given function in a thread
    (`await asyncio.to_thread(fn)`), and each example hops back to the loop.
    """
    loop = asyncio.get_running_loop()

    @functools.wraps(check)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run_coroutine_threadsafe(check(*args, **kwargs), loop).result(timeout=60)

    return run


def every_endpoint_settings(tmp_path: Path, db_url: str, **overrides: object) -> Settings:
    """Console, generic, WeCom, DingTalk (robot, card, events), Shopify and Douyin on."""
    path = make_settings(tmp_path, db_url, api_token=API_TOKEN, **overrides).source
    lines = [
        "",
        "[channels.shopify]",
        "[[channels.shopify.shops]]",
        f'shop_domain = "{DOMAIN}"',
        f'secret = "{SHOPIFY_SECRET}"',
        'access_token = "shpat_test_token"',
        f'api_base = "{NOWHERE}/admin/api/2025-01"',
        "",
        "[channels.douyin]",
        f'app_key = "{DOUYIN_KEY}"',
        f'app_secret = "{DOUYIN_SECRET}"',
        'access_token = "douyin-token-1"',
        'refresh_token = "douyin-refresh-1"',
        f'api_base = "{NOWHERE}"',
        f'shop_id = "{SHOP_ID}"',
        'return_address_id = "880001"',
        'reject_reason_code = "11"',
    ]
    with Path(path).open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return with_dingtalk(with_wecom(load(path, env={}), NOWHERE), NOWHERE)


@pytest.fixture
def engine(request: pytest.FixtureRequest, db: Database) -> str:
    return "pg" if db.url.startswith("postgresql") else "sqlite"


@pytest.fixture
async def everything(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> Client:
    return await aiohttp_client(
        create_app(every_endpoint_settings(tmp_path, db.url), clock=clock, background=False)
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything logged at INFO and above; the test ends by asserting no ERROR."""
    with caplog.at_level(logging.INFO):
        yield caplog
    assert_no_errors(caplog)


def assert_no_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad][:5]


async def refused_changes_nothing(client: Client, status: int, before: dict[str, int]) -> None:
    """No 5xx; and a refusal (4xx) left every table as it was."""
    assert status < 500, status
    if status >= 400:
        assert await table_counts(client.app[CTX].db) == before
