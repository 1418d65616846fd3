"""Channel versions: one total order, so "is this update newer?" always has one answer.

A version is either an integer (ASCII digits, compared as numbers: "10" after
"9") or an event time (`bot.events.time_version`, compared as aware datetimes:
0999 before 2026). Never as text. Two versions of different kinds — a case
created with "version": "3" updated by an event that carries none — have no
order, and the update is refused rather than guessed at.
"""

from __future__ import annotations

from datetime import datetime

INTEGER, TIME = "integer", "time"


class Unordered(ValueError):
    """The two versions cannot be compared; the message says why, in zh and en."""


def parse(version: str) -> tuple[str, int | datetime]:
    """(kind, value) of a stored or incoming version; Unordered if it is neither kind."""
    if version.isascii() and version.isdigit():
        return INTEGER, int(version)
    try:
        moment = datetime.fromisoformat(version)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise Unordered(
            f"版本号 {version[:40]!r} 既不是整数也不是事件时间，无法排序 / "
            f"version {version[:40]!r} is neither an integer nor an event time"
        )
    return TIME, moment


def newer(candidate: str, stored: str) -> bool:
    """True when `candidate` comes after `stored`; Unordered when they are of two kinds."""
    new_kind, new_value = parse(candidate)
    old_kind, old_value = parse(stored)
    if new_kind != old_kind:
        raise Unordered(
            f"版本类型不一致：已存储 {stored!r}（{_zh(old_kind)}），本次 {candidate!r}"
            f"（{_zh(new_kind)}）；同一售后单的所有事件须都带整数 version，或都不带 / "
            f"version kinds differ: stored {stored!r} is {_en(old_kind)}, this one "
            f"{candidate!r} is {_en(new_kind)}; send an integer version on every event "
            "of a case, or on none"
        )
    if isinstance(new_value, int) and isinstance(old_value, int):
        return new_value > old_value
    if isinstance(new_value, datetime) and isinstance(old_value, datetime):
        return new_value > old_value
    raise AssertionError("unreachable: same kind, same type")


def _zh(kind: str) -> str:
    return "整数版本" if kind == INTEGER else "无 version，按 occurred_at"


def _en(kind: str) -> str:
    return "an integer" if kind == INTEGER else "an event time (no version)"
