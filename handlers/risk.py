"""Risk views (pure: data in, lines out)."""

from __future__ import annotations

from bot.money import yuan_zh
from handlers.views import INSPECTION_ZH
from storage.history import WINDOW, History


def history_lines(h: History, *, anomalies: bool = True) -> tuple[str, ...]:
    """What an ops director wants to see before approving a large return; `anomalies`
    off where the card lists the buyer's incidents itself (the risk card)."""
    lines = [
        f"近{WINDOW.days}天订单 {h.orders} 笔，累计消费 {yuan_zh(h.spent_fen)}",
        f"历史售后 {h.returns} 次，累计退款申请 {yuan_zh(h.returned_fen)}",
    ]
    if h.first_order is not None:
        lines.append(f"首单时间 {h.first_order:%Y-%m-%d}")
    if h.orders:
        rate = h.recent_returns / h.orders  # both over the same window
        lines.append(f"售后率 {rate:.0%}")
    if anomalies and h.anomalies:
        kinds = "、".join(f"{INSPECTION_ZH.get(k, k)} {n} 次" for k, n in h.anomalies)
        lines.append(f"近{WINDOW.days}天验货异常：{kinds}")
    if h.disputes:
        lines.append(f"近{WINDOW.days}天纠纷 {h.disputes} 次")
    lines.append(f"⚠ 风险客户：{h.flag_reason or '已标记'}" if h.flagged else "客户标记：无")
    return tuple(lines)
