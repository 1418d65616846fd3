from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Response

from bot.web.access_log import AccessLog, redact


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/console?token=s3cret", "/console?token=***"),
        ("/x?a=1&TOKEN=s3cret&b=2", "/x?a=1&TOKEN=***&b=2"),
        ("/cgi?access_token=t&corpsecret=c", "/cgi?access_token=***&corpsecret=***"),
        ("/callbacks/wecom?msg_signature=ab&nonce=1", "/callbacks/wecom?msg_signature=ab&nonce=1"),
    ],
)
def test_credentials_never_reach_the_log(path: str, logged: str) -> None:
    assert redact(path) == logged


def test_the_logger_writes_the_redacted_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.access")
    access = AccessLog(logger, "")
    with caplog.at_level(logging.INFO, logger="test.access"):
        access.log(make_mocked_request("GET", "/console?token=s3cret"), Response(), 0.002)
    assert "s3cret" not in caplog.text and "/console?token=***" in caplog.text
