"""No configured secret, and nothing derived from one, reaches a log line or an
answer: a real server (with its access log) takes every endpoint's good and
forged request, credentials in headers and in query strings, sign-in attempts,
and then tries to deliver what it queued to platforms that refuse the connection
(the error path is where a URL with `?access_token=` would leak). The start-up
report is read the same way. At DEBUG, as RETURNHUB_LOG_LEVEL=DEBUG logs: that is
how aiosqlite's statement log (with the server secret as a parameter) was found.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import create_app
from bot.appkeys import WORKER
from bot.cli import QUIET
from bot.platforms.dingtalk import card_key
from bot.settings import Settings
from bot.startup_report import log_report
from storage.db import Database
from tests.http.test_edge import serving
from tests.security.conftest import API_TOKEN, every_endpoint_settings
from tests.security.endpoints import endpoints
from tests.support import FakeClock

SECRET_FIELDS = ("secret", "token", "aes_key", "password")
ROBOTS = "robots"  # DingTalk custom robots by name: each value is an access token


def says_secret(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == ROBOTS or any(word in parts[-1] for word in SECRET_FIELDS)


def secrets_in(value: Any, name: str = "") -> set[str]:
    """Every string in `value` (settings, nested) held under a name that says secret."""
    found: set[str] = set()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            found |= secrets_in(getattr(value, f.name), f.name)
    elif isinstance(value, dict):
        for key, item in value.items():
            found |= secrets_in(item, f"{name}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secrets_in(item, name)
    elif isinstance(value, str) and len(value) >= 8 and says_secret(name):
        found.add(value)
    return found


def known_secrets(settings: Settings) -> set[str]:
    found = secrets_in(settings) | {card_key(settings.dingtalk.app_secret)}
    assert {API_TOKEN, settings.server.secret, settings.wecom.encoding_aes_key} <= found
    assert len(found) >= 12, found  # every platform's and channel's
    return found


def leaks(texts: list[str], secrets: set[str]) -> list[str]:
    return [t[:200] for t in texts if any(s in t for s in secrets)]


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter()
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(formatter.formatException(record.exc_info))
    return lines


async def test_no_secret_in_any_log_line_or_answer(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    settings = every_endpoint_settings(tmp_path, db.url)
    secrets = known_secrets(settings)
    answers: list[str] = []
    caplog.set_level(logging.DEBUG)  # as RETURNHUB_LOG_LEVEL=DEBUG, with the CLI's policy:
    for name, level in QUIET.items():
        caplog.set_level(level, logger=name)
    app = create_app(settings, clock=clock, background=False)
    async with serving(app) as port, aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:

        async def call(method: str, path: str, **kw: Any) -> None:
            async with http.request(method, path, allow_redirects=False, **kw) as resp:
                answers.append(f"{resp.status} {dict(resp.headers)} {await resp.text()}")

        for endpoint in endpoints(clock):
            for build in (endpoint.good, endpoint.forged):
                req = build()
                await call(req.method, req.path, data=req.body or None, params=req.params,
                           headers=req.headers)  # fmt: skip
        for target in (f"/api/cases?token={API_TOKEN}", f"/api/cases?%74oken={API_TOKEN}",
                       f"/dashboard?api_key={API_TOKEN}", "/console/login?code=abc"):  # fmt: skip
            await call("GET", target)
        await call("GET", "/api/cases", headers={"Authorization": f"Bearer {API_TOKEN}x"})
        await call("POST", "/dashboard/login", data={"token": API_TOKEN + "x"})
        await call("POST", "/dashboard/login", data={"token": API_TOKEN})
        await call("POST", "/console/login", data={"code": settings.server.secret})
        await app[WORKER].drain()  # every queued delivery fails: nothing listens there
        assert any("127.0.0.1:9" in line or "connect" in line.lower() for line in logged(caplog))
    log_report(settings, logging.getLogger("returnhub.report"))
    assert leaks(logged(caplog), secrets) == []
    assert leaks(answers, secrets) == []


def test_the_check_can_fail(caplog: pytest.LogCaptureFixture) -> None:
    """The search is not vacuous: a secret in a log line is found."""
    logging.getLogger("returnhub.test").warning("token is %s", API_TOKEN)
    assert leaks(logged(caplog), {API_TOKEN})
