"""`returnhub serve` with no `server.secret`, killed with SIGKILL and started again: the
card sent before the kill still approves its case after the restart, because the
secret that signed it was generated once and kept in the database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.support import GENERIC_SECRET, make_settings, return_body, sign_generic
from tests.test_serve import free_port

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def call(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Any:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    if data is not None and not headers:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def until(probe: Callable[[], T | None], what: str) -> T:
    """Poll `probe` (bounded: 30 s) until it returns something."""
    for _ in range(300):
        try:
            found = probe()
        except (OSError, urllib.error.URLError):
            found = None
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class Server:
    """One `returnhub serve` process on the test's config, logging to a file."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.tmp_path, self.port, self.runs = tmp_path, port, 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RETURNHUB__", "RETURNHUB_C"))
        }
        self.env["PYTHONPATH"] = str(ROOT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Path:
        self.runs += 1
        log = self.tmp_path / f"serve-{self.runs}.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", "import sys, bot.cli; sys.exit(bot.cli.main())",
                 "serve", "--config", str(self.tmp_path / "returnhub.toml"),
                 "--port", str(self.port)],
                cwd=self.tmp_path, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        until(lambda: call(self.url("/healthz")), "serve to start")
        return log

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def test_a_card_sent_before_a_sigkill_restart_approves_after_it(tmp_path: Path) -> None:
    make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path}/returnhub.db", server_secret="", demo=True
    )
    server = Server(tmp_path, free_port())
    first_log = server.start()
    try:
        item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}
        raw = json.dumps(return_body(amount="132.00", items=[item]), ensure_ascii=False).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback only
            server.url("/webhooks/generic"),
            data=raw,
            headers=sign_generic(GENERIC_SECRET, raw, int(time.time())),
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            assert resp.status == 202
            case_id = json.loads(resp.read())["case_id"]

        def card_token() -> str | None:
            chat = call(server.url("/console/api/messages?user=" + urllib.parse.quote("王组长")))
            for message in chat["messages"]:
                if message["type"] == "card" and message["card"]["case_id"] == case_id:
                    return str(message["card"]["buttons"][0]["token"])
            return None

        token = until(card_token, "the approval card in 王组长's console")
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL

        second_log = server.start()
        click = {"user": "王组长", "token": token, "label": "同意", "uuid": str(uuid.uuid4())}
        call(server.url("/console/api/click"), click)

        def decided() -> dict[str, Any] | None:
            case: dict[str, Any] = call(server.url(f"/api/cases/{case_id}"))
            return case if case["steps"][0]["state"] != "pending" else None

        case = until(decided, "the case to be decided")
        assert case["steps"][0]["state"] == "approved" and case["steps"][0]["actor"] == "王组长"
        assert case["status"] != "pending_approval"
        assert server.stop(signal.SIGTERM) == 0
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGKILL)
    first, second = first_log.read_text(), second_log.read_text()
    assert "已生成并存入数据库" in first and "generated one and stored it" in first
    assert "使用数据库中保存的密钥" in second and "using the one stored in the database" in second
    assert "for this process" not in first + second
    assert "token not ours" not in second
