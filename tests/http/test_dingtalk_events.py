"""DingTalk event subscription (`POST /callbacks/dingtalk/events`): pushes sealed with
dingtalk-sdk's own crypto and the app key as owner key; check_url answered with the
encrypted "success"; anything forged, stale or malformed refused with a reason."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from dingtalk.crypto import DingTalkCrypto

from bot.appkeys import CTX
from tests.fakes.dingtalk import (
    APP_KEY,
    CORP_ID,
    EVENT_AES_KEY,
    EVENT_TOKEN,
    FakeDingtalk,
    running,
)
from tests.fakes.dingtalk_callbacks import DingtalkSigner
from tests.support import Client, FakeClock, table_counts


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDingtalk]:
    async with running(FakeDingtalk(clock=lambda: clock.now.timestamp())) as server:
        yield server


@pytest.fixture
def signer(clock: FakeClock, fake: FakeDingtalk) -> DingtalkSigner:
    return DingtalkSigner(clock, fake)


async def push(client: Client, sealed: tuple[dict[str, str], bytes]) -> tuple[int, dict[str, str]]:
    query, body = sealed
    resp = await client.post("/callbacks/dingtalk/events", params=query, data=body)
    return resp.status, await resp.json()


def opened(answer: dict[str, str]) -> str:
    """What DingTalk reads from our answer, with dingtalk-sdk's crypto."""
    crypto = DingTalkCrypto(EVENT_TOKEN, EVENT_AES_KEY, APP_KEY)
    plain: str = crypto.decrypt_encrypt_str(
        answer["msg_signature"], answer["timeStamp"], answer["nonce"], answer["encrypt"]
    )
    return plain


async def test_check_url_is_answered_with_the_encrypted_success(
    dingtalk_client: Client, signer: DingtalkSigner
) -> None:
    status, answer = await push(dingtalk_client, signer.event({"EventType": "check_url"}))
    assert status == 200 and opened(answer) == "success"
    event = {"EventType": "user_add_org", "UserId": ["staff9"], "CorpId": CORP_ID}
    status, answer = await push(dingtalk_client, signer.event(event))
    assert status == 200 and opened(answer) == "success"


async def test_forged_stale_and_malformed_pushes_are_refused_and_store_nothing(
    dingtalk_client: Client, signer: DingtalkSigner, clock: FakeClock
) -> None:
    client = dingtalk_client
    before = await table_counts(client.app[CTX].db)
    # Sealed for the corp id (what dingtalk-sdk's own clients do): not our app key.
    status, answer = await push(client, signer.event({"EventType": "check_url"}, owner=CORP_ID))
    assert status == 403 and "owner key" in answer["error"]
    stale = (clock.timestamp() - 7200) * 1000
    status, answer = await push(client, signer.event({"EventType": "x"}, timestamp=stale))
    assert status == 403 and "replay window" in answer["error"]
    query, body = signer.event({"EventType": "check_url"})
    status, answer = await push(client, ({**query, "signature": "0" * 40}, body))
    assert (status, answer["error"]) == (403, "signature mismatch")
    status, answer = await push(client, ({**query, "nonce": "bad nonce!"}, body))
    assert status == 400
    status, answer = await push(client, (query, b"not json"))
    assert status == 400
    status, answer = await push(client, (query, json.dumps({"encrypt": 5}).encode()))
    assert (status, answer["error"]) == (400, "body has no encrypt")
    status, answer = await push(client, (query, json.dumps({"other": "x"}).encode()))
    assert status == 400
    assert await table_counts(client.app[CTX].db) == before
