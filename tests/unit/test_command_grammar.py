"""How a typed line is read: full-width forms, mentions, the IME's 、, near misses."""

from __future__ import annotations

import pytest

from handlers.command_grammar import assignments, closest, distance, parse, strip_mentions

NAMES = {"话术", "script", "帮助", "help", "查单", "case", "统计", "stats"}


def read(text: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    body, mentioned = strip_mentions(text)
    parsed = parse(body, mentioned, lambda w: w in NAMES)
    return None if parsed is None else (parsed.word, parsed.args, parsed.raw)


@pytest.mark.parametrize(
    "text",
    [
        "/话术 缺配件 RC-261121-0001",
        "／话术　缺配件　RC-261121-0001",  # full-width slash and spaces
        "  /话术   缺配件 RC-261121-0001  ",
        "@售后机器人 /话术 缺配件 RC-261121-0001",
        "@售后机器人 话术 缺配件 RC-261121-0001",  # in a group the slash is optional
        "＠售后机器人　@另一个 话术 缺配件 ＲＣ－２６１１２１－０００１",
        "、话术 缺配件 RC-261121-0001",  # what a Chinese IME types for /
    ],
)
def test_the_same_command_however_it_is_typed(text: str) -> None:
    found = read(text)
    assert found is not None
    assert found[:2] == ("话术", ("缺配件", "RC-261121-0001"))


def test_english_aliases_are_case_insensitive_and_free_text_is_kept_as_typed() -> None:
    assert read("/SCRIPT x") == ("script", ("x",), ("x",))
    assert read("/记录 RC-1 客户同意，扣款３５元") == (
        "记录",
        ("RC-1", "客户同意,扣款35元"),
        ("RC-1", "客户同意，扣款３５元"),
    )


@pytest.mark.parametrize(
    "text", ["SF1234567890", "商品已使用", "、顿号开头的一句话", "", "@售后机器人 SF1234567890"]
)
def test_plain_text_is_not_a_command(text: str) -> None:
    assert read(text) is None


def test_a_mention_is_stripped_from_plain_text_too() -> None:
    assert strip_mentions("@售后机器人 SF1234567890") == ("SF1234567890", True)
    assert strip_mentions("SF1234567890") == ("SF1234567890", False)


def test_a_bare_slash_is_a_command_with_no_word() -> None:
    assert read("/") == ("", (), ())
    assert read("／ 帮助") == ("", ("帮助",), ("帮助",))


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("话述", "话术"), ("hlep", "help"), ("stat", "stats"), ("查当", "查单"), ("cas", "case")],
)
def test_a_near_miss_finds_what_was_meant(typed: str, meant: str) -> None:
    assert closest(typed, NAMES) == meant


def test_nothing_near_suggests_nothing() -> None:
    assert closest("完全无关的词", NAMES) is None
    assert closest("", NAMES) is None
    assert distance("kitten", "sitting") == 3 and distance("", "ab") == 2


def test_assignments_split_from_the_other_arguments() -> None:
    given, rest = assignments(["缺配件", "配件=滤网", "扣款=35元", "RC-1", "空值="])
    assert given == {"配件": "滤网", "扣款": "35元"}
    assert rest == ["缺配件", "RC-1", "空值="]
