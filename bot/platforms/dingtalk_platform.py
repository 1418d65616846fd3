"""The outbox's DingTalk adapters: the app robot's 1:1 chats and a role's group.

`DingtalkPlatform` (destination `dingtalk:<staffId>`) sends advanced interactive
cards to the robot's 1:1 chat (IM_ROBOT) and texts through the member's
`sessionWebhook` while it is valid, the robot OpenAPI after.
`DingtalkGroupPlatform` (`dingtalk-group:<openConversationId>`) puts one card in a
role's group (IM_GROUP). A card's `platform_ref` is its `outTrackId`
(bot.cards.send_id); an update replaces every copy of that instance.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.cards import Card, CardRenderer, send_id
from bot.outbox import RetryableError
from bot.platforms import dingtalk_cards
from bot.platforms.dingtalk_client import DingtalkClient, FileData
from bot.platforms.dingtalk_errors import DingtalkApiError
from bot.platforms.dingtalk_events import NAME
from bot.platforms.dingtalk_sessions import Sessions
from bot.platforms.outbound import PNG, Upload, split_text

log = logging.getLogger(__name__)

GROUP_PLATFORM = "dingtalk-group"
TEXT_BYTES = 4000  # UNCONFIRMED: no documented byte limit for robot text
Payload = dict[str, Any]


class DingtalkPlatform:
    """The outbox's DingTalk adapter: cards and texts in the robot's 1:1 chats."""

    name = NAME

    def __init__(self, client: DingtalkClient, renderer: CardRenderer, sessions: Sessions) -> None:
        self.client = client
        self.renderer = renderer
        self.sessions = sessions

    def _deliver_model(self, recipient: str) -> Payload:
        settings = self.client.settings
        return {
            "openSpaceId": f"dtv1.card//IM_ROBOT.{recipient}",
            "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": settings.robot_code},
            "userIdType": 1,
        }

    def _create_extra(self) -> Payload:
        return {"imRobotOpenSpaceModel": {"supportForward": False}}

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        """createAndDeliver; every recipient's `deliverResults` entry must say success.

        The outTrackId is the same on every attempt of this send, so a retry after a
        failed recipient (or a lost answer) finds the instance and delivers it again
        instead of creating a second card. DingTalk's refusal of a known outTrackId
        is UNCONFIRMED in wording: any refusal that names it is read so.
        """
        settings = self.client.settings
        ref = send_id(card, card_id, outbox_id)
        deliver = {"outTrackId": ref, **self._deliver_model(recipient)}
        body: Payload = {
            **deliver,
            **self._create_extra(),
            "cardTemplateId": settings.card_template_id,
            "cardData": {"cardParamMap": dingtalk_cards.param_map(self.renderer, card)},
            "callbackType": "STREAM" if settings.mode == "stream" else "HTTP",
        }
        if settings.mode != "stream":
            body["callbackRouteKey"] = settings.callback_route_key
        try:
            failed = await self.client.create_and_deliver(body)
        except DingtalkApiError as exc:
            if "outtrackid" not in str(exc).lower():
                raise
            log.info("dingtalk card %s exists already: delivering it again", ref)
            failed = await self.client.deliver(deliver)
        if failed:
            space, error = failed[0]
            raise RetryableError(f"dingtalk card {ref} not delivered to {space}: {error}")
        return ref

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        """PUT card/instances: the copy shows who decided and when, without buttons."""
        if not platform_ref:
            raise RetryableError(f"dingtalk card {card_id} for {recipient} is not shown yet")
        await self.client.update_card(platform_ref, dingtalk_cards.param_map(self.renderer, card))
        return None

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        """The member's session webhook while valid (a reply in the chat they wrote in),
        else the robot's 1:1 chat through the OpenAPI."""
        for piece in split_text(text, TEXT_BYTES):
            url = self.sessions.url_for(recipient)
            if url is not None:
                message = {"msgtype": "text", "text": {"content": piece}}
                try:
                    await self.client.post_oapi(url, "sendBySession", message)
                    continue
                except DingtalkApiError as exc:
                    log.info("dingtalk session reply to %s refused (%s): OpenAPI", recipient, exc)
                    self.sessions.forget(recipient)
            await self.client.send_to_users([recipient], "sampleText", {"content": piece})

    async def send_markdown(
        self, recipient: str, title: str, text: str, *, retry: bool = False
    ) -> None:
        """The robot's 1:1 chat, `sampleMarkdown` ({title, text})."""
        await self.client.send_to_users(
            [recipient], "sampleMarkdown", {"title": title, "text": text}
        )

    async def send_image(self, recipient: str, png: bytes) -> None:
        """Upload the PNG (oapi media/upload) and send `sampleImageMsg` naming its
        media_id as `photoURL`. UNCONFIRMED: DingTalk documents photoURL as a picture
        URL; the media_id form is what its community answers use."""
        media_id = await self.client.upload_media(Upload("media", "digest.png", png, PNG))
        await self.client.send_to_users([recipient], "sampleImageMsg", {"photoURL": media_id})

    async def fetch_media(self, media_id: str) -> FileData:
        """A picture a robot message named by `downloadCode`."""
        return await self.client.download(media_id)


class DingtalkGroupPlatform(DingtalkPlatform):
    """One card in a role's group (IM_GROUP, `[roles.X] dingtalk_conversation_id`):
    whoever holds the role clicks it there, and the one copy updates for everyone."""

    name = GROUP_PLATFORM

    def _deliver_model(self, recipient: str) -> Payload:
        return {
            "openSpaceId": f"dtv1.card//IM_GROUP.{recipient}",
            "imGroupOpenDeliverModel": {"robotCode": self.client.settings.robot_code},
            "userIdType": 1,
        }

    def _create_extra(self) -> Payload:
        return {"imGroupOpenSpaceModel": {"supportForward": False}}

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        for piece in split_text(text, TEXT_BYTES):
            await self.client.send_to_group(recipient, "sampleText", {"content": piece})
