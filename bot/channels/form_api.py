"""A marketplace router API called by signed form POST (Taobao TOP, JD JOS).

What both routers share: the call is one form POST to the gateway; a timeout, a
dropped connection, HTTP 429/5xx or an answer that is not JSON is Transient; the
JSON carries either `error_response` (sorted by the subclass's `error`) or the
method's response object (found by the subclass's `result`). An expired session
or token (SessionExpired) alerts the admins once per outage and stays
retryable (bot/channels/api_errors.py). Subclasses sign the form (`signed`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from bot.channels.api_errors import SessionExpired, Transient
from bot.outbox import PermanentError

Alert = Callable[[str], Awaitable[None]]


class FormApi(ABC):
    def __init__(
        self,
        http: Callable[[], aiohttp.ClientSession],
        api_base: str,
        *,
        timeout: float,
        alert: Alert | None,
        expired: str,
    ) -> None:
        """`expired` is the alert sent (once) when the session or token has expired."""
        self.http, self.api_base = http, api_base
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.alert, self.expired, self._alerted = alert, expired, False

    @abstractmethod
    def signed(self, method: str, params: Mapping[str, Any]) -> dict[str, str]:
        """The form one call posts: the router's system parameters, signed."""

    @abstractmethod
    def error(self, method: str, error: Mapping[str, Any]) -> Exception:
        """The exception for the router's `error_response`."""

    @abstractmethod
    def result(self, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The method's response object in the answer, or None."""

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """POST one API call; its response object, or the error raised."""
        try:
            found = await self._call(method, params)
        except SessionExpired:
            if not self._alerted and self.alert is not None:
                self._alerted = True
                await self.alert(self.expired)
            raise
        self._alerted = False
        return found

    async def _call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        form = self.signed(method, params)
        try:
            async with self.http().post(self.api_base, data=form, timeout=self.timeout) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"{method}: {type(exc).__name__}: {exc}") from exc
        if status >= 500 or status == 429:
            raise Transient(f"{method}: HTTP {status}")
        try:
            body = json.loads(raw)
        except ValueError:
            raise Transient(f"{method}: HTTP {status}, not JSON: {raw[:120]!r}") from None
        if not isinstance(body, dict):
            raise PermanentError(f"{method}: unexpected answer {raw[:120]!r}")
        error = body.get("error_response")
        if isinstance(error, dict):
            raise self.error(method, error)
        found = self.result(method, body)
        if found is None:
            raise PermanentError(f"{method}: no response object in {raw[:120]!r}")
        return found
