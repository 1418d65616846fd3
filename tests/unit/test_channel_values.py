"""Marketplace values -> ours without float: ids as strings, money in minor units, UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.channels.values import fen_int, id_str, minor_from_decimal, utc_time


def test_ids_beyond_2_53_stay_exact() -> None:
    assert id_str(4705288465508532862, "p_id") == "4705288465508532862"
    assert id_str(" 7200000000000000001 ", "aftersale_id") == "7200000000000000001"
    for bad in (None, True, 1.5, "", "x" * 65, []):
        with pytest.raises(ValueError, match="aftersale_id"):
            id_str(bad, "aftersale_id")


def test_money_from_fen_and_decimal_strings() -> None:
    assert fen_int(13200, "refund_amount") == fen_int("13200", "refund_amount") == 13200
    assert minor_from_decimal("29.90", "amount") == 2990
    assert minor_from_decimal("99", "amount") == 9900
    assert minor_from_decimal("0.125", "amount") == 12  # half-even on the exact decimal
    assert minor_from_decimal("0.135", "amount") == 14
    for bad in (29.9, "29,90", "1e3", "", True, -1):
        with pytest.raises(ValueError):
            minor_from_decimal(bad, "amount") if not isinstance(bad, int) else fen_int(bad, "x")


@given(st.integers(min_value=0, max_value=10**13), st.integers(min_value=0, max_value=99))
def test_decimal_strings_round_trip(whole: int, cents: int) -> None:
    assert minor_from_decimal(f"{whole}.{cents:02d}", "amount") == whole * 100 + cents


def test_times_to_utc() -> None:
    expected = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
    assert utc_time("2024-05-01 12:00:00", "modified") == expected  # Asia/Shanghai
    assert utc_time(int(expected.timestamp()), "update_time") == expected
    assert utc_time(str(int(expected.timestamp())), "update_time") == expected
    assert utc_time("2024-05-01T06:00:00+02:00", "updated_at") == expected
    for bad in ("yesterday", 0, True, 1.5, "2024-05-01T12:00:00"):
        with pytest.raises(ValueError, match="update_time"):
            utc_time(bad, "update_time")
