"""Hypothesis strategies for what arrives from outside: JSON with hostile leaves
(control characters, lone surrogates, huge numbers, deep nesting), XML shapes,
and chat lines built from the real command words."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from handlers.commands import COMMANDS

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff",
        "\u202e",
        "\ufeff",
        "\r\n",
        "%00",
        "../../etc/passwd",
        "{{ ''.__class__ }}",
        "<script>",
        "'; DROP TABLE cases;--",
        "RC-000000-0000",
        "RC-999999-99999999999999999999",
        "9" * 400,
        "测试" * 300,
        "NaN",
        "-0",
        "1e999",
        "0x10",
        "２９.９０",
        "29.90",
        "-29.90",
        "true",
        "null",
        "9" * 5000,  # int() refuses more than 4300 digits
        "0001-01-01",  # no UTC date east of Greenwich
        "9999-12-31",  # no next day
        "0001-01-01T00:00:00+08:00",
    ]
)
texts = st.one_of(st.text(max_size=40), HOSTILE_TEXT)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, 10**20]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON as a sender might write it: NaN and lone surrogates included."""
    return json.dumps(value, ensure_ascii=True).encode()


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], paths: list[list[str]] | None = None) -> Any:
    """`base` with a few fields (top level, or along `paths`) replaced, dropped or
    retyped: what reaches the deeper checks, past "is it an object"."""
    body = json.loads(json.dumps(base))
    keys = st.sampled_from([[k] for k in body])
    if paths:  # the nested fields as often as the top-level ones
        keys = st.one_of(keys, st.sampled_from(paths))
    for path in draw(st.lists(keys, min_size=1, max_size=4)):
        holder = body
        for part in path[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
            if isinstance(holder, list):
                holder = holder[0] if holder else None
        if not isinstance(holder, dict):
            continue
        if draw(st.booleans()) and path[-1] in holder:
            del holder[path[-1]]
        else:
            holder[path[-1]] = draw(json_values)
    return body


WORDS = [f"/{name}" for command in COMMANDS for name in command.names]
ARGS = st.one_of(
    texts,
    st.sampled_from(
        [
            "RC-",
            "rc-202611-0001",
            "@王组长",
            "@nobody",
            "原因",
            "配件=滤网",
            "扣款=35",
            "=",
            "a=",
            "今天",
            "本周",
            "本月",
            "taobao",
            "35元",
            "-35",
            "SF1234567890",
            "YT9876543210123",
            "客户同意扣款 35元",
        ]
    ),
)


@st.composite
def chat_lines(draw: st.DrawFn, case_ids: list[str]) -> str:
    """A chat line: a command word (or its near miss, or none) and some arguments,
    with the case ids that exist among them."""
    head = draw(
        st.one_of(st.sampled_from(WORDS), st.sampled_from(["/", "、帮助", "@机器人 同意"]), texts)
    )
    args = draw(st.lists(st.one_of(ARGS, st.sampled_from(case_ids or ["RC-0"])), max_size=5))
    sep = draw(st.sampled_from([" ", "\u3000", "\t", "  "]))
    return sep.join([head, *args])


@st.composite
def xml_documents(draw: st.DrawFn, fields: dict[str, str]) -> str:
    """An XML document shaped like a callback: the known fields, some dropped or
    given hostile values, odd extras, and sometimes a DOCTYPE or entity."""
    parts = []
    for name, value in fields.items():
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue
        if choice == 1:
            # UTF-8 cannot carry a lone surrogate: the sender could not have sent one
            value = draw(texts).encode("utf-8", "replace").decode().replace("]]>", "")
        parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
    extra = draw(
        st.sampled_from(
            [
                "",
                "<Extra/>",
                "<Content>&lt;&amp;</Content>",
                "<Content>&xxe;</Content>",
                "<MsgType></MsgType>",
                "<CreateTime>-1</CreateTime>",
                "<CreateTime>9e99</CreateTime>",
                "<AgentID>abc</AgentID>",
                "<MsgId>99999999999999999999999</MsgId>",
                "<a><b><c/></b></a>",
            ]
        )
    )
    prolog = draw(
        st.sampled_from(
            [
                "",
                '<?xml version="1.0"?>',
                '<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
                '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
            ]
        )
    )
    root = draw(st.sampled_from(["xml", "xml", "XML", "root"]))
    closing = draw(st.sampled_from([f"</{root}>", f"</{root}>", "", "</other>"]))
    return f"{prolog}<{root}>{''.join(parts)}{extra}{closing}"
