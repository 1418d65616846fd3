"""DingTalk custom group robots (群自定义机器人): signed webhooks, notices only.

`POST {oapi_base}/robot/send?access_token=…&timestamp=…&sign=…` (加签, see
dingtalk_sign.py). A custom robot cannot receive clicks (its buttons only open
URLs), so cards go out as markdown without buttons and are never updated.

Each robot takes 20 messages a minute; past that DingTalk answers errcode 130101
and throttles the robot for 10 minutes. The outbox's per-destination limit keeps
us under 20 a minute (destination `dingtalk-robot:<name>`, ROBOT_PREFIX); should
130101 come anyway (another sender on the same robot), the robot is parked for
10 minutes: its sends fail fast as retryable, without calling DingTalk, and the
outbox delivers them after the penalty, nothing lost. The webhook token and
secret stay in settings; the outbox row names the robot only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from bot.cards import Card, CardRenderer, defang
from bot.outbox import PermanentError, RetryableError
from bot.platforms.dingtalk_client import DingtalkClient
from bot.platforms.dingtalk_errors import ROBOT_TOO_FAST, DingtalkBusy
from bot.platforms.dingtalk_sign import signed_webhook
from bot.platforms.outbound import split_text

log = logging.getLogger(__name__)

ROBOT_PLATFORM = "dingtalk-robot"
ROBOT_PREFIX = f"{ROBOT_PLATFORM}:"
ROBOT_PER_MINUTE = 20
PENALTY_SECONDS = 600.0
TEXT_BYTES = 4000  # UNCONFIRMED: DingTalk documents no byte limit for robot text
NOT_UPDATABLE = "-"


class DingtalkRobotPlatform:
    """Custom group robots by name; `clock` (seconds) times the 10-minute penalty."""

    name = ROBOT_PLATFORM

    def __init__(
        self,
        client: DingtalkClient,
        renderer: CardRenderer,
        tokens: Mapping[str, str],
        secrets: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.tokens = dict(tokens)
        self.secrets = dict(secrets)
        self.clock = clock
        self.wall_ms = wall_ms
        self._parked: dict[str, float] = {}

    async def _post(self, robot: str, message: Mapping[str, object]) -> None:
        token = self.tokens.get(robot)
        if not token:
            raise PermanentError(f"no dingtalk robot named {robot!r} in config")
        until = self._parked.get(robot, 0.0)
        if self.clock() < until:
            raise RetryableError(
                f"dingtalk robot {robot}: throttled (130101), "
                f"{int(until - self.clock())} s of the penalty left"
            )
        url = signed_webhook(
            self.client.oapi_base, token, self.secrets.get(robot, ""), self.wall_ms()
        )
        try:
            await self.client.post_oapi(url, "robot/send", message)
        except DingtalkBusy as exc:
            if exc.code == str(ROBOT_TOO_FAST):
                self._parked[robot] = self.clock() + PENALTY_SECONDS
                log.warning("dingtalk robot %s throttled: parked for 10 minutes", robot)
            raise

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        await self._post(recipient, self.renderer.render(ROBOT_PLATFORM, defang(card)))
        return NOT_UPDATABLE

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        return None  # a robot message cannot change; the decision shows on the app's cards

    async def send_markdown(
        self, recipient: str, title: str, text: str, *, retry: bool = False
    ) -> None:
        """A custom robot takes no uploaded picture (only a public URL in markdown):
        the digest goes to it as markdown alone."""
        await self._post(
            recipient, {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        )

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        for piece in split_text(text, TEXT_BYTES):
            await self._post(recipient, {"msgtype": "text", "text": {"content": piece}})
