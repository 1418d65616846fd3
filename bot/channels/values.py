"""Values as the marketplaces send them -> ours: ids as strings, money as integer minor
units, times as aware UTC. Never through float.

Douyin sends fen as integers (sometimes as digit strings) and ids as int64 that
exceed 2^53; Taobao sends yuan strings; Shopify decimal strings with up to the
currency's places; times come as unix seconds or `yyyy-MM-dd HH:mm:ss` in China
time. Each helper raises ValueError with the field's name, so a caller turns a
bad payload into a clear refusal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,6})?")
_LOCAL_TIME = "%Y-%m-%d %H:%M:%S"
MAX_ID = 64


def id_str(value: object, field: str) -> str:
    """An id that may arrive as a JSON integer or a string, kept exactly as text."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field} is missing")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= MAX_ID:
        return value.strip()
    raise ValueError(f"{field} must be an integer or a string id, got {type(value).__name__}")


def listed(value: object, field: str) -> list[Any]:
    """A JSON array that may be absent (None: empty); anything else is refused."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a list, got {type(value).__name__}")
    return value


def count(value: object, field: str) -> int:
    """A quantity that may arrive as a JSON integer or a string of digits (Taobao's num)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    raise ValueError(f"{field} must be a whole number, got {value!r:.40}")


def fen_int(value: object, field: str) -> int:
    """Fen that arrive as an integer or a string of digits (Douyin)."""
    if isinstance(value, bool):
        raise ValueError(f"{field} must be an integer amount in fen")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"{field} must be an integer amount in fen, got {value!r:.40}")


def minor_from_decimal(value: object, field: str) -> int:
    """A decimal string in major units ("12.50", "99", "0.125") -> minor units,
    rounded half-even from the exact decimal (Taobao yuan, Shopify amounts)."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value.strip()):
        raise ValueError(f'{field} must be a decimal string such as "12.50", got {value!r:.40}')
    try:
        exact = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"{field} is not a decimal: {value!r:.40}") from None
    return int((exact * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def utc_time(value: object, field: str) -> datetime:
    """Unix seconds (int or digits) or a China-time `yyyy-MM-dd HH:mm:ss` / ISO 8601
    string with an offset -> aware UTC."""
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a time")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if not 0 < value < 32503680000:  # before year 3000
            raise ValueError(f"{field} is not a unix time in seconds: {value}")
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            local = datetime.strptime(text, _LOCAL_TIME)  # noqa: DTZ007 - China time, below
        except ValueError:
            local = None
        try:  # 0001-01-01 east of Greenwich has no UTC date: OverflowError
            if local is not None:
                return local.replace(tzinfo=SHANGHAI).astimezone(UTC)
            moment = datetime.fromisoformat(text)
            if moment.utcoffset() is not None:
                return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"{field} is not a time (unix seconds or yyyy-MM-dd HH:mm:ss): {value!r:.40}")


def unix_version(moment: datetime) -> str:
    """A time as an integer channel version (seconds), for channels whose version is one."""
    return str(int(moment.timestamp()))
