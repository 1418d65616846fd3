"""Template injection in the dispute scripts, end to end in the console.

Two ways in: what buyers and agents supply (an item name from the channel, a
`名称=值` typed in chat) is data, filled into the reply as text and never run;
and what an operator writes into a script file runs in jinja2's sandbox
(handlers/script_sandbox.py), so `{{ ''.__class__ ... }}` in a scenario is a
refused scenario, not a look inside the process. The sandbox's own escapes,
budgets and filters are tests/unit/test_script_sandbox.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_app
from bot.appkeys import WORKER
from bot.settings import config_dir
from storage.db import Database
from tests.http.generic_cases import request
from tests.support import Client, FakeClock, MakeClient, make_settings, post_generic

INJECTED = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for x in range(10**9) %}x{% endfor %}"
EVIL_SCENARIO = (
    'title = "内部"\naliases = ["evil"]\napplies = "x"\n'
    "reply = \"{{ ''.__class__.__mro__[1].__subclasses__() }}{{ 商品.__class__ }}\"\n"
    'sop = ["x"]\n'
)


@pytest.fixture
async def console(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> Client:
    scripts = tmp_path / "scripts"
    shutil.copytree(config_dir() / "scripts", scripts)
    (scripts / "内部.toml").write_text(EVIL_SCENARIO, encoding="utf-8")
    settings = make_settings(tmp_path, db.url, demo=True)
    files = dataclasses.replace(settings.files, scripts=str(scripts))
    settings = dataclasses.replace(settings, files=files)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def send(client: Client, user: str, text: str) -> str:
    body = {"user": user, "text": text, "uuid": str(uuid.uuid4())}
    assert (await client.post("/console/api/send", json=body)).status == 200
    await client.app[WORKER].drain()
    resp = await client.get("/console/api/messages", params={"user": user, "after": "0"})
    messages: list[dict[str, Any]] = (await resp.json())["messages"]
    return str([m for m in messages if m["direction"] == "out"][-1]["text"])


@pytest.mark.usefixtures("errors")
async def test_buyer_and_agent_text_is_filled_in_never_run(
    console: Client, clock: FakeClock
) -> None:
    item = {"sku": "SKU-1", "name": INJECTED[:120], "qty": 1, "unit_price": "132.00"}
    status, answer = await post_generic(console, request(1, "132.00", items=[item]), clock)
    assert status == 202, answer
    reply = await send(
        console, "小美", f"/话术 缺配件 {answer['case_id']} 配件={{{{7*7}}}} 扣款=35"
    )
    assert INJECTED[:120] in reply and "{{7*7}}" in reply  # shown as typed
    assert "<class" not in reply and "话术模板有误" not in reply


@pytest.mark.usefixtures("errors")
async def test_an_operator_script_reaching_for_python_is_refused(
    console: Client, clock: FakeClock
) -> None:
    status, answer = await post_generic(console, request(1, "132.00"), clock)
    assert status == 202, answer
    reply = await send(console, "小美", f"/话术 evil {answer['case_id']}")
    assert reply.startswith("「内部」话术模板有误，请联系管理员") and "is unsafe" in reply
    assert "<class" not in reply and "object at 0x" not in reply
