"""The access log, without credentials: `?token=` (console login) and friends are masked.

aiohttp's default format logs the full query string, which would put the API
token in every log line of a console opened with `?token=`.
"""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

_SECRET_PARAM = re.compile(r"(?i)([?&](?:token|access_token|key|secret|corpsecret)=)[^&]*")


def redact(path_qs: str) -> str:
    return _SECRET_PARAM.sub(r"\1***", path_qs)


class AccessLog(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            response.body_length,
            time,
        )
