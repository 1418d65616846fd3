"""WeCom server API on aiohttp: one cached access token per app, bounded retries.

wechatpy's `WeChatClient` is synchronous (`requests`) and, on 40001/40014/42001,
refetches the token and recurses with no bound. Here:

- the token is cached until ~5 minutes before `expires_in` runs out, and fetched
  under an `asyncio.Lock`, so N concurrent sends cause one `gettoken`;
- a call rejected for its token refreshes it ONCE (unless a concurrent call
  already did) and is retried ONCE; a second rejection is a `RetryableError`,
  left to the outbox's backoff;
- every failure maps onto the outbox's two kinds: `RetryableError` (network,
  timeouts, 5xx, -1 busy, frequency limits, token trouble) or `PermanentError`
  (invalid user, card validation, used/expired response_code, anything else);
- setup faults (refused secret or CorpID, 60020 untrusted IP, 43012 no callback URL)
  are `WecomSetupError`s (retryable): they park the client and alert the admins
  once per outage (wecom_outage.py), so a wrong secret costs one gettoken per
  backoff window, not one per waiting delivery;
- 42014 for a well-formed task_id means WeCom already has that card (a retry of a
  send whose answer was lost): delivered, not failed.

Error texts never carry the access token, the corp secret or a robot key: the
outbox stores them in `last_error`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.outbox import PermanentError, RetryableError
from bot.platforms.outbound import Upload, exchange, http_status, json_object
from bot.platforms.wecom_errors import SetupFault, TokenRejected, WecomApiError, check, scrub
from bot.platforms.wecom_outage import (
    CALLBACK,
    IP,
    SECRET,
    Alert,
    OutageGate,
    WecomSetupError,
    kind_of,
)
from bot.settings import WecomSettings

log = logging.getLogger(__name__)

REFRESH_EARLY = 300.0  # seconds before expires_in that a token counts as stale
MAX_JSON = 1 << 20
DEDUPE_SECONDS = 4 * 3600  # message/send's duplicate_check_interval at most (default 1800)
# "taskid has existed or empty or exceed max len" (message/send, quoted from a WeCom
# developer-community answer): for an id that is neither empty nor too long, "existed".
TASK_ID_EXISTS = 42014
_TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")  # what the doc allows (<=128 bytes)


@dataclass(frozen=True, slots=True)
class SentMessage:
    msgid: str
    response_code: str
    duplicate: bool = False  # WeCom already had this task_id: sent before, answer lost


class WecomClient:
    """The WeCom API of one self-built app. `http()` returns the app's shared session.

    `alert(text)` tells the admins about a setup fault (once per outage); `clock`
    (seconds) times the token's life and the setup-fault backoff.
    """

    def __init__(
        self,
        settings: WecomSettings,
        http: Callable[[], aiohttp.ClientSession],
        *,
        clock: Callable[[], float] = time.monotonic,
        alert: Alert | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock
        self.gate = OutageGate(clock, alert)
        self.base = settings.api_base.rstrip("/") + "/cgi-bin/"
        self._token = ""
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    # --- access token -------------------------------------------------------------------

    async def access_token(self, *, stale: str | None = None) -> str:
        """The cached token, fetched when missing, expiring, or equal to `stale`.

        `stale` is the token a call was just refused with: if another task has
        refreshed it meanwhile, its new token is reused instead of fetching again.
        While a setup fault parks the client, waiters fail fast without a gettoken.
        """
        async with self._lock:
            usable = self._token and self.clock() < self._fresh_until
            if usable and (stale is None or self._token != stale):
                return self._token
            self.gate.check("gettoken")
            params = {"corpid": self.settings.corp_id, "corpsecret": self.settings.secret}
            status, _, raw = await self.fetch("GET", "gettoken", params=params)
            data = self.decode("gettoken", status, raw)
            errcode = data.get("errcode", 0)
            kind = kind_of(errcode, gettoken=True) if isinstance(errcode, int) else None
            if kind is None:
                return self._keep_token(data)
            fault = SetupFault(errcode, scrub(str(data.get("errmsg", "")))[:200], kind)
        # Outside the lock: the alert writes to the database, waiters need not wait on it.
        raise await self.fault("gettoken", fault)

    def _keep_token(self, data: Mapping[str, Any]) -> str:
        try:
            data = check("gettoken", data)
        except (TokenRejected, PermanentError) as exc:
            raise RetryableError(
                f"wecom gettoken refused ({exc}); check wecom.corp_id and RETURNHUB__WECOM__SECRET"
            ) from None
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RetryableError("wecom gettoken: answer has no access_token")
        expires_in = float(data.get("expires_in") or 7200)
        margin = min(REFRESH_EARLY, expires_in / 2)
        self._token, self._fresh_until = token, self.clock() + expires_in - margin
        self.gate.recovered(SECRET)
        log.info("wecom access token refreshed (valid %d s)", int(expires_in))
        return token

    async def fault(self, path: str, fault: SetupFault) -> WecomSetupError:
        """Park (unless 43012), alert the admins once per outage; the error to raise."""
        error = self.gate.fault(path, fault.errcode, fault.errmsg, fault.kind)
        await self.gate.announce(error, fault.kind, fault.errmsg)
        return error

    # --- JSON API -----------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        upload: Upload | None = None,
    ) -> Mapping[str, Any]:
        """Call `/cgi-bin/<path>` with the token; one refresh and one retry on token errors."""
        self.gate.check(path)
        token = await self.access_token()
        for attempt in (1, 2):
            status, _, raw = await self.fetch(
                method,
                path,
                params={**(params or {}), "access_token": token},
                body=body,
                upload=upload,
            )
            data = self.decode(path, status, raw)
            errcode = data.get("errcode")
            if not (isinstance(errcode, int) and kind_of(errcode, gettoken=False) == IP):
                self.gate.recovered(IP)  # WeCom answered this IP: it is trusted (again)
            try:
                return check(path, data)
            except SetupFault as fault:
                raise await self.fault(path, fault) from None
            except TokenRejected as exc:
                if attempt == 2:
                    raise RetryableError(
                        f"wecom {path}: token refused again after a refresh (errcode {exc})"
                    ) from None
                log.warning("wecom %s: token refused (errcode %s); refreshing once", path, exc)
                token = await self.access_token(stale=token)
        raise AssertionError("unreachable")

    async def send(
        self, touser: str, msgtype: str, content: Mapping[str, Any], *, dedupe: bool = False
    ) -> SentMessage:
        """`message/send` to one member; an invalid user is a permanent failure.
        `dedupe`: WeCom drops this message if the same one reached `touser` within
        DEDUPE_SECONDS (its `enable_duplicate_check`; whether it compares with
        messages sent without the flag is UNCONFIRMED, so at worst a copy shows)."""
        body = {
            "touser": touser,
            "msgtype": msgtype,
            "agentid": self.settings.agent_id,
            msgtype: content,
        }
        if dedupe:
            body |= {"enable_duplicate_check": 1, "duplicate_check_interval": DEDUPE_SECONDS}
        try:
            data = await self.call("POST", "message/send", body=body)
        except WecomApiError as exc:
            task_id = content.get("task_id") if msgtype == "template_card" else None
            if exc.errcode != TASK_ID_EXISTS or not _TASK_ID.fullmatch(str(task_id or "")):
                raise
            # Our task_id is well-formed, so 42014 can only mean WeCom has this card: an
            # earlier attempt was accepted and its answer lost. Its code is gone with it;
            # the next click on the card brings a fresh one.
            log.info("wecom card %s to %s was already delivered (42014)", task_id, touser)
            return SentMessage("", "", duplicate=True)
        if msgtype == "template_card":
            self.gate.recovered(CALLBACK)
        # WeCom matches userids case-insensitively and may echo them lowercased.
        invalid = str(data.get("invaliduser") or "").lower()
        if touser.lower() in invalid.split("|"):
            raise WecomApiError("message/send", 81013, f"invalid user {touser}")
        return SentMessage(str(data.get("msgid", "")), str(data.get("response_code", "")))

    async def send_text(self, touser: str, content: str, *, dedupe: bool = False) -> SentMessage:
        return await self.send(touser, "text", {"content": content}, dedupe=dedupe)

    async def send_markdown(
        self, touser: str, content: str, *, dedupe: bool = False
    ) -> SentMessage:
        return await self.send(touser, "markdown", {"content": content}, dedupe=dedupe)

    async def send_template_card(self, touser: str, card: Mapping[str, Any]) -> SentMessage:
        return await self.send(touser, "template_card", card)

    async def update_template_card(
        self,
        userids: list[str],
        response_code: str,
        *,
        card: Mapping[str, Any] | None = None,
        replace_name: str | None = None,
    ) -> None:
        """`message/update_template_card`: a whole new card, or just grey out the buttons.

        The response_code is single-use (and expires after 72 h): WeCom's refusal of a
        used one is permanent for this update.
        """
        body: dict[str, Any] = {
            "userids": userids,
            "agentid": self.settings.agent_id,
            "response_code": response_code,
        }
        if card is not None:
            body["template_card"] = card
        else:
            body["button"] = {"replace_name": replace_name or "已处理"}
        await self.call("POST", "message/update_template_card", body=body)
        self.gate.recovered(CALLBACK)

    async def upload_media(self, kind: str, upload: Upload) -> str:
        """`media/upload?type=image|file`: a temporary media_id (valid 3 days) that
        message/send's `image` takes; an image is at most 10 MB, JPG or PNG."""
        data = await self.call("POST", "media/upload", params={"type": kind}, upload=upload)
        media_id = data.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise RetryableError("wecom media/upload: answer has no media_id")
        return media_id

    # --- group robot ----------------------------------------------------------------------

    async def robot_send(self, key: str, message: Mapping[str, Any]) -> None:
        """`webhook/send?key=…`: no access token; 20 messages a minute per robot."""
        params = {"key": key}
        status, _, raw = await self.fetch("POST", "webhook/send", params=params, body=message)
        try:
            check("webhook/send", self.decode("webhook/send", status, raw))
        except TokenRejected as exc:
            raise WecomApiError("webhook/send", int(str(exc)), "robot key refused") from None

    # --- transport ----------------------------------------------------------------------

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_JSON,
        client_timeout: aiohttp.ClientTimeout | None = None,
        upload: Upload | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange under `/cgi-bin/`; transport failures are retryable."""
        return await exchange(
            self.http(),
            method,
            self.base + path,
            f"wecom {path}",
            scrub=scrub,
            params=params,
            body=body,
            headers=headers,
            limit=limit,
            client_timeout=client_timeout,
            upload=upload,
        )

    @staticmethod
    def http_status(path: str, status: int) -> None:
        http_status(f"wecom {path}", status)

    def decode(self, path: str, status: int, raw: bytes) -> Mapping[str, Any]:
        http_status(f"wecom {path}", status)
        return json_object(f"wecom {path}", raw)
