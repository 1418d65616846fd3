"""`returnhub bench --soak` with tiny samples: the table's shape and the load's effects.

Never a speed nor the verdict itself (a shared machine makes short samples noisy):
each sample served its paced requests without errors, the server's RSS and open file
descriptors were read from /proc, the intake created cases, CS lead cards were
clicked, and the table prints one row per sample and one verdict per figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bot.bench import soak_report
from tests.conftest import pg_or_skip

SAMPLES = 4  # three chances to click a card the sample before delivered


def run_soak(*extra: str) -> dict[str, Any]:
    proc = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-c", "import sys, bot.cli; sys.exit(bot.cli.main())", "bench",
         "--soak", "--minutes", str(SAMPLES), "--sample-seconds", "1", "--rate", "30",
         "--connections", "4", "--json", *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{SAMPLES}/{SAMPLES} soak sample {SAMPLES}" in proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def check(result: dict[str, Any]) -> None:
    samples = result["samples"]
    assert [s["sample"] for s in samples] == list(range(1, SAMPLES + 1))
    for s in samples:
        assert s["requests"] > 0 and s["errors"] == 0, s
        assert s["rss_mib"] > 0 and s["open_fds"] > 0 and s["outbox_pending"] >= 0
        assert 0 < s["p50_ms"] <= s["p99_ms"]
    assert result["cases_at_end"] > 1_000  # the seeded history and the soak's intake
    assert result["cards_clicked"] >= 1
    assert set(result["verdict"]) == {"rss_mib", "open_fds", "outbox_pending", "p99_ms"}
    assert all(isinstance(v["flat"], bool) for v in result["verdict"].values())
    lines = soak_report.table(result).splitlines()
    assert lines[0].startswith("returnhub bench --soak") and "load average" in lines[0]
    rows = [ln for ln in lines if ln.split()[:1] in ([str(n)] for n in range(1, SAMPLES + 1))]
    assert len(rows) == SAMPLES and all(len(r.split()) == 9 for r in rows)
    verdicts = [ln for ln in lines if ln.rstrip().endswith(("flat", "GROWING"))]
    assert len(verdicts) == 4


def test_soak_on_sqlite() -> None:
    result = run_soak()
    assert result["engine"] == "sqlite"
    check(result)


@pytest.mark.pg
def test_soak_on_postgresql() -> None:
    result = run_soak("--db", pg_or_skip())
    assert result["engine"] == "postgresql"
    check(result)


def test_the_verdict_compares_the_last_third_with_the_first() -> None:
    flat = [{"rss_mib": 100 + n % 2, "open_fds": 20, "outbox_pending": 0, "p99_ms": 30.0}
            for n in range(9)]  # fmt: skip
    growing = [dict(s, rss_mib=100 + 10 * n) for n, s in enumerate(flat)]
    assert all(v["flat"] for v in soak_report.verdict(flat).values())
    judged = soak_report.verdict(growing)
    assert not judged["rss_mib"]["flat"] and judged["open_fds"]["flat"]
    assert (judged["rss_mib"]["first_third"], judged["rss_mib"]["last_third"]) == (110, 170)
