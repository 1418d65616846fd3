"""`[roles.X] wecom_chat_id`: the role's group chat hears of each card, by appchat/send.

Group chats take no template_card (doc path/90248), so the chat gets a markdown
notice naming the assignees while each of them gets the interactive card; a group
message cannot be edited, so the decision follows as one more line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import create_app
from bot.config_locate import ConfigError
from bot.settings import RoleRoute
from bot.settings_load import CHAT_ID_RULE, CHAT_NEEDS_APP, load
from storage.db import Database
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, with_wecom
from tests.http.test_wecom_flow import LEADS, button, case_status, open_case, post
from tests.support import Client, FakeClock, MakeClient, make_settings

CHAT = "csleadchat01"


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom(clock=clock.timestamp)) as server:
        server.add_chat(CHAT, {*LEADS, "xiaomei"})
        yield server


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeWecom, aiohttp_client: MakeClient
) -> Client:
    settings = with_wecom(make_settings(tmp_path, db.url, console=False), fake.url)
    settings = dataclasses.replace(settings, roles={"cs_lead": RoleRoute(wecom_chat_id=CHAT)})
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def test_a_roles_chat_gets_a_notice_and_each_assignee_the_card(
    client: Client, clock: FakeClock, fake: FakeWecom
) -> None:
    case_id = await open_case(client, clock, fake)
    for lead in LEADS:  # the interactive card still goes to each member
        (card,) = fake.cards_to(lead)
        assert card["card_type"] == "button_interaction"
    (notice,) = fake.chat_messages
    assert notice["chatid"] == CHAT and notice["msgtype"] == "markdown"
    text = notice["markdown"]["content"]
    assert case_id in text and "132.00" in text
    assert "请 王组长、刘组长 在应用消息中处理" in text
    assert "同意" not in text  # no buttons in a group: they would do nothing


async def test_the_decision_follows_in_the_chat_as_a_new_line(
    client: Client, clock: FakeClock, fake: FakeWecom
) -> None:
    case_id = await open_case(client, clock, fake)
    signer = CallbackSigner(clock.timestamp)
    xml, _ = signer.click(fake, "wangzuzhang", button(fake.cards_to("wangzuzhang")[-1], "同意"))
    assert await post(client, signer.seal(xml)) == (200, "")
    await settle(client.app)
    assert await case_status(client, case_id) == "refund_pending"
    notice, decided = fake.chat_texts(CHAT)
    assert case_id in decided and "已由 王组长" in decided and "同意" in decided
    assert len(fake.updates) == len(LEADS)  # the members' cards, as before


async def test_without_a_chat_id_nothing_goes_to_a_group(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeWecom, aiohttp_client: MakeClient
) -> None:
    settings = with_wecom(make_settings(tmp_path, db.url, console=False), fake.url)
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    await open_case(client, clock, fake)
    assert fake.chat_messages == [] and "appchat/send" not in fake.calls


def test_a_chat_id_is_checked_when_the_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "returnhub.toml"
    path.write_text('[roles.cs_lead]\nwecom_chat_id = "cs-lead chat"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert caught.value.errors == [
        f"{path}:2: roles.cs_lead.{CHAT_ID_RULE}",
        f"{path}:2: roles.cs_lead.{CHAT_NEEDS_APP}",
    ]
    path.write_text('[roles.cs_lead]\nwecom_chat_id = "csleadchat01"\n', encoding="utf-8")
    app = {"RETURNHUB__WECOM__CORP_ID": "ww1", "RETURNHUB__WECOM__SECRET": "s"}
    with pytest.raises(ConfigError) as caught:  # the rest of [wecom] is missing, not the chat
        load(path, env=app)
    assert not [e for e in caught.value.errors if "wecom_chat_id" in e]
