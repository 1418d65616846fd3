"""Who may read and act, on every protected route at once: the read API, the
export, evidence files, the dashboard and the console.

Without a credential, with a wrong or mangled one, or with one in the wrong
place (a query string, the wrong scheme, an unsigned cookie), nothing is served.
In demo mode the same routes are open to a direct connection from this machine,
and closed again the moment any proxy header (bot/web/auth.py PROXY_HEADERS) or a
foreign Host says the request was relayed: a reverse proxy on the same machine
must not turn "loopback" into "anyone".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import ClientResponse

from bot.app import create_app
from bot.web.auth import PROXY_HEADERS, SESSION_COOKIE
from storage.db import Database
from tests.http.generic_cases import request, submit
from tests.security.conftest import API_TOKEN, every_endpoint_settings
from tests.support import Client, FakeClock, MakeClient

SHA = "ab" * 32
READS = ["/api/cases", "/api/cases/{id}", "/api/export/cases", f"/api/cases/{{id}}/evidence/{SHA}",
         "/dashboard", "/console", "/console/api/members", "/console/api/messages?user=小美",
         f"/console/api/evidence/{SHA}"]  # fmt: skip
ACTS = ["/console/api/send", "/console/api/click", "/console/api/photo?user=小美&uuid=x"]
WRONG: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {API_TOKEN}x"},
    {"Authorization": f"Bearer {API_TOKEN[:-1]}"},
    {"Authorization": f"Basic {API_TOKEN}"},
    {"Authorization": API_TOKEN},
    {"Authorization": "Bearer "},
    {"Cookie": f"{SESSION_COOKIE}=小美"},
    {"Cookie": f"{SESSION_COOKIE}=1.小美.deadbeef"},
    {"Cookie": "returnhub_dashboard=1"},
]


async def app_client(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient, *, demo: bool
) -> tuple[Client, str]:
    settings = every_endpoint_settings(tmp_path, db.url, demo=demo)
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    return client, await submit(client, clock, request(1, "300.00"))


async def refused(resp: ClientResponse) -> bool:
    """401/403; or, for the dashboard page, its login form instead of the figures."""
    if resp.status in (401, 403):
        return True
    return resp.url.path == "/dashboard" and 'action="/dashboard/login"' in await resp.text()


@pytest.mark.usefixtures("errors")
async def test_no_wrong_or_misplaced_credential_is_served(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client, case_id = await app_client(db, tmp_path, clock, aiohttp_client, demo=False)
    for route in READS + ACTS:
        path = route.replace("{id}", case_id)
        for headers in WRONG:
            method = client.post if route in ACTS else client.get
            resp = await method(path, headers=headers, allow_redirects=False, json={})
            assert await refused(resp), (path, headers, resp.status)
        if route in READS:
            query = await client.get(f"{path}{'&' if '?' in path else '?'}token={API_TOKEN}")
            assert await refused(query), path
    # The read token reads, and can never act as a member.
    assert (await client.get(f"/api/cases/{case_id}", headers=bearer())).status == 200
    for route in ACTS:
        assert (await client.post(route, headers=bearer(), json={})).status == 403


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.mark.usefixtures("errors")
async def test_demo_opens_to_loopback_only_and_no_proxy_header_fools_it(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client, case_id = await app_client(db, tmp_path, clock, aiohttp_client, demo=True)
    for route in READS:
        path = route.replace("{id}", case_id)
        direct = await client.get(path)
        assert direct.status in (200, 404), (path, direct.status)  # 404: no such evidence
        relayed = [{name: "203.0.113.9"} for name in PROXY_HEADERS] + [
            {"Host": "bot.example.com"}, {"Host": "127.0.0.1.nip.io"},
            {"Forwarded": "for=127.0.0.1"}, {"X-Forwarded-For": "127.0.0.1"},
        ]  # fmt: skip
        for headers in relayed:
            resp = await client.get(path, headers=headers, allow_redirects=False)
            assert await refused(resp), (path, headers, resp.status)
