"""handlers/versions.py: one total order for channel versions, never text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.events import time_version
from handlers.versions import Unordered, newer


def test_integers_compare_as_numbers() -> None:
    assert newer("10", "9") and not newer("9", "10")
    assert not newer("7", "007") and not newer("007", "7")  # the same number
    assert newer("100000000000000000000000000000001", "100000000000000000000000000000000")


def test_event_times_compare_as_datetimes_whatever_the_year() -> None:
    old, new = datetime(999, 11, 23, 2, tzinfo=UTC), datetime(2026, 11, 23, 2, tzinfo=UTC)
    assert time_version(old) == "0999-11-23T02:00:00.000000Z"
    assert newer(time_version(new), time_version(old))
    assert not newer(time_version(old), time_version(new))
    assert newer("2026-11-21T10:00:00.000001Z", "2026-11-21T10:00:00.000000Z")


@pytest.mark.parametrize(
    ("candidate", "stored", "word"),
    [
        ("10a", "10", "neither"),  # "10a" used to beat "10", and "9" beat "10a"
        ("9", "10a", "neither"),
        ("²", "1", "neither"),
        ("2026-11-21T10:00:00", "2026-11-21T09:00:00", "neither"),  # no offset: no instant
        ("2026-11-21T10:00:00.000000Z", "3", "kinds differ"),
        ("4", "2026-11-21T10:00:00.000000Z", "kinds differ"),
    ],
)
def test_versions_of_no_common_order_are_refused(candidate: str, stored: str, word: str) -> None:
    with pytest.raises(Unordered, match=word):
        newer(candidate, stored)
