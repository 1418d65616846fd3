"""DingTalk event subscription (事件订阅) over HTTP: verify first, then decrypt.

DingTalk POSTs `{"encrypt": "…"}` with `signature` (or `msg_signature`),
`timestamp` (or `timeStamp`) and `nonce` in the query. The signature is SHA-1 over
the sorted token, timestamp, nonce and encrypt; the plaintext is AES-256-CBC
(`random16 | len | msg | owner key`). dingtalk-sdk's `DingTalkCrypto` does the AES
part, but compares signatures with `!=` and checks no timestamp; and its own
clients build it with the corp id, while a self-built app's new-style
subscription puts the **app key** at the tail (DingTalk-Callback-Crypto). So, in
order: query shape and replay window on an injectable clock, signature in
constant time, then dingtalk-sdk decrypts and checks the app key.

Every answer (the `check_url` probe included) must be the encrypted "success"
within 1.5 s, or the push counts as failed: `success()` builds it.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from dingtalk.core.exceptions import InvalidCorpIdOrSuiteKeyException
from dingtalk.crypto import DingTalkCrypto

from bot.platforms.inbound import CallbackRejected
from bot.web.body import json_value

MAX_ENCRYPT = 256 * 1024
_SIGNATURE = re.compile(r"[0-9a-f]{40}")
_TIMESTAMP = re.compile(r"\d{9,16}")
_NONCE = re.compile(r"[0-9A-Za-z_\-]{1,64}")


def event_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    parts = sorted(p.encode() for p in (token, timestamp, nonce, encrypt))
    return hashlib.sha1(b"".join(parts)).hexdigest()  # noqa: S324 - DingTalk's algorithm


def _seconds(timestamp: str) -> float:
    """DingTalk sends milliseconds; the official Python sample seconds: take either."""
    value = int(timestamp)
    return value / 1000 if value > 10**11 else float(value)


class EventCrypto:
    """One app's event-subscription crypto (token, aes key, app key) with a replay window."""

    def __init__(
        self,
        token: str,
        aes_key: str,
        app_key: str,
        *,
        now: Callable[[], float],
        window_seconds: int,
    ) -> None:
        try:
            self._crypto = DingTalkCrypto(token, aes_key, app_key)
        except (AssertionError, binascii.Error, ValueError):
            raise ValueError("dingtalk.event_aes_key must be 43 base64 characters") from None
        self._token = token
        self.now = now
        self.window = window_seconds

    def open(self, query: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """Verify and decrypt a push; the decrypted JSON object."""
        signature = query.get("signature") or query.get("msg_signature", "")
        timestamp = query.get("timestamp") or query.get("timeStamp", "")
        nonce = query.get("nonce", "")
        if not _SIGNATURE.fullmatch(signature):
            raise CallbackRejected(403, "missing or malformed signature")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise CallbackRejected(400, "missing or malformed timestamp")
        if not _NONCE.fullmatch(nonce):
            raise CallbackRejected(400, "missing or malformed nonce")
        skew = abs(self.now() - _seconds(timestamp))
        if skew > self.window:
            raise CallbackRejected(403, f"timestamp outside the replay window ({int(skew)} s)")
        try:
            outer = json_value(body)
        except ValueError:
            raise CallbackRejected(400, "body is not JSON") from None
        encrypt = outer.get("encrypt") if isinstance(outer, dict) else None
        if not isinstance(encrypt, str) or not encrypt:
            raise CallbackRejected(400, "body has no encrypt")
        if len(encrypt) > MAX_ENCRYPT:
            raise CallbackRejected(413, "encrypt is too large")
        expected = event_signature(self._token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise CallbackRejected(403, "signature mismatch")
        try:
            plain = self._crypto.decrypt_encrypt_str(signature, timestamp, nonce, encrypt)
        except InvalidCorpIdOrSuiteKeyException:
            raise CallbackRejected(403, "event is for another app (owner key)") from None
        except Exception:  # base64, padding, length: a wrong aes key or a forged body
            raise CallbackRejected(400, "encrypt does not decrypt") from None
        try:
            event = json_value(plain)
        except ValueError:
            raise CallbackRejected(400, "decrypted event is not JSON") from None
        if not isinstance(event, dict):
            raise CallbackRejected(400, "decrypted event is not a JSON object")
        return event

    def success(self) -> dict[str, str]:
        """The encrypted "success" every push must be answered with."""
        answer: dict[str, str] = self._crypto.encrypt_message(
            "success", nonce=secrets.token_hex(8), timestamp=str(int(self.now() * 1000))
        )
        return answer
