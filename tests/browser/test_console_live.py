"""The console's live parts in a real browser (Debian's Chromium): one member's decision
reaches another member's open page by server push, no reload and no polling; the case's
timeline panel shows it as it happens; and the whole console fits a phone's screen."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import CHROMIUM, expect_decided, open_chat

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed"),
]
SHOTS = Path("/tmp")  # noqa: S108 - where the browser tests leave their screenshots
NewPage = Callable[..., Awaitable[Page]]


def polls_of(page: Page) -> list[str]:
    """Every poll the page makes from now on (with the stream up, there should be none)."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if "/console/api/messages" in r.url else None)
    return seen


async def test_a_decision_reaches_another_members_page_by_push(
    pages: NewPage, console_url: str
) -> None:
    lead, other = await pages(), await pages()
    polls = polls_of(other)
    await open_chat(lead, console_url, "王组长")
    await open_chat(other, console_url, "刘组长")
    await expect(other.locator("#conn")).to_have_attribute("data-mode", "push")
    theirs = other.locator(".card", has_text="132.00").first
    await expect(theirs.locator(".btn", has_text="同意")).to_be_enabled()

    await theirs.locator(".trail-btn").click()  # the case's timeline, open while it happens
    panel = other.locator("#trail")
    await expect(panel.locator(".trail-item").first).to_contain_text("收到售后申请")
    await expect(panel.locator(".trail-item", has_text="审批同意")).to_have_count(0)

    await lead.locator(".card", has_text="132.00").first.locator(".btn", has_text="同意").click()
    await expect_decided(theirs, "王组长", "同意", "good")  # on the other page, not reloaded
    for button in await theirs.locator(".card-buttons .btn").all():
        await expect(button).to_be_disabled()
    decided = panel.locator(".trail-item", has_text="审批同意")
    await expect(decided).to_contain_text("王组长")
    await expect(decided.locator(".trail-time")).to_have_text(
        re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    )
    assert polls == []
    await other.screenshot(path=str(SHOTS / "console-timeline.png"))
    await other.locator("#trail-close").click()
    await expect(panel).to_be_hidden()


async def inside(page: Page, target: Locator) -> None:
    """Shown, within the screen's width, and clickable where it is."""
    await target.scroll_into_view_if_needed()
    await expect(target).to_be_visible()
    box = await target.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    await target.click(trial=True)  # nothing covers it


async def fits(page: Page) -> None:
    wide = await page.evaluate("document.scrollingElement.scrollWidth - innerWidth")
    assert wide <= 0, f"{wide}px of horizontal scroll"


async def test_the_console_fits_a_phone(pages: NewPage, console_url: str) -> None:
    phone = await pages(390, 844)
    await open_chat(phone, console_url, "王组长")
    card = phone.locator(".card", has_text="132.00").first
    await expect(card).to_be_visible()
    await fits(phone)
    for part in ("#input", "#send", ".composer .upload"):
        await inside(phone, phone.locator(part))
    approve = card.locator(".btn", has_text="同意")
    for button in await card.locator(".card-buttons .btn").all():
        await inside(phone, button)
    await approve.click()
    await expect_decided(card, "王组长", "同意", "good")
    await fits(phone)
    await phone.screenshot(path=str(SHOTS / "console-phone.png"))

    await card.locator(".trail-btn").click()
    panel = phone.locator("#trail")
    await expect(panel.locator(".trail-item", has_text="审批同意")).to_contain_text("王组长")
    await inside(phone, phone.locator("#trail-close"))
    await fits(phone)
    await phone.locator("#trail-close").click()

    member = phone.locator(".member", has_text="小周")  # the member strip scrolls sideways
    await inside(phone, member)
    await member.click()
    await expect(phone.locator("#chat-title")).to_have_text("小周")
    await phone.locator("#input").fill("SF1401234567890")
    await phone.locator("#send").click()
    scan = phone.locator(".card", has_text="SF1401234567890").last
    await inside(phone, scan.locator(".btn", has_text="完好"))
    await fits(phone)
