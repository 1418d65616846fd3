"""The chat platforms' settings: [wecom] and [dingtalk]."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WecomSettings:
    corp_id: str = ""
    agent_id: int = 0
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = "https://qyapi.weixin.qq.com"
    replay_window_seconds: int = 300  # WeCom documents none for callbacks: ours
    # Group robots for notices: name -> webhook key (a secret: set it from the env,
    # RETURNHUB__WECOM__ROBOTS__<NAME>); each allows 20 messages a minute.
    robots: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.corp_id and self.secret)


@dataclass(frozen=True)
class DingtalkSettings:
    app_key: str = ""
    app_secret: str = ""
    robot_code: str = ""
    mode: str = "http"  # "http" | "stream"
    card_template_id: str = ""
    callback_route_key: str = "returnhub"
    event_token: str = ""
    event_aes_key: str = ""
    api_base: str = "https://api.dingtalk.com"
    oapi_base: str = "https://oapi.dingtalk.com"
    replay_window_seconds: int = 3600  # robot callbacks: DingTalk's own rule is 1 hour
    # Custom group robots (群自定义机器人) for notices: name -> webhook access_token, and
    # name -> its 加签 secret ("SEC…"); both secrets: set them from the env.
    robots: dict[str, str] = field(default_factory=dict)
    robot_secrets: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.app_key and self.app_secret)
