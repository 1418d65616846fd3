"""The chat command language: what a typed line means, before anything runs.

People type on phones with Chinese input methods and in group chats, so a line is
read forgivingly: NFKC folds full-width letters, digits, ／ and ＝ into their ASCII
forms (full-width spaces split words like spaces), a leading `@机器人` mention is
dropped (and in a group the slash is optional after it), and `、` — what a Chinese
IME types for `/` — starts a command when a command name follows. Free text (a
reason, a note) keeps what the member typed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import ChatMessage
from handlers import notify
from handlers.context import Ctx
from storage.models import Member

_MENTIONS = re.compile(r"^(?:[@＠]\S+\s+)+")
CASE_ID = re.compile(r"RC-\d{6}-\d{4,}", re.IGNORECASE)
ASSIGN = re.compile(r"([^\W\d]\w*)=(.*)")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A command line: its word (lower-cased; "" for a bare slash) and its arguments,
    both folded (`args`) and as typed (`raw`)."""

    word: str
    args: tuple[str, ...]
    raw: tuple[str, ...]


def strip_mentions(text: str) -> tuple[str, bool]:
    """`text` without its leading `@机器人` mentions, and whether it had any."""
    line = text.strip()
    body = _MENTIONS.sub("", line + " ").strip()
    return body, body != line


def parse(body: str, mentioned: bool, is_name: Callable[[str], bool]) -> Parsed | None:
    """The command in `body` (a line without its mentions), or None for plain text (a
    reply, a scanned code). After a mention the slash is optional."""
    tokens = body.split()
    if not tokens:
        return None
    head = nfkc(tokens[0])
    if head.startswith("/") or head.startswith("、") and is_name(head[1:].lower()):
        word = head[1:]
    elif mentioned and is_name(head.lower()):
        word = head
    else:
        return None
    rest = tuple(tokens[1:])
    return Parsed(word.lower(), tuple(nfkc(t) for t in rest), rest)


def distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute: one each)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def closest(word: str, names: Iterable[str]) -> str | None:
    """The name nearest `word`, if it is near enough to be what they meant."""
    scored = sorted((distance(word, n), n) for n in names)
    if not scored or not word:
        return None
    best, name = scored[0]
    return name if best <= max(1, min(len(word), len(name)) // 2) else None


def assignments(args: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """`配件=滤网 扣款=35` -> ({"配件": "滤网", "扣款": "35"}, the other arguments)."""
    given: dict[str, str] = {}
    rest: list[str] = []
    for arg in args:
        match = ASSIGN.fullmatch(arg)
        if match and match.group(2):
            given[match.group(1)] = match.group(2)
        else:
            rest.append(arg)
    return given, rest


@dataclass(frozen=True, slots=True)
class Call:
    """One command being run: who asked, what they typed, where to answer."""

    session: AsyncSession
    ctx: Ctx
    event: ChatMessage
    member: Member
    args: tuple[str, ...]
    raw: tuple[str, ...] = ()

    def rest(self, start: int = 1) -> str:
        """The free text from argument `start` on, as typed."""
        return " ".join(self.raw[start:]).strip()

    async def reply(self, text: str, case_id: str | None = None) -> None:
        await notify.send_text(self.session, self.ctx, self.event.sender, text, case_id)


Run = Callable[[Call], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Command:
    """A command: its names (Chinese first, then English aliases), what it does, the
    roles that may run it (empty: every member; admin always) and how it runs."""

    names: tuple[str, ...]
    usage: str
    help: str
    roles: frozenset[str]
    run: Run
    detail: str = ""

    def allows(self, roles: set[str] | frozenset[str]) -> bool:
        return not self.roles or bool(self.roles & roles) or "admin" in roles
