"""What a PDA, a QR code or a person types for a parcel -> the codes to look it up by.

A scanner types the waybill as printed; a person adds spaces, lower case,
full-width digits (ＳＦ１２３…) or the carrier's name ("顺丰 SF…", "YTO YT…"); SF
and JD print each piece of a multi-piece shipment as the waybill plus "-1-1-";
a QR code holds a tracking URL with the number in its query or path. `codes`
turns any of these into an ordered list of candidates (the most likely first)
for an exact, indexed lookup; `canonical` is the one form an unexpected parcel
is stored under.

Common waybill shapes (China): SF 顺丰 "SF" + 12-13 digits; YTO 圆通 "YT" + 13
digits; ZTO 中通, STO 申通 and Yunda 韵达 12-15 digits; JD 京东 "JD" + letters and
digits ("JDVA…", "JD00…"); J&T 极兔 "JT" + 13 digits; EMS 邮政 13 digits or
"EA123456789CN". A stored waybill may carry the letter prefix or not, so a
digits-only scan also tries the letter-prefixed forms and vice versa.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qsl, unquote, urlsplit

MIN_LEN = 6
MAX_LEN = 40
MAX_INPUT = 300
MAX_CODES = 16

# Carrier names a person may type before the number (longest first, so 顺丰速运 goes
# whole); English short names only as whole words.
CARRIER_NAMES = (
    "顺丰速运", "顺丰快递", "顺丰", "圆通速递", "圆通快递", "圆通", "中通快递", "中通",
    "申通快递", "申通", "韵达快递", "韵达", "京东物流", "京东快递", "京东", "中国邮政",
    "邮政快递", "邮政EMS", "邮政", "极兔速递", "极兔快递", "极兔", "百世快递", "德邦快递",
    "德邦",
)  # fmt: skip
CARRIER_WORDS = re.compile(
    r"\b(?:SF\s*EXPRESS|YTO|ZTO|STO|YUNDA|EMS|J&T(?:\s*EXPRESS)?|JTEXPRESS|BEST|DEPPON)\b",
    re.IGNORECASE,
)
LABELS = (
    "退货运单号", "快递单号", "物流单号", "运单号", "退货单号", "订单号", "售后单号",
    "单号", "运单", "快递", "物流", "订单",
)  # fmt: skip
LETTER_PREFIXES = ("SF", "YT", "JT", "JD")
DIGITS_MIN = 10  # a digits-only waybill this long may be stored with a letter prefix
_PIECE = re.compile(r"(?:-\d{1,3}){1,3}-?$")  # "-1-1-", "-2-3"
_DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−﹣"})
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_CODE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9-]{{{MIN_LEN - 1},{MAX_LEN - 1}}}")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# Query keys that name the number on common tracking pages, most specific first.
URL_KEYS = (
    "waybill", "waybillno", "waybill_no", "mailno", "mail_no", "billcode", "bill_code",
    "trackingno", "tracking_no", "trackingnumber", "tracking_number", "nu", "num", "no",
    "number", "expressno", "orderid", "order_id", "orderno", "order_no", "code", "id", "q",
)  # fmt: skip


def codes(text: str) -> list[str]:
    """The candidates `text` may mean, most likely first; empty if it holds no code."""
    found: list[str] = []
    for raw in _raw_codes(text):
        for variant in _variants(raw):
            if variant not in found and _CODE.fullmatch(variant) and _has_digit(variant):
                found.append(variant)
    return found[:MAX_CODES]


def canonical(text: str) -> str:
    """The one form a code is stored under: upper case, no spaces, no piece suffix."""
    found = codes(text)
    if not found:
        return ""
    first = found[0]
    stripped = _PIECE.sub("", first)
    return stripped if _CODE.fullmatch(stripped) else first


def looks_like_code(text: str) -> bool:
    """A plain message that is a scan: a code, perhaps with its carrier or label, and
    nothing else in Chinese (a sentence with a number in it is not a scan)."""
    if len(text) > MAX_INPUT:
        return False
    flat = unicodedata.normalize("NFKC", text)
    if not _URL.search(flat) and _CJK.search(_strip_words(flat)):
        return False
    return bool(codes(text))


def _raw_codes(text: str) -> list[str]:
    flat = unicodedata.normalize("NFKC", text[:MAX_INPUT]).translate(_DASHES).strip()
    url = _URL.search(flat)
    if url:
        return _url_codes(url.group(0))
    tokens = _TOKEN.findall(_strip_words(flat))
    if len(tokens) < 2:
        return tokens
    return ["".join(tokens), *(t for t in tokens if len(t) >= MIN_LEN)]


def _strip_words(text: str) -> str:
    for name in (*CARRIER_NAMES, *LABELS):
        text = text.replace(name, " ")
    return CARRIER_WORDS.sub(" ", text).replace("：", " ").replace(":", " ")


def _url_codes(url: str) -> list[str]:
    """The number in a tracking URL: a known query key first, then any query value,
    then the path's segments from the last."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    query = [(k.lower(), v) for k, v in parse_qsl(parts.query) + parse_qsl(parts.fragment)]
    ranked = sorted(
        (pair for pair in query if pair[0] in URL_KEYS), key=lambda kv: URL_KEYS.index(kv[0])
    )
    values = [v for _, v in ranked] + [v for k, v in query if k not in URL_KEYS]
    values += [unquote(seg) for seg in reversed(parts.path.split("/")) if seg]
    found: list[str] = []
    for value in values:
        flat = unicodedata.normalize("NFKC", value).translate(_DASHES)
        found += [t for t in _TOKEN.findall(_strip_words(flat)) if _has_digit(t)]
    return found


def _variants(raw: str) -> list[str]:
    """`raw` as typed (upper-cased), without a piece suffix, and with or without the
    carrier's letter prefix."""
    upper = raw.upper().strip("-")
    base = _PIECE.sub("", upper) if _PIECE.search(upper) else upper
    out = [upper, base] if raw == upper else [upper, raw, base]
    prefix = next((p for p in LETTER_PREFIXES if base.startswith(p)), "")
    rest = base[len(prefix) :]
    if prefix and rest.isdigit():
        out.append(rest)
    elif base.isdigit() and len(base) >= DIGITS_MIN:
        out += [p + base for p in LETTER_PREFIXES]
    return out


def _has_digit(code: str) -> bool:
    return any(ch.isdigit() for ch in code)
