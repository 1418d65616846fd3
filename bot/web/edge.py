"""What every request passes through before and after its route: the HTTP edge's rules.

The middleware, in order:

1. A path or query parameter holding a control character (NUL above all: PostgreSQL
   refuses it, and the driver error would be a 500) is refused with 400 before any
   route, so no route can forget the check.
2. The request head must arrive within `server.idle_timeout_seconds` (see
   `server_kwargs`), and the body within `server.body_timeout_seconds`: a client that sends
   headers and then a trickle (or nothing) gets 408 and the connection is closed,
   instead of holding a slot for as long as it likes. The bound is armed on the
   request's stream, so every route's body read obeys it, whoever wrote the read.
3. What the client did wrong is answered as a client error: a body aiohttp cannot
   decode (bad Content-Encoding, broken chunking) is 400; a client that went away
   mid-body is logged at INFO and counted as 499 (nginx's "client closed request"),
   never as a 500 with a traceback that would page someone.
4. A database that does not answer within its bounds (storage/db.py) is 503 with
   Retry-After, so the sender retries later, and logged as a WARNING. Routes that
   catch their intake's failure answer it the same way through `cannot_store`.

aiohttp rejects some requests before any application code runs (a malformed
request line, header or chunk size) and logs each as an ERROR with a traceback.
`ProtocolLog` is the logger given to aiohttp's protocol (`server_kwargs`): it logs
those as WARNING without a traceback and counts them, as what they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from bot.appkeys import CTX, METRICS
from bot.web.access_log import AccessLog
from bot.web.body import unsafe_text
from bot.writer import Closed
from storage.db import is_unavailable

log = logging.getLogger(__name__)

R = TypeVar("R", bound=web.StreamResponse)
CLIENT_CLOSED = 499
RETRY_AFTER_SECONDS = "5"
UNPARSED = "unparsed"  # route label for requests aiohttp refused before routing
UNAVAILABLE = "database unavailable; retry later; 数据库暂不可用，请稍后重试"


class BodyTimeout(TimeoutError):
    """The request body did not arrive within the bound (or was abandoned).

    A TimeoutError because aiohttp, after the answer, reads what is left of a body for
    a while ("lingering") and ends that quietly on a timeout, but logs any other
    exception from the stream as an unhandled ERROR.
    """


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        text=json.dumps({"error": message}, ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def retry_later(message: str) -> web.Response:
    """503 with Retry-After: what a route answers when it cannot store a request now
    (shutting down, the database unavailable), so the sender retries instead of
    giving up."""
    return _error(503, message, **{"Retry-After": RETRY_AFTER_SECONDS})


def cannot_store(exc: Exception, what: str) -> web.Response:
    """The answer to a route whose intake raised `exc` for `what` (e.g. "generic webhook
    <key>"): always a retry-later, since nothing was stored. A writer shutting down or a
    database that is unavailable is the sender's to wait out (a WARNING); anything else
    is a bug, logged with its traceback."""
    if isinstance(exc, Closed):
        log.warning("%s refused: shutting down", what)
        return retry_later("shutting down; retry later; 服务正在重启，请稍后重试")
    if is_unavailable(exc):
        log.warning("%s refused: database unavailable (%s: %s)",
                    what, type(exc).__name__, str(exc)[:200])  # fmt: skip
        return retry_later(UNAVAILABLE)
    log.error("%s: could not be stored", what, exc_info=exc)
    return retry_later("could not store the request; retry later; 暂时无法保存，请稍后重试")


def _closing(request: web.Request, response: R) -> R:
    """The rest of the body is not wanted: the connection cannot carry another request."""
    if not request.content.is_eof():
        request.content.set_exception(BodyTimeout("body abandoned"))
    response.force_close()
    return response


def bad_parameter(request: web.Request) -> str | None:
    """The first path or query value the database must never see, described; else None."""
    if unsafe_text(request.path):
        return "path"
    for key, value in request.query.items():
        if unsafe_text(key) or unsafe_text(value):
            return f"query parameter {key[:40]!r}" if not unsafe_text(key) else "query"
    return None


def _arm_body_deadline(request: web.Request) -> asyncio.TimerHandle | None:
    if not request.body_exists or request.content.is_eof():
        return None
    seconds = request.app[CTX].settings.server.body_timeout_seconds

    def expire() -> None:
        if not request.content.is_eof():
            request.content.set_exception(BodyTimeout(f"body not complete after {seconds} s"))

    return asyncio.get_running_loop().call_later(seconds, expire)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Parameter check, body deadline, and client/database faults as 4xx/503 (see above)."""
    if (where := bad_parameter(request)) is not None:
        log.info("%s %s refused: control character in %s", request.method, request.path, where)
        return _error(400, f"control character in {where}; 参数含有非法字符")
    deadline = _arm_body_deadline(request)
    try:
        response = await handler(request)
    except Exception as exc:
        if (answer := _fault(request, exc)) is None:
            raise
        return answer
    finally:
        if deadline is not None:
            deadline.cancel()
    if request.content.exception() is not None:
        # The route caught a body fault and answered it (WeCom's 400): still drop the
        # rest of that body, or aiohttp's lingering read logs the fault as unhandled.
        _closing(request, response)
    return response


def _fault(request: web.Request, exc: Exception) -> web.Response | None:
    """The answer to a fault that is the client's or the database's; None for a bug."""
    where = f"{request.method} {request.path} from {request.remote}"
    if isinstance(exc, BodyTimeout):
        log.warning("%s: %s", where, exc)
        return _closing(request, _error(408, f"{exc}; 请求体传输超时"))
    if isinstance(exc, web.RequestPayloadError):
        log.warning("%s: bad body: %s", where, str(exc.__cause__ or exc).replace("\n", " "))
        return _closing(
            request, _error(400, "body could not be read (bad encoding); 请求体无法解码")
        )
    if isinstance(exc, ConnectionResetError) and _client_gone(request):
        log.info("%s: the client went away mid-request", where)
        return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
    if is_unavailable(exc):
        log.warning("%s: database unavailable (%s: %s); answered 503",
                    where, type(exc).__name__, str(exc)[:200])  # fmt: skip
        return retry_later(UNAVAILABLE)
    return None


class ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's protocol logger, with its own request rejections logged as client errors.

    aiohttp logs a request its parser refused (and answers 400 itself) through
    `exception()`; such a request never reaches the middleware or the counter.
    """

    def __init__(self, app: web.Application) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.app = app

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if not isinstance(exc, HttpProcessingError):
            super().log(level, msg, *args, **kwargs)
            return
        status = exc.code or 400
        reason = (exc.message or type(exc).__name__).replace("\n", " ")[:200]
        remote = args[0] if args else "?"
        self.logger.log(
            min(level, logging.WARNING), "request from %s refused (%d): %s", remote, status, reason
        )
        if (metrics := self.app.get(METRICS)) is not None:
            counter = metrics.http_requests.labels(
                method="other", route=UNPARSED, status=str(status)
            )
            counter.inc()


def server_kwargs(app: web.Application) -> dict[str, Any]:
    """What the runner (web.run_app, AppRunner, the test server) must be given for `app`.

    aiohttp has no deadline for a request's head, only the keep-alive timer, which
    it arms when a connection opens and after each answer, and which closes the
    connection if no complete head arrived by then: that is the head's deadline.
    Its default differs by runner (run_app 75 s, AppRunner about an hour), so it is
    set here, from `server.idle_timeout_seconds`, for every way the app is served.
    """
    return {
        "access_log_class": AccessLog,
        "logger": ProtocolLog(app),
        "keepalive_timeout": app[CTX].settings.server.idle_timeout_seconds,
    }
