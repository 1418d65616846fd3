"""The WeCom API client and platform adapter against the fake WeCom on loopback.

Token caching and refresh, bounded retries, the error mapping the outbox relies
on (RetryableError vs PermanentError), robots, card updates (media: test_wecom_media.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.cards import Button, Card, CardRenderer
from bot.outbox import PermanentError, RetryableError
from bot.platforms.outbound import split_text
from bot.platforms.wecom import WecomPlatform, build_platforms
from bot.platforms.wecom_client import WecomApiError, WecomClient
from bot.platforms.wecom_events import NOT_UPDATABLE, split_ref
from bot.platforms.wecom_robot import WecomRobotPlatform
from bot.settings import WecomSettings, templates_dir
from tests.fakes.wecom import AGENT_ID, CORP_ID, SECRET, FakeWecom, running
from tests.fakes.wecom_callbacks import api_client


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(users={"wangzuzhang", "liuzuzhang"})) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield session


def make_client(
    fake: FakeWecom, http: aiohttp.ClientSession, *, secret: str = SECRET, base: str = ""
) -> WecomClient:
    return api_client(base or fake.url, http, secret=secret)


@pytest.fixture
def client(fake: FakeWecom, http: aiohttp.ClientSession) -> WecomClient:
    return make_client(fake, http)


def approval(closed: bool = False) -> Card:
    buttons = tuple(
        Button(label, action, f"tok-{action}", style)
        for label, action, style in (
            ("同意", "approve", "primary"),
            ("驳回", "reject", "danger"),
            ("转交", "transfer", "default"),
        )
    )
    return Card(
        kind="approval",
        title="售后审批 · RC-261123-0001",
        case_id="RC-261123-0001",
        summary="仅退款 ¥132.00，待客服组长审批",
        fields=(("订单号", "SO1"), ("申请金额", "¥132.00"), ("处理时限", "11-23 14:00")),
        buttons=buttons,
        status="已由 王组长 于 11-23 10:02 同意" if closed else "",
        closed=closed,
    )


async def test_concurrent_sends_fetch_one_token(client: WecomClient, fake: FakeWecom) -> None:
    await asyncio.gather(*(client.send_text("wangzuzhang", f"第{i}条") for i in range(10)))
    assert fake.token_fetches == 1
    assert len(fake.texts_to("wangzuzhang")) == 10


async def test_an_expired_token_is_refreshed_once_and_the_send_delivered(
    client: WecomClient, fake: FakeWecom
) -> None:
    await client.send_text("wangzuzhang", "一")
    fake.expire_tokens()
    await asyncio.gather(*(client.send_text("wangzuzhang", f"二{i}") for i in range(5)))
    assert fake.token_fetches == 2  # five calls refused with 42001, one refresh
    assert len(fake.texts_to("wangzuzhang")) == 6


async def test_a_40014_storm_is_bounded_and_retryable(
    client: WecomClient, fake: FakeWecom
) -> None:
    fake.fail("message/send", errcode=40014, times=None)
    with pytest.raises(RetryableError, match="token refused again") as caught:
        await client.send_text("wangzuzhang", "hi")
    assert fake.calls.count("message/send") == 2 and fake.token_fetches == 2
    assert "tok_" not in str(caught.value)


@pytest.mark.parametrize(
    ("errcode", "status", "kind"),
    [
        (-1, None, RetryableError),
        (45009, None, RetryableError),
        (45033, None, RetryableError),
        (None, 502, RetryableError),
        (None, 503, RetryableError),
        (81013, None, PermanentError),
        (60111, None, PermanentError),
        (40058, None, PermanentError),
        (None, 404, PermanentError),
    ],
)
async def test_errors_map_to_retryable_or_permanent(
    client: WecomClient,
    fake: FakeWecom,
    errcode: int | None,
    status: int | None,
    kind: type[Exception],
) -> None:
    fake.fail("message/send", errcode=errcode, status=status)
    with pytest.raises(kind):
        await client.send_text("wangzuzhang", "hi")
    await client.send_text("wangzuzhang", "again")  # one-off: the next call goes through
    assert fake.texts_to("wangzuzhang") == ["again"]


async def test_unknown_user_is_permanent(client: WecomClient) -> None:
    with pytest.raises(WecomApiError) as caught:
        await client.send_text("nobody", "hi")
    assert caught.value.errcode == 81013
    # WeCom echoes the invalid userid lowercased: still recognised as this recipient.
    with pytest.raises(WecomApiError) as caught:
        await client.send_text("NoBody", "hi")
    assert caught.value.errcode == 81013


async def test_network_trouble_is_retryable_and_never_shows_the_token(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    sessions = [http]
    client = WecomClient(make_client(fake, http).settings, lambda: sessions[-1])
    await client.send_text("wangzuzhang", "warm the token cache")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as impatient:
        sessions.append(impatient)
        fake.slow("message/send", 3.0)  # far longer than this session's timeout
        with pytest.raises(RetryableError) as slow:
            await client.send_text("wangzuzhang", "slow")
    down = make_client(fake, http, base="http://127.0.0.1:9")
    with pytest.raises(RetryableError) as refused:
        await down.send_text("wangzuzhang", "down")
    for exc in (slow.value, refused.value):
        assert "tok_" not in str(exc) and SECRET not in str(exc)


async def test_a_wrong_secret_is_retryable_and_not_echoed(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    client = make_client(fake, http, secret="wrong-secret-value")
    with pytest.raises(RetryableError) as caught:
        await client.send_text("wangzuzhang", "hi")
    assert "wrong-secret-value" not in str(caught.value)
    assert fake.calls == ["gettoken"]


async def test_card_send_update_and_single_use_codes(client: WecomClient, fake: FakeWecom) -> None:
    platform = WecomPlatform(client, CardRenderer(templates_dir()))
    ref = await platform.send_card("wangzuzhang", approval(), card_id=7, outbox_id=1)
    task_id, code = split_ref(ref)
    assert task_id.endswith("-c7-o1") and fake.codes[code]["used"] is False
    (sent,) = fake.cards_to("wangzuzhang")
    assert [b["style"] for b in sent["button_list"]] == [1, 2, 4]
    new_ref = await platform.update_card("wangzuzhang", ref, approval(True), card_id=7)
    assert new_ref == f"{task_id}|" and fake.codes[code]["used"] is True
    (update,) = fake.updates
    assert update["template_card"]["main_title"]["desc"] == "已由 王组长 于 11-23 10:02 同意"
    # No code left: not an error, the member's next click brings one (and shows it again).
    assert (
        await platform.update_card("wangzuzhang", new_ref or "", approval(True), card_id=7) is None
    )
    with pytest.raises(WecomApiError):  # WeCom itself refuses a used code
        await client.update_template_card(["wangzuzhang"], code, replace_name="已处理")
    with pytest.raises(RetryableError, match="not shown yet"):
        await platform.update_card("wangzuzhang", "", approval(True), card_id=8)
    assert await platform.update_card("x", NOT_UPDATABLE, approval(True), card_id=9) is None


async def test_long_texts_are_split_within_2048_bytes(
    client: WecomClient, fake: FakeWecom
) -> None:
    platform = WecomPlatform(client, CardRenderer(templates_dir()))
    text = "\n".join(f"第{i}行：售后单状态明细" for i in range(300))
    await platform.send_text("wangzuzhang", text, outbox_id=1)
    pieces = fake.texts_to("wangzuzhang")
    assert len(pieces) > 1 and all(len(p.encode()) <= 2048 for p in pieces)
    assert "\n".join(pieces) == text
    assert split_text("短", 2048) == ["短"]
    assert all(len(p.encode()) <= 10 for p in split_text("长" * 50, 10))


async def test_a_retried_text_asks_for_the_duplicate_check_and_shows_once(
    client: WecomClient, fake: FakeWecom
) -> None:
    platform = WecomPlatform(client, CardRenderer(templates_dir()))
    text = "\n".join(f"第{i}行：售后单状态明细" for i in range(300))  # several pieces
    await platform.send_text("wangzuzhang", text, outbox_id=1)
    first = fake.texts_to("wangzuzhang")
    assert all("enable_duplicate_check" not in m for m in fake.messages)  # a first attempt
    # The worker died before recording the send; the retry's pieces are copies.
    await platform.send_text("wangzuzhang", text, outbox_id=1, retry=True)
    assert fake.texts_to("wangzuzhang") == first
    assert len(fake.deduplicated) == len(first)
    assert {m["duplicate_check_interval"] for m in fake.deduplicated} == {4 * 3600}
    # A member who asks twice gets the answer twice: first attempts never dedupe.
    await platform.send_text("wangzuzhang", "已收到", outbox_id=2)
    await platform.send_text("wangzuzhang", "已收到", outbox_id=3)
    assert fake.texts_to("wangzuzhang")[-2:] == ["已收到", "已收到"]
    # A retry of a text that never got through is delivered.
    await platform.send_text("wangzuzhang", "新的一条", outbox_id=4, retry=True)
    assert fake.texts_to("wangzuzhang")[-1] == "新的一条"


async def test_a_retried_digest_markdown_is_shown_once(
    client: WecomClient, fake: FakeWecom
) -> None:
    platform = WecomPlatform(client, CardRenderer(templates_dir()))
    await platform.send_markdown("wangzuzhang", "售后日报", "**昨日新增** 12 单")
    await platform.send_markdown("wangzuzhang", "售后日报", "**昨日新增** 12 单", retry=True)
    assert [m["msgtype"] for m in fake.messages] == ["markdown"]
    assert [m["msgtype"] for m in fake.deduplicated] == ["markdown"]


async def test_robots_post_markdown_and_text(
    fake: FakeWecom, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    client = make_client(fake, http)
    robot = WecomRobotPlatform(
        client, CardRenderer(templates_dir()), {"ops": "robot-key-ops", "gone": "old-key"}
    )
    card = approval()
    card = Card(**{**card.to_dict(), "buttons": card.buttons, "summary": "[点我](http://x)"})
    assert await robot.send_card("ops", card, card_id=1, outbox_id=1) == NOT_UPDATABLE
    await robot.send_text("ops", "新售后单待审批", outbox_id=2)
    (key1, markdown), (key2, text) = fake.robot
    assert key1 == key2 == "robot-key-ops"
    assert markdown["msgtype"] == "markdown" and "](" not in markdown["markdown"]["content"]
    assert text == {"msgtype": "text", "text": {"content": "新售后单待审批"}}
    assert fake.token_fetches == 0  # robots need no access token
    with pytest.raises(PermanentError):
        await robot.send_text("gone", "x", outbox_id=3)  # 93000: key revoked
    with pytest.raises(PermanentError):
        await robot.send_text("unknown", "x", outbox_id=4)
    fake.fail("webhook/send", errcode=45009)
    with pytest.raises(RetryableError):
        await robot.send_text("ops", "x", outbox_id=5)


async def test_a_long_robot_card_is_cut_to_what_the_webhook_accepts(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    robot = WecomRobotPlatform(
        make_client(fake, http), CardRenderer(templates_dir()), {"ops": "robot-key-ops"}
    )
    lines = tuple(f"宠物用品{i}（SKU-{i:04d}）×1  ¥{i}.00" for i in range(200))
    await robot.send_card(
        "ops", dataclasses.replace(approval(), lines=lines), card_id=1, outbox_id=1
    )
    ((_, markdown),) = fake.robot
    content = markdown["markdown"]["content"]
    assert len(content.encode()) <= 4096  # webhook markdown: at most 4096 bytes
    assert content.startswith("**售后审批 · RC-261123-0001**") and "SKU-0000" in content
    assert content.endswith("（内容过长，已截断，请在应用中查看）")
    with pytest.raises(PermanentError):  # the fake refuses what WeCom refuses
        await client_robot_send(
            robot, {"msgtype": "markdown", "markdown": {"content": "长" * 1400}}
        )


async def client_robot_send(robot: WecomRobotPlatform, message: dict[str, object]) -> None:
    await robot.client.robot_send("robot-key-ops", message)


async def test_build_platforms_enables_what_is_configured(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    renderer = CardRenderer(templates_dir())
    settings = WecomSettings(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SECRET, api_base=fake.url)
    assert build_platforms(WecomSettings(), renderer, lambda: http) == {}
    app, chat = build_platforms(settings, renderer, lambda: http).values()
    assert isinstance(app, WecomPlatform) and chat.name == "wecom-chat"  # roles' group chats
    fake.add_media("MEDIA_3", b"png-bytes", "image/png")
    assert (await app.fetch_media("MEDIA_3")).content == b"png-bytes"
    with_robots = dataclasses.replace(settings, robots={"ops": "robot-key-ops"})
    both = build_platforms(with_robots, renderer, lambda: http)
    assert set(both) == {"wecom", "wecom-chat", "wecom-robot"}


def _card(**changes: object) -> dict[str, object]:
    card: dict[str, object] = {
        "card_type": "button_interaction",
        "main_title": {"title": "售后审批"},
        "task_id": "rh-1-abc",
        "button_list": [{"text": "同意", "key": "k1", "style": 1}],
    }
    return {**card, **changes}


@pytest.mark.parametrize(
    "body",
    [
        {"agentid": str(AGENT_ID), "msgtype": "text", "text": {"content": "hi"}},
        {"msgtype": "text", "text": {"content": "长" * 700}},  # 2100 bytes
        {"msgtype": "template_card", "template_card": _card(task_id="rh 1")},
        {"msgtype": "template_card", "template_card": _card(button_list=[])},
        {"msgtype": "template_card", "template_card": _card(card_action={"type": 1})},
        {"msgtype": "template_card", "template_card": _card(card_type="text_notice")},
    ],
    ids=["agentid-str", "text-too-long", "task-id", "no-buttons", "action-no-url", "notice"],
)
async def test_the_fake_refuses_what_wecom_refuses(
    client: WecomClient, body: dict[str, object]
) -> None:
    with pytest.raises(WecomApiError):
        await client.call(
            "POST", "message/send", body={"touser": "wangzuzhang", "agentid": AGENT_ID, **body}
        )
