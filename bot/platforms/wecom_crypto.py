"""WeCom callback crypto, wrapped: verify first, then decrypt.

wechatpy's `WeChatCrypto` does the AES part (AES-256-CBC, IV = key[:16], PKCS#7
to 32-byte blocks, `random16 | len | msg | corp_id`), but compares signatures
with `!=`, checks no timestamp and lets every malformed input escape as a
different low-level exception. So this wrapper, in order:

1. validates the query (`msg_signature`, `timestamp`, `nonce`) and the replay
   window against an injectable clock (WeCom documents no tolerance for
   self-built apps; we pick one, default 300 s);
2. parses the outer XML with DTDs and entities forbidden and takes `Encrypt`;
3. recomputes SHA1(sorted(token, timestamp, nonce, encrypt)) and compares it in
   constant time (`hmac.compare_digest`);
4. checks base64 and PKCS#7 padding of the last block (a wrong EncodingAESKey
   shows up here), then lets wechatpy decrypt and check the CorpID.

Every failure is a `CallbackRejected(status, reason)`: the route answers 4xx
and logs the reason. Reasons never contain secrets or the payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any
from xml.parsers import expat

import xmltodict
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException

from bot.platforms.inbound import CallbackRejected

DEFAULT_WINDOW_SECONDS = 300
MAX_ECHOSTR = 4096
MAX_ENCRYPT = 256 * 1024
_SIGNATURE = re.compile(r"[0-9a-f]{40}")
_TIMESTAMP = re.compile(r"\d{1,12}")
_NONCE = re.compile(r"[0-9A-Za-z_\-]{1,64}")
AES_BLOCK = 16
PAD_BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16


def sign(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """msg_signature: SHA1 over the four strings sorted bytewise and concatenated."""
    parts = sorted(p.encode() for p in (token, timestamp, nonce, encrypt))
    return hashlib.sha1(b"".join(parts)).hexdigest()  # noqa: S324 - WeCom's algorithm


class _NoDtdExpat:
    """An `expat` stand-in for xmltodict whose parsers refuse any DOCTYPE.

    xmltodict already refuses entity declarations (`disable_entities`); refusing
    the DTD itself also stops external DTDs and parameter entities. Checking the
    parser's events, not the raw text, keeps a chat message that merely contains
    the characters "<!DOCTYPE" (inside CDATA) acceptable.
    """

    @staticmethod
    def ParserCreate(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - expat's name
        parser = expat.ParserCreate(*args, **kwargs)

        def refuse(*_args: Any) -> None:
            raise CallbackRejected(400, "xml declares a DTD")

        parser.StartDoctypeDeclHandler = refuse
        return parser


def parse_xml(raw: bytes | str, *, force_list: tuple[str, ...] = ()) -> dict[str, Any]:
    """The `<xml>` root as a dict; DTDs and entity declarations are refused outright."""
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        parsed = xmltodict.parse(
            data, expat=_NoDtdExpat, disable_entities=True, force_list=force_list
        )
    except CallbackRejected:
        raise
    except Exception:  # expat errors, bad encodings: all mean "not our XML"
        raise CallbackRejected(400, "body is not well-formed xml") from None
    root = parsed.get("xml") if isinstance(parsed, dict) else None
    if not isinstance(root, dict):
        raise CallbackRejected(400, "xml has no <xml> root element")
    return root


class WecomCrypto:
    """One app's callback crypto (Token, EncodingAESKey, CorpID) with a replay window.

    `now` returns epoch seconds; the app passes its injectable clock so tests can
    move time.
    """

    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        corp_id: str,
        *,
        now: Callable[[], float],
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        try:
            self._crypto = WeChatCrypto(token, encoding_aes_key, corp_id)
        except (AssertionError, binascii.Error, ValueError):
            raise ValueError("wecom.encoding_aes_key must be 43 base64 characters") from None
        self._token = token
        self._key: bytes = self._crypto.key
        self.corp_id = corp_id
        self.now = now
        self.window = window_seconds

    def verify_url(self, query: Mapping[str, str]) -> str:
        """GET URL check: verify the signature over `echostr`, return its decrypted text."""
        signature, timestamp, nonce = self._query(query)
        # Base64 has no spaces: a "+" a proxy left unescaped arrives as " "; put it back.
        echostr = query.get("echostr", "").replace(" ", "+")
        if not echostr or len(echostr) > MAX_ECHOSTR:
            raise CallbackRejected(400, "missing or oversized echostr")
        self._check_signature(signature, timestamp, nonce, echostr)
        self._check_ciphertext(echostr)
        try:
            plain: str = self._crypto.check_signature(signature, timestamp, nonce, echostr)
        except InvalidCorpIdException:
            raise CallbackRejected(403, "echostr is for another corp") from None
        except Exception:
            raise CallbackRejected(400, "echostr does not decrypt") from None
        return plain

    def open(self, query: Mapping[str, str], body: bytes) -> str:
        """POST: verify and decrypt the body's `Encrypt`; returns the inner XML text."""
        signature, timestamp, nonce = self._query(query)
        outer = parse_xml(body)
        encrypt = outer.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise CallbackRejected(400, "xml has no Encrypt element")
        if len(encrypt) > MAX_ENCRYPT:
            raise CallbackRejected(413, "Encrypt is too large")
        self._check_signature(signature, timestamp, nonce, encrypt)
        to_user = outer.get("ToUserName")
        if to_user is not None and to_user != self.corp_id:
            raise CallbackRejected(403, "ToUserName is another corp")
        self._check_ciphertext(encrypt)
        try:
            inner: str = self._crypto.decrypt_message(
                {"Encrypt": encrypt}, signature, timestamp, nonce
            )
        except InvalidCorpIdException:
            raise CallbackRejected(403, "message is for another corp") from None
        except Exception:
            raise CallbackRejected(400, "Encrypt does not decrypt") from None
        return inner

    def _query(self, query: Mapping[str, str]) -> tuple[str, str, str]:
        signature = query.get("msg_signature", "")
        timestamp = query.get("timestamp", "")
        nonce = query.get("nonce", "")
        if not _SIGNATURE.fullmatch(signature):
            raise CallbackRejected(403, "missing or malformed msg_signature")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise CallbackRejected(400, "missing or malformed timestamp")
        if not _NONCE.fullmatch(nonce):
            raise CallbackRejected(400, "missing or malformed nonce")
        skew = abs(self.now() - int(timestamp))
        if skew > self.window:
            raise CallbackRejected(403, f"timestamp outside the replay window ({int(skew)} s)")
        return signature, timestamp, nonce

    def _check_signature(self, signature: str, timestamp: str, nonce: str, data: str) -> None:
        expected = sign(self._token, timestamp, nonce, data)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise CallbackRejected(403, "msg_signature mismatch")

    def _check_ciphertext(self, text: str) -> None:
        """Base64, whole AES blocks, and valid 32-byte PKCS#7 padding in the last block."""
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise CallbackRejected(400, "Encrypt is not base64") from None
        if not raw or len(raw) % AES_BLOCK or len(raw) < 2 * AES_BLOCK:
            raise CallbackRejected(400, "Encrypt is not whole AES blocks")
        iv = raw[-2 * AES_BLOCK : -AES_BLOCK]
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        last = decryptor.update(raw[-AES_BLOCK:]) + decryptor.finalize()
        pad = last[-1]
        span = min(pad, AES_BLOCK)
        if not 1 <= pad <= PAD_BLOCK or last[-span:] != bytes([pad]) * span:
            raise CallbackRejected(400, "bad padding (wrong EncodingAESKey?)")
