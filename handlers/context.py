"""The services every handler receives: one frozen object, built in bot/app.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.settings import Settings
from handlers.people import Roster
from handlers.script_library import ScriptShelf
from storage.db import Database
from storage.secrets import Keyring


def utcnow() -> datetime:
    return datetime.now(UTC)


def naive_utc(moment: datetime) -> datetime:
    """Storage keeps naive UTC (SQLite has no zone type)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Ctx:
    db: Database
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    platforms: tuple[str, ...] = ("console",)
    keyring: Keyring = Keyring()  # the real one is loaded from the database at start-up
    # Members and roles in memory for the hot path (handlers/people.py); shared by the
    # copies `dataclasses.replace` makes, so one sync rebuilds it for all of them.
    people: Roster = field(default_factory=Roster, compare=False)
    # Dispute scripts, re-read when their files change (handlers/script_library.py).
    scripts: ScriptShelf = field(default_factory=ScriptShelf, compare=False)

    def now(self) -> datetime:
        """Naive UTC now, the form every stored timestamp takes."""
        return naive_utc(self.clock())

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.server.timezone)

    def local(self, moment: datetime) -> datetime:
        """A stored (naive UTC) time in the operators' zone, for cards and replies."""
        return moment.replace(tzinfo=UTC).astimezone(self.zone)
