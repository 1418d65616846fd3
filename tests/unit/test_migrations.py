"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from storage.db import Database
from storage.migrate import MIGRATIONS, upgrade
from storage.models import Base


async def test_models_and_migrations_agree(db: Database) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrade_is_idempotent(db: Database) -> None:
    await upgrade(db)  # the fixture already upgraded once: a second run is a no-op
    async with db.engine.connect() as conn:
        version = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert [row[0] for row in version] == [head]
