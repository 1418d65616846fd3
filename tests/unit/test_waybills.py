"""What a PDA, a QR code or a person types -> the codes a scan looks up (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.waybills import MAX_CODES, MAX_LEN, canonical, codes, looks_like_code

SF = "SF1234567890123"


@pytest.mark.parametrize(
    ("typed", "first", "also"),
    [
        (SF, SF, "1234567890123"),
        ("sf1234567890123", SF, "1234567890123"),
        ("  SF 1234 5678 9012 3 ", SF, "1234567890123"),
        ("ＳＦ１２３４５６７８９０１２３", SF, "1234567890123"),  # full-width (NFKC)
        ("顺丰 SF1234567890123", SF, "1234567890123"),
        ("顺丰速运：SF1234567890123", SF, "1234567890123"),
        ("运单号：SF1234567890123", SF, "1234567890123"),
        ("SF1234567890123-1-1-", "SF1234567890123-1-1", SF),  # a piece of a multi-piece
        ("SF1234567890123—1—1", "SF1234567890123-1-1", SF),  # dashes typed as em dashes
        ("YTO YT1234567890123", "YT1234567890123", "1234567890123"),
        ("圆通 YT1234567890123", "YT1234567890123", "1234567890123"),
        ("中通 78123456789012", "78123456789012", "SF78123456789012"),
        ("申通快递 773012345678901", "773012345678901", "YT773012345678901"),
        ("韵达 4312345678901", "4312345678901", "JT4312345678901"),
        ("YUNDA 4312345678901", "4312345678901", "SF4312345678901"),
        ("京东 JDVA12345678901-1-1-", "JDVA12345678901-1-1", "JDVA12345678901"),
        ("JD0012345678901", "JD0012345678901", "0012345678901"),
        ("EMS 1100123456789", "1100123456789", "SF1100123456789"),
        ("邮政 EA123456789CN", "EA123456789CN", "EA123456789CN"),
        ("极兔 JT1234567890123", "JT1234567890123", "1234567890123"),
        ("J&T JT1234567890123", "JT1234567890123", "1234567890123"),
        ("rc-261121-0001", "RC-261121-0001", "RC-261121-0001"),
        ("SO20261101009", "SO20261101009", "SO20261101009"),
        (
            "https://www.kuaidi100.com/chaxun?com=shunfeng&nu=SF1234567890123",
            SF,
            "1234567890123",
        ),
        ("https://m.sf-express.com/track?waybillNo=SF1234567890123&lang=zh", SF, SF),
        ("https://t.example.cn/q/YT1234567890123?from=qr", "YT1234567890123", "1234567890123"),
        ("www.example.cn/track#mailno=JT1234567890123", "JT1234567890123", "1234567890123"),
        ("https://t.example.cn/q/SF1234567890123%2D1%2D1", "SF1234567890123-1-1", SF),
    ],
)
def test_what_is_typed_is_looked_up_by_its_codes(typed: str, first: str, also: str) -> None:
    found = codes(typed)
    assert found[0] == first
    assert also in found
    assert looks_like_code(typed)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("SF1234567890123-1-1-", SF),
        ("顺丰 sf 1234567890123", SF),
        ("https://www.kuaidi100.com/chaxun?nu=YT1234567890123", "YT1234567890123"),
        ("１２３４５６７８９０１２", "123456789012"),
    ],
)
def test_the_canonical_form_drops_what_varies(typed: str, stored: str) -> None:
    assert canonical(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "   ",
        "你好",
        "hello",
        "12345",
        "退货 123456 有破损",
        "明天 SF1234567890123 到",
        "x" * 400,
    ],
)
def test_what_is_not_a_scan(typed: str) -> None:
    assert not looks_like_code(typed)
    assert canonical(typed) == "" or not looks_like_code(typed)


def test_two_numbers_try_the_joined_and_each() -> None:
    joined, *each = ["SF1234567890123", "1234567890123"], "SF1234567", "1234567", "890123"
    assert codes("SF1234567 890123") == [*joined, *each]


@given(st.text(max_size=400))
def test_any_text_gives_bounded_ascii_codes(text: str) -> None:
    found = codes(text)
    assert len(found) <= MAX_CODES
    for code in found:
        assert code.isascii() and 6 <= len(code) <= MAX_LEN
        assert any(ch.isdigit() for ch in code)
