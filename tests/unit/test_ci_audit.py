"""`.ci/audit.py`: a dependency audit that never passes without advisory data.

The advisory services are pointed at a loopback server that answers 404, as this
machine's PyPI mirror does for per-release JSON: the audit must say NOT RUN and
exit 3, never "no known vulnerabilities". A saved pip-audit report is judged: a
vulnerability with a fix fails, one without a fix is listed and passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "audit.py"


class NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        self.send_error(404)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def nowhere() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


def test_without_a_reachable_advisory_service_the_audit_is_not_a_pass(nowhere: str) -> None:
    env = {"RETURNHUB_AUDIT_PYPI": nowhere + "/pypi", "RETURNHUB_AUDIT_OSV": nowhere + "/osv",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = audit(env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "DEPENDENCY AUDIT NOT RUN" in done.stdout and "not a pass" in done.stdout
    assert f"{nowhere}/pypi/pip/" in done.stdout and "404" in done.stdout
    assert "No known vulnerabilities" not in done.stdout


def report(tmp_path: Path, fixes: list[str]) -> str:
    vuln = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fix_versions": fixes,
            "description": "example"}  # fmt: skip
    body = {"dependencies": [{"name": "aiohttp", "version": "3.0.0", "vulns": [vuln]},
                             {"name": "jinja2", "version": "3.1.6", "vulns": []}],
            "fixes": []}  # fmt: skip
    path = tmp_path / "report.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_a_vulnerability_with_a_fix_fails_the_audit(tmp_path: Path) -> None:
    done = audit("--from-json", report(tmp_path, ["3.9.4"]))
    assert done.returncode == 1
    assert "VULNERABLE aiohttp 3.0.0: PYSEC-2099-1, CVE-2099-0001; fixed in ['3.9.4']" in (
        done.stdout
    )
    assert "2 packages audited; 1 vulnerabilities with a fix, 0 without" in done.stdout


def test_a_vulnerability_without_a_fix_is_listed_and_passes(tmp_path: Path) -> None:
    done = audit("--from-json", report(tmp_path, []))
    assert done.returncode == 0
    assert "known, no fix yet: aiohttp 3.0.0: PYSEC-2099-1" in done.stdout
