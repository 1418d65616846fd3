"""Paths that try to leave their folder, sent as raw request lines (an HTTP client
would normalise `..` away before the server saw it) to a real server in demo mode,
so no login hides what the route itself does: `../`, encoded and double-encoded
dots and slashes, backslashes, absolute paths and NUL, on the static and evidence
file routes. Each is a 4xx that shows nothing but an error; the evidence store
names files by digest alone, whatever content type or name it is handed.

(The well-formed-but-unknown digest and the plain `../` spellings are also in
tests/http/test_console_photos.py; tests/unit/test_evidence.py covers the store.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import create_app
from storage.db import Database
from storage.evidence import EvidenceStore
from tests.http.test_edge import serving
from tests.security.conftest import every_endpoint_settings
from tests.support import SERVER_SECRET

SHA = "0" * 64
TAILS = [
    "../../returnhub.toml", "..%2f..%2freturnhub.toml", "%2e%2e/%2e%2e/returnhub.toml",
    "%2e%2e%2f%2e%2e%2freturnhub.toml", "%252e%252e%252freturnhub.toml",
    "..%5c..%5creturnhub.toml", "..\\..\\returnhub.toml", "%2fetc%2fpasswd", "/etc/passwd",
    "console.js%00.html", "console.js%00", f"{SHA}%00", f"{SHA}/../{SHA}", f"{SHA}%2f..%2f{SHA}",
    "....//....//returnhub.toml", "%c0%ae%c0%ae/returnhub.toml",
]  # fmt: skip
ROUTES = ["/console/static/", "/dashboard/static/", "/console/api/evidence/",
          "/api/cases/RC-261123-0001/evidence/", "/console/", "/"]  # fmt: skip


@pytest.fixture
async def port(db: Database, tmp_path: Path) -> AsyncIterator[int]:
    settings = every_endpoint_settings(tmp_path, db.url, demo=True)
    async with serving(create_app(settings, background=False)) as bound:
        yield bound


async def get(port: int, target: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.usefixtures("errors")
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # routing, not storage
async def test_no_path_leaves_its_folder(port: int) -> None:
    for route in ROUTES:
        for tail in TAILS:
            status, body = await get(port, route + tail)
            assert 400 <= status < 500, (route + tail, status)
            assert SERVER_SECRET.encode() not in body and b"[database]" not in body
            assert b"root:" not in body and b"{%" not in body  # /etc/passwd, a template


@pytest.mark.parametrize("content_type", ["image/../../../etc", "../x", "image/jpeg/../../a",
                                          "\x00", "text/html\r\nX: y"])  # fmt: skip
def test_the_store_files_under_its_root_whatever_the_type(
    tmp_path: Path, content_type: str
) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    stored = store.put(b"photo", content_type)
    files = [p for p in (tmp_path / "evidence").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.startswith(stored.sha256)
    assert files[0].resolve().is_relative_to((tmp_path / "evidence").resolve())
    assert store.read(stored.sha256, content_type) == b"photo"
