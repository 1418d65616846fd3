"""HTTP-level fixtures: an injected clock, the fake OMS, and the app wired to both;
a WeCom callback signer on that clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import create_app
from storage.db import Database
from tests.fakes.dingtalk import FakeDingtalk
from tests.fakes.dingtalk_callbacks import dingtalk_app
from tests.fakes.oms import FakeOms, running_oms
from tests.fakes.wecom import FakeWecom
from tests.fakes.wecom_callbacks import CallbackSigner, wecom_app
from tests.support import Client, FakeClock, MakeClient, make_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def signer(clock: FakeClock) -> CallbackSigner:
    """Seals callbacks as WeCom does, stamped with the test clock."""
    return CallbackSigner(clock.timestamp)


@pytest.fixture
async def oms(clock: FakeClock) -> AsyncIterator[FakeOms]:
    async with running_oms(clock) as fake:
        yield fake


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, oms: FakeOms, aiohttp_client: MakeClient
) -> Client:
    """The app on the `db` engine, its generic channel calling back to the fake OMS."""
    settings = make_settings(tmp_path, db.url, callback_url=oms.url)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


@pytest.fixture
async def wecom_client(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeWecom,
    aiohttp_client: MakeClient,
) -> Client:
    """The app wired to the module's `fake` WeCom (each WeCom test module defines `fake`)."""
    return await aiohttp_client(wecom_app(db, tmp_path, clock, fake.url))


@pytest.fixture
async def dingtalk_client(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeDingtalk,
    aiohttp_client: MakeClient,
) -> Client:
    """The app wired to the module's `fake` DingTalk (each DingTalk test module defines
    `fake`), in HTTP mode."""
    return await aiohttp_client(dingtalk_app(db, tmp_path, clock, fake.url))
