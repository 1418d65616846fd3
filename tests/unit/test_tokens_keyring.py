"""The keyring kept in the database, on both engines: made once, shared by replicas,
rotated with a grace period, and honouring first-format tokens only where they exist."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bot.settings import check, load
from handlers import tokens
from storage.db import Database
from storage.models import CardRecord, ServerSecret
from storage.secrets import CURRENT, LEGACY, Keyring, load_keyring
from tests.unit.test_tokens import mint

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC).replace(tzinfo=None)  # as ctx.now() gives
GRACE = timedelta(days=7)
CASE = "RC-261123-0001"


async def rows(db: Database) -> dict[str, ServerSecret]:
    async with db.read() as session:
        return {r.name: r for r in await session.scalars(select(ServerSecret))}


async def starting_together(db: Database, count: int, configured: str) -> list[Keyring]:
    """`count` replicas (each its own engine and pool) loading the keyring at once."""
    replicas = [Database(db.url) for _ in range(count)]
    try:
        return await asyncio.gather(*(load_keyring(r, configured, GRACE, NOW) for r in replicas))
    finally:
        for replica in replicas:
            await replica.dispose()


async def test_replicas_starting_together_agree_on_one_generated_secret(db: Database) -> None:
    rings = await starting_together(db, 4, "")
    assert len({ring.current for ring in rings}) == 1
    assert len(rings[0].current) >= 40  # token_urlsafe(32)
    stored = await rows(db)
    assert list(stored) == [CURRENT] and stored[CURRENT].value == rings[0].current
    # A restart (any process, any time later) reads the same one.
    later = await load_keyring(db, "", GRACE, NOW + timedelta(days=30))
    assert later.current == rings[0].current


async def test_a_configured_secret_wins_and_the_generated_one_retires(db: Database) -> None:
    generated = await load_keyring(db, "", GRACE, NOW)
    old_token = tokens.sign(generated, 7, CASE, "approve")
    rotated = await load_keyring(db, "configured-secret", GRACE, NOW + timedelta(hours=1))
    assert rotated.current == "configured-secret"
    assert tokens.sign(rotated, 7, CASE, "approve") != old_token  # new ones: current secret
    retired_at = NOW + timedelta(hours=1)
    assert tokens.verify(rotated, old_token, retired_at + GRACE - timedelta(seconds=1))
    assert tokens.verify(rotated, old_token, retired_at + GRACE) is None
    # Removing the setting later keeps the last configured secret, not a new one.
    assert (await load_keyring(db, "", GRACE, retired_at)).current == "configured-secret"


async def test_rotation_keeps_each_previous_secret_for_the_grace(db: Database) -> None:
    first = await load_keyring(db, "secret-one", GRACE, NOW)
    one = tokens.sign(first, 7, CASE, "approve")
    second = await load_keyring(db, "secret-two", GRACE, NOW + timedelta(days=1))
    two = tokens.sign(second, 7, CASE, "approve")
    third = await load_keyring(db, "secret-three", GRACE, NOW + timedelta(days=2))
    assert third.verifying(NOW + timedelta(days=2)) == ("secret-three", "secret-two", "secret-one")
    at = NOW + timedelta(days=8, hours=12)  # secret-one retired on day 1, secret-two on day 2
    assert tokens.verify(third, one, at) is None
    assert tokens.verify(third, two, at) is not None
    # The next start after the grace deletes the expired secret from the database.
    await load_keyring(db, "secret-three", GRACE, at)
    kept = {r.value for r in (await rows(db)).values()}
    assert kept == {"secret-three", "secret-two"}


async def test_the_same_configured_secret_on_every_start_changes_nothing(db: Database) -> None:
    await load_keyring(db, "steady", GRACE, NOW)
    again = await load_keyring(db, "steady", GRACE, NOW + timedelta(days=3))
    assert again.retired == () and again.current == "steady"
    assert list(await rows(db)) == [CURRENT]


async def test_replicas_rotating_together_retire_the_old_secret_once(db: Database) -> None:
    await load_keyring(db, "before", GRACE, NOW)
    rings = await starting_together(db, 3, "after")
    assert {ring.current for ring in rings} == {"after"}
    assert all(ring.verifying(NOW) == ("after", "before") for ring in rings)
    assert sorted(r.value for r in (await rows(db)).values()) == ["after", "before"]


async def _add_card(db: Database) -> None:
    async with db.transaction() as session:
        session.add(
            CardRecord(
                case_id=CASE, step_id=None, kind="approval", platform="console",
                recipient="王组长", platform_ref="", state="open", card={},
                created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip


FIRST_FORMAT = mint("kept-secret", "7.approve")  # card 7, no case id


async def test_first_format_tokens_are_honoured_for_the_grace_after_an_upgrade(
    db: Database,
) -> None:
    """A database with cards when the keyring first loads is an upgrade: its cards'
    tokens were issued in the first format and keep working for the grace period."""
    await _add_card(db)
    ring = await load_keyring(db, "kept-secret", GRACE, NOW)
    assert ring.legacy_since == NOW
    again = await load_keyring(db, "kept-secret", GRACE, NOW + timedelta(days=1))
    assert again.legacy_since == NOW  # a restart does not extend it
    first = tokens.verify(again, FIRST_FORMAT, NOW)
    assert first is not None and first.case_id is None
    assert not again.accepts_legacy(NOW + GRACE)
    await load_keyring(db, "kept-secret", GRACE, NOW + GRACE)
    assert LEGACY not in await rows(db)


async def test_a_fresh_database_accepts_no_first_format_tokens(db: Database) -> None:
    ring = await load_keyring(db, "kept-secret", GRACE, NOW)
    await _add_card(db)
    ring = await load_keyring(db, "kept-secret", GRACE, NOW)  # cards made after: ours
    assert ring.legacy_since is None
    assert tokens.verify(ring, FIRST_FORMAT, NOW) is None


def test_a_negative_grace_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "returnhub.toml"
    path.write_text("[server]\nsecret_grace_days = -1\n", encoding="utf-8")
    assert f"{path}:2: server.secret_grace_days: must be 0 or more" in check(path, env={})
    assert (
        load(path, env={"RETURNHUB__SERVER__SECRET_GRACE_DAYS": "0"}).server.secret_grace_days == 0
    )
