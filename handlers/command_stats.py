"""/统计 [今天|昨天|本周|本月] [渠道]: the KPIs of handlers/reports.py as a chat answer."""

from __future__ import annotations

from bot.money import yuan_zh
from handlers import reports, views
from handlers.command_grammar import Call
from handlers.disputes import OUTCOME_ZH
from handlers.workflow import STATUS_ZH, Status

USAGE = "/统计 [今天|昨天|本周|本月] [渠道]"


def _reason(code: str) -> str:
    label = views.REASON_ZH.get(code.split(".", 1)[0])
    return f"{code}（{label}）" if label and code else code or "未填写"


def text(k: reports.Kpis, channel: str | None) -> str:
    scope = f"（渠道 {channel}）" if channel else ""
    lines = [f"【统计 · {reports.PERIOD_ZH[k.period.name]}】{scope}", f"新增售后：{k.new} 单"]
    pending = [f"{STATUS_ZH[Status(s)]} {n}" for s, n in sorted(k.pending.items()) if n]
    lines.append(
        f"处理中：{sum(k.pending.values())} 单" + (f"（{'，'.join(pending)}）" if pending else "")
    )
    lines.append(f"已退款：{k.refunds.count} 单，{yuan_zh(k.refunds.amount_fen)}")
    hours = k.refunds.avg_hours
    lines.append(
        f"平均处理时长：{f'{hours:.1f} 小时' if hours is not None else '—'}（申请到退款）"
    )
    lines.append(f"SLA 超时：{k.sla_breaches} 次")
    if k.reasons:
        lines.append("退货原因 TOP：" + "，".join(f"{_reason(c)} {n}" for c, n in k.reasons))
    if k.scripts:
        lines.append("话术调取：" + "，".join(f"{s} {n}" for s, n in k.scripts))
    outcomes = [f"{s or '未关联话术'}·{OUTCOME_ZH.get(o, o)} {n}" for s, o, n in k.disputes]
    lines.append("纠纷结果：" + ("，".join(outcomes) if outcomes else "暂无"))
    return "\n".join(lines)


async def stats(call: Call) -> None:
    words = [a.lower() for a in call.args]
    name = next((reports.PERIODS[w] for w in words if w in reports.PERIODS), "today")
    others = [a for a in call.args if a.lower() not in reports.PERIODS]
    if len(others) > 1:
        await call.reply(f"用法：{USAGE}")
        return
    channel = others[0] if others else None
    now = call.ctx.now()
    period = reports.period(name, now, call.ctx.zone)
    found = await reports.kpis(call.session, period, now, reports.Filters(channel=channel))
    await call.reply(text(found, channel))
