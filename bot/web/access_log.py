"""The access log, without credentials: `?token=`, sign-in codes and friends are masked.

aiohttp's default format logs the full query string, which would put the API
token in every log line of a client that passed it as `?token=`. Matching the raw
text is not enough: `?%74oken=`, `?TOKEN=`, `?a=1;token=` and `?token%3D…` all name a
credential once decoded, so each parameter's name is percent-decoded (and `+` read
as a space) before it is compared, `;` separates parameters as `&` does, and every
occurrence is masked. The line shows the request target as sent (still encoded,
so a decoded control character cannot forge a log line), with each secret value
replaced by `***`. Headers (Authorization, Cookie) are never logged at all.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

# A parameter is a credential when its decoded, lower-cased name is one of these, or
# contains one of the words after them (refresh_token, client_secret, x-api-key...).
SECRET_NAMES = frozenset({"key", "code", "sig", "signin", "session", "auth", "pwd"})
SECRET_WORDS = ("token", "secret", "password", "passwd", "authorization", "apikey", "api_key")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_SEPARATOR = re.compile(r"([&;])")


def _is_secret(name: str) -> bool:
    folded = name.strip().casefold()
    return folded in SECRET_NAMES or any(word in folded for word in SECRET_WORDS)


def _redact_pair(pair: str) -> str:
    raw_name, eq, _ = pair.partition("=")
    name = unquote_plus(raw_name)
    if not _is_secret(name.partition("=")[0]):
        return pair
    # `token%3Dabc` decodes to the name "token=abc": the value hides in the name.
    return f"{raw_name}=***" if _SAFE_NAME.fullmatch(raw_name) else "***"


def redact(target: str) -> str:
    """`target` (path and query, as sent) with the value of every credential parameter masked."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = _SEPARATOR.split(query)
    return path + "?" + "".join(p if p in ("&", ";") else _redact_pair(p) for p in parts)


class AccessLog(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            redact(request.raw_path),
            response.status,
            response.body_length,
            time,
        )
