"""/话术 [场景] [RC-…|订单号|运单号] [名称=值 …]: the dispute script, filled in.

Alone it lists the scenarios; with a scenario it explains when it applies and its
SOP; with a case too it renders the customer-facing reply from the case's data (and
any `名称=值` given), keeps it on the case, and answers with the text to copy and the
steps to follow. Arguments come in any order.
"""

from __future__ import annotations

from handlers import approvals, disputes
from handlers.command_cases import case_arg
from handlers.command_grammar import Call, assignments
from handlers.script_library import MONEY_VARIABLES, Catalog, Scenario
from handlers.workflow import Actor

USAGE = "/话术 场景 RC-…|订单号|运单号 [名称=值 …]"


def catalog(call: Call) -> Catalog:
    return call.ctx.scripts.catalog(call.ctx.settings.scripts_dir)


def listing(found: Catalog) -> str:
    if not found.scenarios:
        return "还没有可用的话术场景，请管理员在 scripts 目录添加（见 docs/scripts.md）"
    lines = ["话术场景（发送 /话术 场景 RC-… 生成回复）："]
    for s in found.scenarios:
        aliases = f"（又称 {'、'.join(s.aliases[:3])}）" if s.aliases else ""
        lines.append(f"· {s.name}{aliases}：{s.applies}")
    if found.errors:
        lines.append(
            f"另有 {len(found.errors)} 处话术文件错误，请管理员运行 returnhub check-config"
        )
    return "\n".join(lines)


def _sop(scenario: Scenario) -> list[str]:
    return [f"{n}. {step}" for n, step in enumerate(scenario.sop, start=1)]


def about(scenario: Scenario) -> str:
    lines = [f"【话术 · {scenario.title}】", f"适用：{scenario.applies}"]
    if scenario.variables:
        lines.append(f"需要：{'、'.join(scenario.variables)}（案件没有的请用 名称=值 补充）")
    lines += ["内部处理步骤：", *_sop(scenario)]
    lines.append(f"生成回复：/话术 {scenario.name} RC-…")
    return "\n".join(lines)


def _given(raw: dict[str, str]) -> tuple[dict[str, str], str]:
    """Chat-given values, amounts checked; (values, a complaint or "")."""
    values: dict[str, str] = {}
    for name, value in raw.items():
        if name in MONEY_VARIABLES:
            amount = disputes.money_value(value)
            if amount is None:
                return {}, f"{name}={value} 不是金额，请写成 {name}=35 或 {name}=35.50"
            value = amount
        values[name] = value
    return values, ""


async def script(call: Call) -> None:
    found = catalog(call)
    raw, words = assignments(call.args)
    if not words:
        await call.reply(listing(found))
        return
    scenario = next((s for w in words if (s := found.find(w)) is not None), None)
    if scenario is None:
        await call.reply(f"没有名为「{words[0]}」的话术场景。\n{listing(found)}")
        return
    refs = [w for w in words if found.find(w) is None]
    if not refs:
        await call.reply(about(scenario))
        return
    given, complaint = _given(raw)
    if complaint:
        await call.reply(complaint)
        return
    ref_call = Call(call.session, call.ctx, call.event, call.member, tuple(refs), tuple(refs))
    case_id = await case_arg(ref_call, USAGE)
    case = await approvals.load_case(call.session, call.ctx, case_id) if case_id else None
    if case is None:
        return
    known = await disputes.case_variables(call.session, call.ctx, case)
    filled = disputes.fill(scenario, case, {**known, **given})
    if filled.missing:
        await call.reply(disputes.ask_text(filled, case), case.id)
        return
    if filled.error:
        await call.reply(f"「{scenario.name}」话术模板有误，请联系管理员：{filled.error}", case.id)
        return
    await disputes.pull(call.session, call.ctx, case, filled, Actor.of(call.member))
    lines = [
        f"【话术 · {scenario.title}】{case.id}",
        "回复买家（可直接复制）：",
        filled.text,
        "内部处理步骤：",
        *_sop(scenario),
        f"买家答复后：/记录 {case.id} 客户同意… / 客户拒绝… / 升级平台介入",
    ]
    await call.reply("\n".join(lines), case.id)
