"""`returnhub demo` as a user runs it: it serves /healthz and /console, and SIGTERM stops
it cleanly (drain, stop the clock, flush, exit 0)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        return resp.status, resp.read()


def test_demo_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, bot.cli; sys.exit(bot.cli.main())",
            "demo",
            "--port",
            str(port),
            "--var",
            str(tmp_path / "var"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = None
        for _ in range(200):  # bounded wait for start-up (migrations, demo seed)
            try:
                health = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        assert health == (200, b'{"status": "ok", "db": "ok"}')
        status, page = get(f"http://127.0.0.1:{port}/console")
        assert status == 200 and "returnhub" in page.decode()
        status, cases = get(f"http://127.0.0.1:{port}/api/cases")
        assert status == 200 and b"RC-" in cases
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "clock stopped" in out
    assert (tmp_path / "var" / "returnhub.db").is_file()
