"""Admin alerts (and sender replies) raised outside a handler, e.g. a platform adapter's
setup fault.

The same path as a dead letter's alert (bot/delivery.py): a text to every admin on
every enabled platform, through the outbox, marked `alert` so a dead alert does not
alert again. Adapters get this as a plain `alert(text)` callable and so never import
`handlers`.
"""

from __future__ import annotations

from bot.events import Sender
from handlers import notify
from handlers.context import Ctx
from handlers.people import holders


async def tell_admins(ctx: Ctx, text: str) -> None:
    """Queue `text` for every admin in its own transaction."""
    async with ctx.db.transaction() as session:
        admins = await holders(session, "admin")
        await notify.tell(session, ctx, admins, text, None, alert=True)


async def tell_sender(ctx: Ctx, sender: Sender, text: str) -> None:
    """Queue a chat text to `sender` in its own transaction (an adapter's reply about
    something that failed outside any handler, e.g. a photo the store could not keep)."""
    async with ctx.db.transaction() as session:
        await notify.send_text(session, ctx, sender, text)
