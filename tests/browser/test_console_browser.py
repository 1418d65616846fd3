"""The console in a real browser: Debian's Chromium driven by playwright.

The real app runs on a free loopback port in demo mode with the demo data seeded;
the clock ticks the outbox, so a click travels page -> event -> handler -> outbox
-> console platform -> poll -> re-rendered card, as in `returnhub demo`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page, Route, async_playwright, expect

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import demo_settings, seed
from bot.events import Item, ReturnRequest
from bot.web.console_login import signin_link
from handlers.intake import on_return_request
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, expect_decided, free_port, open_chat
from tests.fakes.labels import label_photo
from tests.support import add_console_row

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium is not installed (apt-get install -y chromium)",
    ),
]
SCREENSHOT = Path("/tmp/console.png")  # noqa: S108 - a fixed place to look at by hand


async def test_lead_approves_and_director_sees_history(page: Page, console_url: str) -> None:
    await page.goto(console_url)
    await page.locator(".member", has_text="王组长").click()
    await expect(page.locator("#chat-title")).to_have_text("王组长")
    card = page.locator(".card", has_text="132.00").first
    await expect(card).to_be_visible()
    approve = card.locator(".card-buttons .btn", has_text="同意")
    await expect(approve).to_be_visible()
    await expect(approve).to_be_enabled()
    await approve.click()

    decided = page.locator(".card", has_text="132.00").first
    await expect_decided(decided, "王组长", "同意", "good")
    for button in await decided.locator(".card-buttons .btn").all():
        await expect(button).to_be_disabled()
    await page.screenshot(path=str(SCREENSHOT.with_name("console-lead.png")))

    await page.locator(".member", has_text="李总监").click()
    await expect(page.locator("#chat-title")).to_have_text("李总监")
    big = page.locator(".card", has_text="2880.00").first
    await expect(big).to_be_visible()
    history = big.locator(".card-history li")
    await expect(history.first).to_be_visible()
    await expect(history.first).to_contain_text("近180天订单")

    await big.scroll_into_view_if_needed()
    await page.screenshot(path=str(SCREENSHOT), full_page=False)


async def test_transfer_then_reject_with_a_reason(page: Page, console_url: str) -> None:
    await open_chat(page, console_url, "王组长")
    card = page.locator(".card:not(.closed)", has_text="38.00").first
    await card.locator(".btn", has_text="转交").click()
    await card.locator("select.prompt-input").select_option("刘组长")
    await card.locator(".btn", has_text="确认转交").click()
    moved = page.locator(".card.closed", has_text="38.00").first
    await expect(moved.locator(".card-status")).to_contain_text("转交给 刘组长")

    await page.locator(".member", has_text="刘组长").click()
    await expect(page.locator("#chat-title")).to_have_text("刘组长")
    mine = page.locator(".card:not(.closed)", has_text="38.00").last
    case_id = await mine.locator(".case-id").inner_text()
    # As in WeCom: no box on the card; the bot asks in the chat, the next message answers.
    await mine.locator(".btn", has_text="驳回").click()
    assert await mine.locator("textarea").count() == 0
    asked = page.locator(".row.bot .bubble", has_text=f"请直接回复驳回 {case_id} 的原因").last
    await expect(asked).to_be_visible(timeout=15_000)
    box = page.locator("#input")
    await expect(box).to_be_focused()
    await expect(box).to_have_attribute("placeholder", re.compile("回复驳回原因"))
    await box.fill("买家近 90 天多次以漏发为由申请，已核实发货完整")
    await box.press("Enter")
    rejected = page.locator(".card.closed", has_text="38.00").last
    await expect_decided(rejected, "刘组长", "驳回：买家近 90 天", "bad")
    await expect(page.locator(".row.bot .bubble").last).to_have_text(f"已驳回 {case_id}")
    await expect(box).not_to_have_attribute("placeholder", re.compile("回复驳回原因"))
    await rejected.locator(".trail-btn").click()  # the case's timeline keeps the reason
    entry = page.locator("#trail .trail-item", has_text="审批驳回")
    await expect(entry).to_contain_text("刘组长")
    await expect(entry).to_contain_text("买家近 90 天多次以漏发为由申请")
    await expect(page.locator("#trail .trail-item", has_text="转交")).to_contain_text("王组长")


async def test_typed_text_is_a_chat_message(page: Page, console_url: str) -> None:
    await open_chat(page, console_url, "小美")
    box = page.locator("#input")
    await box.fill("/帮助")
    await box.press("Enter")
    await expect(page.locator(".row.mine .bubble").last).to_have_text("/帮助")
    reply = page.locator(".row.bot .bubble").last
    await expect(reply).to_be_visible()
    await expect(reply).to_contain_text("/查单")
    await expect(box).to_have_value("")  # sent, so the box is cleared for the next one


async def test_warehouse_scans_a_waybill_and_inspects(page: Page, console_url: str) -> None:
    await open_chat(page, console_url, "小周")
    box = page.locator("#input")
    await box.fill("SF1401234567890")
    await page.locator("#send").click()
    await expect(page.locator(".row.mine .bubble").last).to_have_text("SF1401234567890")
    card = page.locator(".card", has_text="SF1401234567890").last
    await expect(card).to_be_visible()
    buttons = card.locator(".card-buttons .btn")
    await expect(buttons).to_have_text(["完好", "破损", "缺配件", "错发调包", "空包"])
    await buttons.filter(has_text="完好").click()
    await expect_decided(card, "小周", "完好", "good")
    await expect(buttons.first).to_be_disabled()


HOSTILE = '<img src=x onerror="window.__pwned=1">'


async def test_text_from_shops_and_buyers_shows_as_text(
    page: Page, demo: tuple[web.Application, str]
) -> None:
    """Reason, buyer nick and item name come from the shop's customers: they must show
    literally, never become markup (console.js builds the DOM with textContent)."""
    app, url = demo
    ctx = app[CTX]
    item = Item(sku="XSS-1", name=f"猫抓板{HOSTILE}", qty=1, unit_price_fen=13200)
    request = ReturnRequest(
        key="demo:xss:v1", channel="generic", shop="demo-store", external_id="AS-XSS-1",
        order_id="SO-XSS-1", kind="refund_only", status="requested", amount_fen=13200,
        version="1", occurred_at=ctx.clock(), reason_code="quality.defect",
        reason_text=f"<b>坏了</b>{HOSTILE}", buyer_ref="buyer-xss", buyer_nick=f"<i>{HOSTILE}",
        items=(item,),
    )  # fmt: skip
    await on_return_request(request, ctx)
    await app[WORKER].drain()
    await open_chat(page, url, "王组长")
    card = page.locator(".card", has_text="SO-XSS-1").last
    await expect(card).to_be_visible()
    await expect(card).to_contain_text("<b>坏了</b>")
    await expect(card).to_contain_text(f"<i>{HOSTILE}")
    await expect(card).to_contain_text(f"猫抓板{HOSTILE}")
    assert await card.locator("img, b, i").count() == 0
    assert await page.evaluate("window.__pwned") is None


async def test_a_row_that_commits_late_appears_in_its_place(
    page: Page, demo: tuple[web.Application, str]
) -> None:
    """On PostgreSQL a lower id can become visible after a higher one was shown."""
    app, url = demo

    async def add(row_id: int, text: str) -> None:
        await add_console_row(app[CTX].db, "小美", row_id, text)

    await open_chat(page, url, "小美")
    await add(1000, "第一条")
    await add(1002, "第三条")
    bubbles = page.locator(".row.bot .bubble")
    await expect(bubbles).to_have_text(["第一条", "第三条"])
    await add(1001, "第二条")
    await expect(bubbles).to_have_text(["第一条", "第二条", "第三条"])


async def test_switching_member_during_a_poll_still_loads_the_new_chat(
    page: Page, console_url: str
) -> None:
    """Polling, the page's fallback where EventSource is missing: a poll for the old
    member is in flight when someone clicks another member. Its answer is dropped, and
    the new member's chat must still load and keep polling."""
    held, release = asyncio.Event(), asyncio.Event()
    await page.add_init_script("delete window.EventSource")

    async def hold_old_polls(route: Route) -> None:
        if "%E5%B0%8F%E7%BE%8E" in route.request.url:  # user=小美
            held.set()
            await release.wait()
        await route.continue_()

    await open_chat(page, console_url, "小美")
    await expect(page.locator(".placeholder")).to_contain_text("还没有消息")
    await expect(page.locator("#conn")).to_have_attribute("data-mode", "poll")
    await page.route("**/console/api/messages?*", hold_old_polls)
    await asyncio.wait_for(held.wait(), 15)  # the next poll for 小美 is now in flight
    await page.locator(".member", has_text="王组长").click()
    release.set()
    await expect(page.locator(".card", has_text="132.00").first).to_be_visible()


