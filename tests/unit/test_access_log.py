"""The access log never carries a credential, whatever form the request gave it in."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Response

from bot.web.access_log import AccessLog, redact

T = "s3cretT0ken"


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        (f"/console?token={T}", "/console?token=***"),
        (f"/x?a=1&TOKEN={T}&b=2", "/x?a=1&TOKEN=***&b=2"),
        (f"/cgi?access_token={T}&corpsecret={T}", "/cgi?access_token=***&corpsecret=***"),
        (f"/x?%74oken={T}", "/x?***"),  # the name percent-encoded
        (f"/x?%54%4F%4B%45%4E={T}", "/x?***"),  # all of it, upper case
        (f"/x?a=1;token={T}", "/x?a=1;token=***"),  # ; separates parameters too
        (f"/x?token={T}&token={T}x&Token={T}", "/x?token=***&token=***&Token=***"),
        (f"/x?token=%73%33cret{T}", "/x?token=***"),  # an encoded value
        (f"/x?token%3D{T}", "/x?***"),  # the value hidden in an encoded name
        (f"/x?refresh_token={T}&client_secret={T}", "/x?refresh_token=***&client_secret=***"),
        (f"/x?Authorization=Bearer%20{T}", "/x?Authorization=***"),
        (f"/x?api_key={T}&apikey={T}&key={T}", "/x?api_key=***&apikey=***&key=***"),
        (f"/console/login?code={T}", "/console/login?code=***"),  # a member's sign-in code
        (f"/x?password={T}&session={T}", "/x?password=***&session=***"),
        (f"/x?tok%65n={T}&a=%00", "/x?***&a=%00"),
        ("/callbacks/wecom?msg_signature=ab&nonce=1", "/callbacks/wecom?msg_signature=ab&nonce=1"),
        ("/api/cases?status=approved&limit=5", "/api/cases?status=approved&limit=5"),
        ("/healthz", "/healthz"),
    ],
)
def test_credentials_never_reach_the_log(target: str, logged: str) -> None:
    assert redact(target) == logged
    assert T not in redact(target)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {T}"},
        {"Authorization": f"bearer {T}"},
        {"Authorization": f"Basic {T}"},
        {"Authorization": T},
        {"Cookie": f"returnhub_member={T}"},
        {"Proxy-Authorization": f"Bearer {T}"},
    ],
)
def test_the_logger_writes_the_redacted_line_and_no_headers(
    caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    logger = logging.getLogger("test.access")
    access = AccessLog(logger, "")
    request = make_mocked_request("GET", f"/console?%74oken={T}&token={T}", headers=headers)
    with caplog.at_level(logging.INFO, logger="test.access"):
        access.log(request, Response(), 0.002)
    assert T not in caplog.text
    assert '"GET /console?***&token=***"' in caplog.text
