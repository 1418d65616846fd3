"""Field readers shared by the marketplace mappings: ids, China times, yuan strings.

Every marketplace sends ids larger than 2^53 (kept as strings), China-time
timestamps without an offset, and yuan amounts as strings. A value that breaks
these rules raises BadMessage: the message can never be applied as it is, so the
poller confirms it and dead-letters it instead of retrying forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.money import parse_yuan

CHINA = ZoneInfo("Asia/Shanghai")


class BadMessage(ValueError):
    """A message or detail that can never be applied: confirm it and dead-letter it."""


def numeric_id(value: Any, name: str) -> str:
    """An id sent as a JSON number or string of digits, as the exact string."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise BadMessage(f"{name} must be a numeric id, got {value!r}")
    return str(value)


def china(text: Any) -> datetime | None:
    """`yyyy-MM-dd HH:mm:ss` in China time -> aware UTC (None when absent)."""
    if not text:
        return None
    try:
        local = datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        raise BadMessage(f"time {text!r} is not yyyy-MM-dd HH:mm:ss") from None
    return local.astimezone(UTC)


def yuan_fen(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """A yuan string ("28.80") in fen; a JSON float is refused (it lost the cents)."""
    try:
        return parse_yuan(value, allow_zero=allow_zero)
    except ValueError as exc:
        raise BadMessage(f"{name}: {exc}") from None
