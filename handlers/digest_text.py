"""The daily digest's figures and its Chinese markdown.

Every number comes from the functions /统计 and the dashboard use
(handlers/reports.py, handlers/dashboard_figures.py) over the previous local day,
so the three never disagree; nothing here writes SQL of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.money import yuan_zh
from handlers import dashboard_figures as figures
from handlers import reports
from handlers.context import Ctx
from handlers.views import REASON_ZH

TREND_DAYS = 7
WEEKDAY_ZH = "一二三四五六日"


@dataclass(frozen=True)
class Digest:
    day: date  # the local day reported
    tiles: figures.Tiles
    refunds: reports.Refunds  # released on that day
    sla_breaches: int
    reasons: list[tuple[str, int]]  # top two-level codes
    trend: list[tuple[str, int, int]]  # (local day, new, refunded), the last TREND_DAYS

    def chart_data(self) -> dict[str, Any]:
        """What the PNG chart (bot/digest_chart.py) draws, as JSON for the outbox row."""
        return {
            "title": f"售后日报 {self.day.isoformat()}",
            "reasons": [[reason_zh(c), n] for c, n in self.reasons],
            "trend": [list(t) for t in self.trend],
        }


def reason_zh(code: str) -> str:
    label = REASON_ZH.get(code.split(".", 1)[0], "")
    return f"{label}·{code}" if label and "." in code else label or code or "未填写"


async def build(session: AsyncSession, ctx: Ctx, now: datetime) -> Digest:
    """The previous local day's figures (`now` naive UTC)."""
    p = reports.period("yesterday", now, ctx.zone)
    offset = ctx.zone.utcoffset(ctx.local(p.start).replace(tzinfo=None)) or timedelta(0)
    days = await figures.trend(session, p.end, offset.total_seconds() / 3600)
    day = ctx.local(p.start).date()
    return Digest(
        day=day,
        tiles=await figures.tiles(session, p),
        refunds=await reports.refunds(session, p),
        sla_breaches=await reports.sla_breaches(session, p, now),
        reasons=await reports.top_reasons(session, p),
        trend=[d for d in days if d[0] <= day.isoformat()][-TREND_DAYS:],
    )


def markdown(d: Digest, dashboard_url: str = "") -> str:
    """The digest as markdown both WeCom and DingTalk render (headings, bold, quotes,
    lists, links); short enough for WeCom's 2,048-byte app markdown."""
    t = d.tiles
    share = f"{t.auto_share:.0%}" if t.auto_share is not None else "—"
    lines = [
        f"## 售后日报 · {d.day.isoformat()}（周{WEEKDAY_ZH[d.day.weekday()]}）",
        "> 统计昨天全天；待处理为当前数",
        f"**新增售后**：{t.new} 单（自动通过 {share}）",
        f"**待审批**：{t.pending_review} 单　**待寄回**：{t.awaiting_return} 单",
        f"**待验货**：{t.awaiting_inspection} 单　**异常挂起**：{t.on_hold} 单",
        f"**待退款金额**：{yuan_zh(t.refund_pending_fen)}",
        f"**已退款**：{d.refunds.count} 单，{yuan_zh(t.refunded_fen)}",
        f"**SLA 超时**：{d.sla_breaches} 次",
    ]
    if d.reasons:
        lines.append("**退货原因 TOP**")
        lines += [f"{i}. {reason_zh(c)}　{n} 单" for i, (c, n) in enumerate(d.reasons, 1)]
    if dashboard_url:
        lines.append(f"[打开看板查看详情]({dashboard_url})")
    return "\n".join(lines)
