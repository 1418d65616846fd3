"""The fake WeCom behaves like the real one where time and limits matter.

Raw HTTP on purpose (not WecomClient): these pin what the fake answers, so the
client tests built on it test against WeCom's behaviour, not the client's own idea.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.wecom import AGENT_ID, CORP_ID, SECRET, FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner
from tests.fakes.wecom_checks import (
    CHAT_NOT_FOUND,
    CODE_INVALID,
    INVALID_MSGTYPE,
    IP_NOT_TRUSTED,
    NO_CALLBACK_URL,
    TASK_ID_EXISTS,
)
from tests.support import FakeClock


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(clock=lambda: clock.now.timestamp())) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield session


async def gettoken(fake: FakeWecom, http: aiohttp.ClientSession, secret: str = SECRET) -> Any:
    params = {"corpid": CORP_ID, "corpsecret": secret}
    async with http.get(f"{fake.url}/cgi-bin/gettoken", params=params) as resp:
        return await resp.json()


async def post(fake: FakeWecom, http: aiohttp.ClientSession, path: str, body: Any) -> Any:
    token = (await gettoken(fake, http))["access_token"]
    params = {"access_token": token}
    async with http.post(f"{fake.url}/cgi-bin/{path}", params=params, json=body) as resp:
        return await resp.json()


def text(user: str, content: str) -> dict[str, Any]:
    return {"touser": user, "msgtype": "text", "agentid": AGENT_ID, "text": {"content": content}}


def card(user: str, task_id: str) -> dict[str, Any]:
    template = {
        "card_type": "button_interaction",
        "task_id": task_id,
        "main_title": {"title": "售后审批"},
        "button_list": [{"text": "同意", "key": "k-approve", "style": 1}],
    }
    return {"touser": user, "msgtype": "template_card", "agentid": AGENT_ID,
            "template_card": template}  # fmt: skip


def update(user: str, code: str) -> dict[str, Any]:
    return {
        "userids": [user],
        "agentid": AGENT_ID,
        "response_code": code,
        "button": {"replace_name": "已处理"},
    }


async def test_a_response_code_is_single_use_and_expires_after_72_hours(
    fake: FakeWecom, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sent = await post(fake, http, "message/send", card("wangzuzhang", "rh-1"))
    code = sent["response_code"]
    assert (await post(fake, http, "message/update_template_card", update("wangzuzhang", code)))[
        "errcode"
    ] == 0
    again = await post(fake, http, "message/update_template_card", update("wangzuzhang", code))
    assert again["errcode"] == CODE_INVALID
    late = (await post(fake, http, "message/send", card("wangzuzhang", "rh-2")))["response_code"]
    clock.advance(72 * 3600)
    expired = await post(fake, http, "message/update_template_card", update("wangzuzhang", late))
    assert expired["errcode"] == CODE_INVALID and "expired" in expired["errmsg"]


async def test_a_click_on_a_closed_or_old_card_carries_a_fresh_code(
    fake: FakeWecom, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sent = await post(fake, http, "message/send", card("wangzuzhang", "rh-3"))
    await post(
        fake, http, "message/update_template_card", update("wangzuzhang", sent["response_code"])
    )
    clock.advance(80 * 3600)
    signer = CallbackSigner(clock.timestamp)
    xml, code = signer.click(fake, "wangzuzhang", "k-approve")
    assert f"<ResponseCode><![CDATA[{code}]]></ResponseCode>" in xml and "rh-3" in xml
    assert code != sent["response_code"]
    answer = await post(fake, http, "message/update_template_card", update("wangzuzhang", code))
    assert answer["errcode"] == 0


async def test_per_member_limits_drop_the_excess_silently(
    fake: FakeWecom, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    answers = [await post(fake, http, "message/send", text("xiaozhou", f"{i}")) for i in range(31)]
    assert all(a["errcode"] == 0 for a in answers)  # WeCom does not say it dropped one
    assert len(fake.texts_to("xiaozhou")) == 30
    assert [d["text"]["content"] for d in fake.dropped_for("xiaozhou")] == ["30"]
    await post(fake, http, "message/send", text("wangzuzhang", "another member"))
    assert fake.texts_to("wangzuzhang") == ["another member"]
    for _ in range(33):  # 990 more over 33 minutes: the hour's 1,000 run out
        clock.advance(61)
        for i in range(30):
            await post(fake, http, "message/send", text("xiaozhou", f"m{i}"))
    assert len(fake.texts_to("xiaozhou")) == 1000
    assert len(fake.dropped_for("xiaozhou")) == 1 + 33 * 30 - 970
    clock.advance(3600)
    await post(fake, http, "message/send", text("xiaozhou", "next hour"))
    assert fake.texts_to("xiaozhou")[-1] == "next hour"


async def test_untrusted_ip_and_missing_callback_url_are_switchable(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    fake.distrust_ip()
    refused = await post(fake, http, "message/send", text("wangzuzhang", "hi"))
    assert refused["errcode"] == IP_NOT_TRUSTED and "from ip: 127.0.0.1" in refused["errmsg"]
    fake.distrust_ip(gettoken=True)
    assert (await gettoken(fake, http))["errcode"] == IP_NOT_TRUSTED
    fake.trust_ip()
    fake.has_callback_url = False
    no_url = await post(fake, http, "message/send", card("wangzuzhang", "rh-4"))
    assert no_url["errcode"] == NO_CALLBACK_URL
    assert (await post(fake, http, "message/send", text("wangzuzhang", "ok")))["errcode"] == 0
    assert fake.texts_to("wangzuzhang") == ["ok"] and not fake.cards_to("wangzuzhang")


async def test_a_reused_task_id_answers_42014(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    assert (await post(fake, http, "message/send", card("wangzuzhang", "rh-5")))["errcode"] == 0
    again = await post(fake, http, "message/send", card("liuzuzhang", "rh-5"))
    assert again["errcode"] == TASK_ID_EXISTS and "has existed" in again["errmsg"]
    too_long = await post(fake, http, "message/send", card("liuzuzhang", "x" * 129))
    assert too_long["errcode"] == TASK_ID_EXISTS
    assert len(fake.cards_to("wangzuzhang")) == 1 and not fake.cards_to("liuzuzhang")


async def test_appchat_send_posts_to_the_apps_own_chats_only(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    fake.add_chat("chat-cs-lead", {"wangzuzhang", "liuzuzhang"})
    message = {
        "chatid": "chat-cs-lead",
        "msgtype": "markdown",
        "markdown": {"content": "**新单**"},
    }
    assert (await post(fake, http, "appchat/send", message))["errcode"] == 0
    assert fake.chat_texts("chat-cs-lead") == ["**新单**"]
    unknown = await post(fake, http, "appchat/send", {**message, "chatid": "nope"})
    assert unknown["errcode"] == CHAT_NOT_FOUND
    as_card = {"chatid": "chat-cs-lead", "msgtype": "template_card", "template_card": {}}
    assert (await post(fake, http, "appchat/send", as_card))["errcode"] == INVALID_MSGTYPE
    assert len(fake.chat_messages) == 1


async def test_a_wrong_or_rotated_secret_answers_40001_and_is_counted(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    assert (await gettoken(fake, http, "wrong"))["errcode"] == 40001
    assert (await gettoken(fake, http))["errcode"] == 0
    fake.rotate_secret("new-secret")
    assert (await gettoken(fake, http))["errcode"] == 40001
    assert (await gettoken(fake, http, "new-secret"))["errcode"] == 0
    assert fake.token_fetches == 4 and fake.token_refusals == 2
