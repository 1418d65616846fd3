"""Money is integer fen inside; decimal yuan strings only at the edges."""

from __future__ import annotations

import re

# Plain decimal yuan with at most two places: no sign, exponent, separators or spaces.
_YUAN = re.compile(r"([0-9]{1,11})(?:\.([0-9]{1,2}))?")


def parse_yuan(value: object, *, allow_zero: bool = False) -> int:
    """'29.90' -> 2990. Only strings: a JSON float has already lost the cents' exactness."""
    if not isinstance(value, str):
        raise ValueError(f"amount must be a decimal string in yuan, got {type(value).__name__}")
    m = _YUAN.fullmatch(value)
    if m is None:
        raise ValueError(f'amount {value!r} is not a decimal like "29.90"')
    fen = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    if fen == 0 and not allow_zero:
        raise ValueError("amount must be greater than zero")
    return fen


def yuan(fen: int) -> str:
    """2990 -> '29.90' (the API and callback form)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def yuan_zh(fen: int) -> str:
    """2990 -> '¥29.90' (cards and chat replies)."""
    return f"¥{yuan(fen)}"
