"""Risk views (pure: data in, lines out)."""

from __future__ import annotations

from bot.money import yuan_zh
from storage.history import WINDOW, History


def history_lines(h: History) -> tuple[str, ...]:
    """What an ops director wants to see before approving a large return."""
    lines = [
        f"近{WINDOW.days}天订单 {h.orders} 笔，累计消费 {yuan_zh(h.spent_fen)}",
        f"历史售后 {h.returns} 次，累计退款申请 {yuan_zh(h.returned_fen)}",
    ]
    if h.first_order is not None:
        lines.append(f"首单时间 {h.first_order:%Y-%m-%d}")
    if h.orders:
        rate = h.recent_returns / h.orders  # both over the same window
        lines.append(f"售后率 {rate:.0%}")
    lines.append(f"⚠ 风险客户：{h.flag_reason or '已标记'}" if h.flagged else "客户标记：无")
    return tuple(lines)
