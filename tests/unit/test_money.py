from __future__ import annotations

import pytest

from bot.money import parse_yuan, yuan, yuan_zh


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0.01", 1),
        ("50", 5000),
        ("50.1", 5010),
        ("50.00", 5000),
        ("5000.01", 500001),
        ("99999999999.99", 9999999999999),
    ],
)
def test_parse_yuan(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-1.00",
        "1.001",
        "1e3",
        "abc",
        " 1.00",
        "1,000.00",
        "NaN",
        "0",
        "0.00",
        29.9,
        30,
        None,
        True,
        "１２.００",
    ],
)
def test_parse_yuan_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="amount"):
        parse_yuan(value)


def test_zero_only_when_allowed() -> None:
    assert parse_yuan("0.00", allow_zero=True) == 0


def test_format() -> None:
    assert (yuan(2990), yuan(5), yuan(-120), yuan_zh(600000)) == (
        "29.90",
        "0.05",
        "-1.20",
        "¥6000.00",
    )
