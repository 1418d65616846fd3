"""Setup faults of a WeCom app: park every call for a backoff, tell the admins once.

A wrong or reset Secret, a CorpID typo, an egress IP missing from 企业可信IP, or an
app without a callback URL are not transient: retrying each delivery in turn only
hammers WeCom, and repeated gettoken calls with a wrong secret get the calling IP
banned for about an hour (WeCom errcode FAQ, im-protocols.md 7a). So:

- a refused gettoken (40001/40013/40091, missing corpid/secret 41002/41004) or any
  call refused with 60020 *parks* the whole client: calls fail fast with
  `WecomSetupError` (retryable: the outbox keeps the rows) without touching WeCom,
  for 60 s, doubling per failed probe up to 15 min; the first call after the window
  is the one probe;
- 43012 (a callback-capable card from an app without a callback URL) parks nothing
  (texts still go out) but its card is retried, not dead-lettered, so approvals are
  not lost while the operator sets the URL;
- each kind of fault alerts the admins once per outage, in Chinese, naming what to
  change; the outage ends (and may alert again later) when a call of that kind works.

Per process: N replicas each park and alert once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.outbox import RetryableError

log = logging.getLogger(__name__)

Alert = Callable[[str], Awaitable[None]]

# gettoken refusals that only an operator can fix (errcode page path/90455):
# 40001 不合法的secret参数, 40013 不合法的CorpID, 40091 secret不合法 (UNCONFIRMED whether
# gettoken ever answers it), 41002 缺少corpid参数, 41004 缺少secret参数.
CREDENTIAL_ERRORS = frozenset({40001, 40013, 40091, 41002, 41004})
IP_NOT_TRUSTED = 60020  # "not allow to access from your ip, ..., from ip: <ip>, ..."
NO_CALLBACK_URL = 43012
PARK_FIRST = 60.0
PARK_MOST = 15 * 60.0
_FROM_IP = re.compile(r"from ip:\s*([0-9A-Fa-f:.]+)")

SECRET, IP, CALLBACK = "secret", "ip", "callback"
HINTS = {  # for logs and the outbox's last_error
    SECRET: "check wecom.corp_id and wecom.secret (RETURNHUB__WECOM__SECRET)",
    IP: "add this server's egress IP to the app's 企业可信IP",
    CALLBACK: "set the app's callback URL (接收消息 → 设置API接收)",
}


class WecomSetupError(RetryableError):
    """WeCom refuses the app's setup; retried later, never dead-lettered at once."""

    def __init__(self, message: str, errcode: int) -> None:
        super().__init__(message)
        self.errcode = errcode


def kind_of(errcode: int, *, gettoken: bool) -> str | None:
    """Which setup fault `errcode` is, or None for an ordinary error."""
    if errcode == IP_NOT_TRUSTED:
        return IP
    if errcode == NO_CALLBACK_URL:
        return CALLBACK
    if gettoken and errcode in CREDENTIAL_ERRORS:
        return SECRET
    return None


def advice(kind: str, errcode: int, errmsg: str) -> str:
    """The admins' alert: what WeCom said and exactly what to change (Chinese)."""
    if kind == SECRET:
        setting = (
            "wecom.corp_id（环境变量 RETURNHUB__WECOM__CORP_ID）"
            if errcode in (40013, 41002)
            else "wecom.secret（环境变量 RETURNHUB__WECOM__SECRET）"
        )
        return (
            f"⚠ 企业微信拒绝发放 access_token（errcode {errcode}）：CorpID 或应用 Secret 不对，"
            f"或 Secret 已在管理后台重置。请核对 {setting}：Secret 在「应用管理 → 自建应用 → "
            "本应用 → Secret」查看，CorpID 在「我的企业 → 企业信息」。改好后重启 returnhub。"
            "在此之前企业微信消息暂停发送、不会丢失，每 1–15 分钟试一次。"
        )
    if kind == IP:
        found = _FROM_IP.search(errmsg)
        where = f"（企业微信看到的出口 IP：{found.group(1)}）" if found else ""
        return (
            f"⚠ 企业微信拒绝了本服务器的调用（errcode 60020，IP 不在企业可信IP 中）{where}。"
            "请在管理后台「应用管理 → 自建应用 → 本应用 → 企业可信IP」加入该 IP"
            "（须先设置好接收消息的回调 URL 或可信域名才能保存）。无需重启：消息暂停发送、"
            "不会丢失，每 1–15 分钟试一次，放行后自动恢复。"
        )
    return (
        "⚠ 企业微信拒绝发送审批卡片（errcode 43012，应用没有配置接收消息的回调 URL）。"
        "请在「应用管理 → 自建应用 → 本应用 → 接收消息 → 设置API接收」填写 "
        "https://你的域名/callbacks/wecom 以及与 wecom.token、wecom.encoding_aes_key 一致的 "
        "Token 和 EncodingAESKey 并保存。卡片会自动重试，保存后即可送达。"
    )


@dataclass
class _Park:
    until: float
    delay: float
    reason: str
    errcode: int


class OutageGate:
    """The client's shared state of setup faults; one per `WecomClient`."""

    def __init__(self, clock: Callable[[], float], alert: Alert | None = None) -> None:
        self.clock = clock
        self.alert = alert
        self._park: _Park | None = None
        self._alerted: set[str] = set()

    def check(self, path: str) -> None:
        """Raise at once while parked, so nothing reaches WeCom until the window ends."""
        park = self._park
        if park is not None and self.clock() < park.until:
            wait = park.until - self.clock()
            raise WecomSetupError(
                f"wecom {path}: paused {wait:.0f} s more after errcode {park.errcode}; "
                f"{HINTS[park.reason]}",
                park.errcode,
            )

    def fault(self, path: str, errcode: int, errmsg: str, kind: str) -> WecomSetupError:
        """Record a setup fault (parking the client unless it is 43012); the error to raise."""
        park, now = self._park, self.clock()
        if kind != CALLBACK and (park is None or now >= park.until):
            # Calls already in flight when the window opened answer alike: the first one
            # re-parks, the others leave that window as it is.
            delay = PARK_FIRST if park is None else min(park.delay * 2, PARK_MOST)
            self._park = _Park(now + delay, delay, kind, errcode)
            log.error(
                "wecom %s: errcode %d (%s); all calls paused %.0f s", path, errcode, kind, delay
            )
        return WecomSetupError(
            f"wecom {path}: errcode {errcode}: {errmsg}; {HINTS[kind]}", errcode
        )

    async def announce(self, exc: WecomSetupError, kind: str, errmsg: str) -> None:
        """Alert the admins unless this outage already did; never raises."""
        if kind in self._alerted or self.alert is None:
            return
        self._alerted.add(kind)
        try:
            await self.alert(advice(kind, exc.errcode, errmsg))
        except Exception:
            self._alerted.discard(kind)  # the next failure tries again
            log.exception("wecom: alerting the admins about errcode %d failed", exc.errcode)

    def recovered(self, *kinds: str) -> None:
        """A call of these kinds worked: unpark, and let a later outage alert again."""
        if self._park is not None and self._park.reason in kinds:
            log.warning("wecom: %s fault cleared, calls resume", self._park.reason)
            self._park = None
        self._alerted.difference_update(kinds)
