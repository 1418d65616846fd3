"""`returnhub bench --quick` runs every scenario end to end and reports it whole.

Only the shape and the effects are asserted (requests served, no errors, the
outbox drained, clicks closed cards); never a speed: figures belong in
docs/performance.md, measured on a quiet machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from bot.bench.ceiling import bare_app
from bot.bench.load import Req, drive
from tests.conftest import pg_or_skip

SCENARIOS = ("intake_distinct", "intake_distinct@200", "wecom_text", "wecom_click")


def run_bench(*extra: str) -> dict[str, Any]:
    proc = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-c", "import sys, bot.cli; sys.exit(bot.cli.main())", "bench",
         "--quick", "--json", "--client", "python", "--connections", "8", *extra],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "13/13" in proc.stderr  # the progress line reached the end
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def check(result: dict[str, Any]) -> None:
    for name in SCENARIOS:
        row = result["ab"][name]
        for target in ("bare", "server"):
            assert row[target]["requests"] > 0, (name, target)
            assert row[target]["errors"] == 0, (name, target, row)
            assert row[target]["cpu_ms_per_request"] > 0, (name, target, row)
        assert row["ratio"] > 0 and row["cpu_ratio"] > 0
    for name in ("healthz", "api_cases"):
        assert result["during_intake"][name]["requests"] > 0
        assert result["during_intake"][name]["errors"] == 0
    assert result["outbox"]["drain_seconds"] is not None  # the outbox emptied after the load
    assert result["effects"]["wecom_text"]["handled_after_seconds"] is not None
    clicks = result["effects"]["wecom_click"]
    assert clicks["cards_clicked"] > 0 and clicks["cards_closed"] > 0
    assert [row["cases"] for row in result["scale"]] == [200, 2000]
    for row in result["scale"]:
        assert row["intake"]["requests"] > 0 and row["intake"]["errors"] == 0
        assert row["intake"]["cpu_ms_per_request"] > 0
        assert row["api"]["requests"] > 0 and row["rss_mib"] > 0
        assert row["dashboard"]["requests"] > 0 and row["dashboard"]["errors"] == 0
    assert [(t["timers"], t["due"]) for t in result["sla_tick"]] == [(1000, 50), (5000, 50)]


def test_quick_bench_on_sqlite() -> None:
    result = run_bench()
    assert result["engine"] == "sqlite"
    check(result)


@pytest.mark.pg
def test_quick_bench_on_postgresql() -> None:
    result = run_bench("--db", pg_or_skip())
    assert result["engine"] == "postgresql"
    check(result)


@pytest.mark.parametrize("client", ["python", "wrk"])
async def test_both_load_clients_count_answers_alike(client: str, aiohttp_server: Any) -> None:
    """The two drivers agree on what a request, an error and a round are."""
    if client == "wrk" and not shutil.which("wrk"):
        if os.environ.get("CI"):
            pytest.fail("wrk is not installed in CI (make installs it as root)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    server = await aiohttp_server(bare_app())
    base = f"http://127.0.0.1:{server.port}"
    good = [Req("POST", f"/webhooks/x?n={n}", (("Content-Type", "text/plain"),), b"x" * n)
            for n in range(1, 50)]  # fmt: skip
    stats = await drive(client, base, good, connections=4, seconds=1.0)
    assert stats.requests > 0 and stats.errors == 0
    assert 0 < stats.p50_ms <= stats.p99_ms <= stats.max_ms
