"""Idempotency keys (DESIGN.md §6 "Keys"): one builder, so two events never share a key.

`key("generic", shop, event_id)` joins escaped parts with ":". Each part escapes
"%", ":" and "#" (and anything unprintable) as %XX of its UTF-8 bytes, so a part
never contains the separator and the parts can be read back: the shop
"main:k1" with the event "1" is `generic:main%3Ak1:1`, the shop "main" with the
event "k1:1" is `generic:main:k1%3A1`. Everything else stays as it is (Chinese,
spaces), so keys remain readable in logs.

The inbox column holds KEY_MAX characters. A longer key keeps a readable prefix
and ends with "#" and the SHA-256 of the whole escaped key; an escaped key never
contains "#", so a digest key cannot equal a short key, and two digest keys are
equal only if the full keys are.
"""

from __future__ import annotations

import hashlib

KEY_MAX = 255
SEPARATOR = ":"
_RESERVED = frozenset("%:#")


def _escape_char(ch: str) -> str:
    if ch in _RESERVED or not ch.isprintable():
        return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return ch


def escape(part: str) -> str:
    """`part` with "%", ":", "#" and unprintable characters as %XX (UTF-8 bytes)."""
    if part.isprintable() and "%" not in part and ":" not in part and "#" not in part:
        return part  # the common case, in C: every intake builds a key
    return "".join(_escape_char(ch) for ch in part)


def key(*parts: str) -> str:
    """The idempotency key of an event named by `parts` (a platform prefix first).

    Different tuples of parts always give different keys, whatever the parts
    contain (separators, "%", empty strings, any Unicode), within KEY_MAX characters.
    """
    if not parts:
        raise ValueError("an idempotency key needs at least one part")
    joined = SEPARATOR.join(escape(part) for part in parts)
    if len(joined) <= KEY_MAX:
        return joined
    digest = hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{joined[: KEY_MAX - len(digest) - 1]}#{digest}"
