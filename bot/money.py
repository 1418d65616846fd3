"""Money is integer fen inside; decimal yuan strings only at the edges."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_FEN = 10**13  # 1000 亿元: anything larger is a data error, not a return


def parse_yuan(value: object, *, allow_zero: bool = False) -> int:
    """'29.90' -> 2990. Rejects floats, more than two decimals, negatives, NaN."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"amount must be a decimal string in yuan, got {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"amount {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"amount {value!r} is not a finite number")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError(f"amount {value!r} has more than two decimals")
    fen = int(amount * 100)
    if fen < 0 or (fen == 0 and not allow_zero) or fen > MAX_FEN:
        raise ValueError(f"amount {value!r} is out of range")
    return fen


def yuan(fen: int) -> str:
    """2990 -> '29.90' (the API and callback form)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def yuan_zh(fen: int) -> str:
    """2990 -> '¥29.90' (cards and chat replies)."""
    return f"¥{yuan(fen)}"
