"""Faults the fake platforms inject on demand, shared by the fake WeCom and DingTalk.

Each fake records every call to a path, waits `delays[path]` seconds when asked to be
slow, and answers with the first queued failure of `failures[path]`, which is used up
after `times` answers (None: for ever). What a failure answers is the fake's own.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, TypeVar


class Injected(Protocol):
    times: int | None


F = TypeVar("F", bound=Injected)


async def arrive(
    path: str, calls: list[str], delays: dict[str, float], failures: dict[str, list[F]]
) -> F | None:
    """Record the call, sleep its delay, and return the failure to answer with, if any."""
    calls.append(path)
    if delays.get(path):
        await asyncio.sleep(delays[path])
    queue = failures.get(path) or []
    if not queue:
        return None
    failure = queue[0]
    if failure.times is not None:
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
    return failure
