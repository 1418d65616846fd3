"""The senders and the server of the SIGKILL burst test (tests/faults/test_kill_burst.py).

`Request` is one signed POST a sender must get acknowledged: a generic webhook
(signed as CONTRACT.md says) or a WeCom callback (sealed by CallbackSigner). `send`
retries it until a 2xx comes back, as the OMS and WeCom retry; `Target` is the real
`returnhub serve` process, started, SIGKILLed and started again on one port.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.oms import FakeOms
from tests.fakes.wecom import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeWecom
from tests.fakes.wecom_callbacks import CallbackSigner
from tests.support import GENERIC_SECRET, make_settings, return_body, sign_generic
from tests.test_serve import free_port
from tests.test_workers import Server, until

GIVE_UP = 60.0  # seconds a sender keeps retrying one request (a bound, not a speed)


@dataclass
class Request:
    """One thing a sender must get acknowledged; `acked` is when (None: not yet)."""

    what: str  # "webhook" | "duplicate" | "click" | "scan"
    path: str
    headers: dict[str, str]
    body: bytes
    acked: str | None = None  # "before" | "after" the kill


def webhook(n: int, amount: str, **extra: Any) -> bytes:
    body = return_body(
        event_id=f"burst-evt-{n}", external_id=f"BURST-AS{n:04d}", order_id=f"BURST-SO{n:04d}",
        amount=amount, buyer={"ref": f"buyer-{n}", "nick": "喵星人"},
        items=[{"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": amount}],
        **extra,
    )  # fmt: skip
    return json.dumps(body, ensure_ascii=False).encode()


def generic(raw: bytes, what: str = "webhook") -> Request:
    headers = sign_generic(GENERIC_SECRET, raw, int(time.time()))
    return Request(what, "/webhooks/generic", headers, raw)


def wecom(signer: CallbackSigner, inner: str, what: str) -> Request:
    query, body = signer.seal(inner)
    path = "/callbacks/wecom?" + "&".join(f"{k}={v}" for k, v in query.items())
    return Request(what, path, {"Content-Type": "text/xml"}, body)


def write_config(tmp_path: Path, url: str, oms: FakeOms, fake: FakeWecom) -> str:
    fast = {"base_delay_seconds": 0.2, "max_delay_seconds": 1.0, "tick_seconds": 0.2,
            "lease_seconds": 3}  # fmt: skip
    make_settings(tmp_path, url, callback_url=oms.url, outbox=fast)
    path = tmp_path / "returnhub.toml"
    with path.open("a", encoding="utf-8") as out:
        out.write(
            f'\n[wecom]\ncorp_id = "{CORP_ID}"\nagent_id = {AGENT_ID}\nsecret = "{SECRET}"\n'
            f'token = "{TOKEN}"\nencoding_aes_key = "{AES_KEY}"\napi_base = "{fake.url}"\n'
        )
    return str(path)


class Target:
    """The server under test: started, killed and started again on one port."""

    def __init__(self, tmp_path: Path, config: str) -> None:
        self.tmp_path, self.config, self.port = tmp_path, config, free_port()
        self.servers: list[Server] = []
        self.base = f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        args = ("serve", "--config", self.config, "--port", str(self.port), "--workers", "1")
        self.servers.append(await Server.start(self.tmp_path, *args))

        async def healthy() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(self.base + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await until(healthy, "serve to answer /healthz")

    async def kill(self) -> int:
        server = self.servers[-1]
        server.proc.send_signal(signal.SIGKILL)
        return await server.wait()

    async def close(self) -> None:
        for server in self.servers:
            await server.kill()

    @property
    def output(self) -> str:
        return "\n".join(s.output for s in self.servers)


async def send(
    http: aiohttp.ClientSession, base: str, req: Request, killed: asyncio.Event
) -> None:
    """POST `req` until it is acknowledged (2xx): refused connections, resets and 5xx
    are what a sender sees while the server is dead or restarting, and it retries."""
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        try:
            async with http.post(base + req.path, data=req.body, headers=req.headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    req.acked = "after" if killed.is_set() else "before"
                    return
                assert resp.status >= 500, (req.what, resp.status, await resp.text())
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{req.what} {req.path} was never acknowledged")