async def test_a_member_signs_in_with_a_link_and_acts_only_as_themselves(
    tmp_path: Path,
) -> None:
    """Outside demo mode: the admin's sign-in link, the login page, then a console locked
    to that member (no picker), who can still pick transfer targets and sign out."""
    port = free_port()
    base = demo_settings(port, tmp_path / "var")
    settings = dataclasses.replace(base, server=dataclasses.replace(base.server, demo=False))
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await seed(app[CTX])
        await app[WORKER].drain()
        link = signin_link(
            settings, app[CTX].keyring, "王组长", timedelta(hours=1), datetime.now(UTC)
        )
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{port}/console")
                await expect(page.locator("#code")).to_be_visible()  # not signed in
                await page.goto(link)
                await expect(page.locator(".login-who")).to_contain_text("王组长")
                await page.locator(".login-button").click()
                await expect(page.locator("#chat-title")).to_have_text("王组长")
                await expect(page.locator(".member")).to_have_count(1)
                card = page.locator(".card:not(.closed)", has_text="38.00").first
                await card.locator(".btn", has_text="转交").click()
                await expect(
                    card.locator("select.prompt-input option", has_text="刘组长")
                ).to_have_count(1)
                await page.locator("#logout").click()
                await expect(page.locator("#code")).to_be_visible()
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


async def test_warehouse_uploads_a_label_photo_and_inspects(
    page: Page, console_url: str, tmp_path: Path
) -> None:
    """The 照片 button: a photographed Code 128 label is a scan, shown in the chat."""
    photo = tmp_path / "label.jpg"
    photo.write_bytes(label_photo("SF1401234567890", angle=3, width=800))
    await open_chat(page, console_url, "小周")
    await page.locator("#photo").set_input_files(str(photo))
    picture = page.locator(".row.mine .bubble.photo img").last
    await expect(picture).to_be_visible(timeout=15_000)
    assert await picture.evaluate("img => img.naturalWidth") == 800  # the stored file, served
    card = page.locator(".card", has_text="SF1401234567890").last
    await expect(card).to_be_visible(timeout=15_000)
    buttons = card.locator(".card-buttons .btn")
    await expect(buttons).to_have_text(["完好", "破损", "缺配件", "错发调包", "空包"])
    await card.locator(".trail-btn").click()  # the photo's scan is in the case's timeline
    scanned = page.locator("#trail .trail-item", has_text="仓库扫码签收")
    await expect(scanned).to_contain_text("小周")
