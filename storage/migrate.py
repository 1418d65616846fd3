"""Schema migrations through alembic, driven from code (`returnhub db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from storage.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to run on every start (a no-op when current)."""

    def run(connection: Connection) -> None:
        command.upgrade(_config(connection), revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def autogenerate(db: Database, message: str) -> None:
    """Developer helper: write a new revision from the model diff."""

    def run(connection: Connection) -> None:
        command.revision(_config(connection), message=message, autogenerate=True)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
