"""DingTalk Stream mode: robot messages and card clicks over an outbound WebSocket.

Written on aiohttp instead of the official `dingtalk-stream` package. Its released
0.24.x `start()` calls `requests.post` (no timeout) inside the coroutine, blocking
the event loop, sleeps fixed 10 s / 3 s between attempts, swallows
CancelledError (so it cannot be stopped), and starts untracked
`asyncio.create_task`s for the keepalive and for every frame; its
`AsyncChatbotHandler` acks a robot message before processing it, on a thread
pool. Its 0.24.4 beta moves the open-connection call to a thread and tracks its
tasks, but its reply helpers still call `requests` from async code. The protocol
is small (dingtalk_stream_protocol.py), so it lives here, on our ClientSession.

Exactly one replica holds the connection: the `storage/leases.py` lease named
after the app key, renewed every ttl/3. Replicas without it retry the lease every
ttl/3, so one takes over within ~4/3 ttl of the holder's death (at once after a
clean stop, which releases it). A holder that loses its lease (or cannot renew it
before it runs out) closes its connection; the gateway re-pushes what it had not
acked to the new holder, and the handlers' idempotency keys make that harmless.

While holding: open a connection (a fresh ticket each time, never reused), read
it (dingtalk_stream_session.py) until it drops or the gateway says disconnect,
then reconnect — at once after a disconnect, otherwise after a capped
exponential backoff with jitter that restarts once a connection carried frames.
Every task is tracked; `stop` drains running handlers, closes, releases the lease.

`setup(app)` runs it for the app's lifetime in `mode = "stream"`, with the
handlers bot/platforms/dingtalk.py builds for both modes (`stream_handlers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta

import aiohttp
from aiohttp import web

from bot.appkeys import CTX
from bot.keys import key
from bot.platforms.dingtalk import stream_handlers
from bot.platforms.dingtalk_stream_protocol import Backoff, Handler, StreamError, open_connection
from bot.platforms.dingtalk_stream_session import StreamSession
from storage import leases
from storage.db import Database

log = logging.getLogger(__name__)


class DingtalkStream:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        api_base: str,
        client_id: str,
        client_secret: str,
        handlers: Mapping[str, Handler],
        db: Database,
        holder: str,
        *,
        lease_ttl: timedelta = timedelta(seconds=15),
        backoff: Backoff | None = None,
        heartbeat: float = 30.0,
        handler_timeout: float = 30.0,
        max_inflight: int = 16,
        drain: float = 10.0,
    ) -> None:
        if not handlers:
            raise ValueError("a Stream connection needs at least one topic handler")
        self._http = http
        self._api_base = api_base
        self._client_id = client_id
        self._client_secret = client_secret
        self._handlers = dict(handlers)
        self._db = db
        self.holder = holder
        self.lease = key("dingtalk-stream", client_id)
        self._ttl = lease_ttl
        self._backoff = backoff or Backoff()
        self._heartbeat = heartbeat
        self._handler_timeout = handler_timeout
        self._max_inflight = max_inflight
        self._drain = drain
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.holding = asyncio.Event()  # set while this replica holds the lease
        self.connected = asyncio.Event()  # set while a socket is open
        self.tickets = 0  # open-connection calls that returned a ticket

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the Stream client is already running")
        self._task = asyncio.create_task(self._run(), name=f"dingtalk-stream {self.holder}")

    async def stop(self) -> None:
        """Stop reading, let running handlers ack, close the socket, release the lease."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _pause(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def _run(self) -> None:
        every = self._ttl.total_seconds() / 3
        try:
            while not self._stop.is_set():
                if await self._acquire():
                    await self._while_held(every)
                else:
                    await self._pause(self._stop, every)
        finally:
            with contextlib.suppress(Exception):  # expiry frees it anyway
                await leases.release(self._db, self.lease, self.holder)

    async def _acquire(self) -> bool:
        try:
            return await leases.acquire(self._db, self.lease, self.holder, self._ttl)
        except Exception as exc:  # the database is down: nobody can take it either
            log.warning("dingtalk stream: lease %s not checked (%s)", self.lease, exc)
            return False

    async def _while_held(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        held_until = loop.time() + self._ttl.total_seconds()
        log.info("dingtalk stream: %s holds %s; connecting", self.holder, self.lease)
        self.holding.set()
        leave = asyncio.Event()
        connection = asyncio.create_task(self._connect_loop(leave), name="dingtalk-stream socket")
        try:
            while not self._stop.is_set():
                await self._pause(self._stop, every)
                if self._stop.is_set():
                    return
                try:
                    if not await leases.acquire(self._db, self.lease, self.holder, self._ttl):
                        log.warning(
                            "dingtalk stream: %s lost %s; closing", self.holder, self.lease
                        )
                        return
                    held_until = loop.time() + self._ttl.total_seconds()
                except Exception as exc:
                    if loop.time() + every >= held_until:
                        log.error("dingtalk stream: lease not renewed in time (%s); closing", exc)
                        return
                    log.warning("dingtalk stream: lease renewal failed (%s); retrying", exc)
        finally:
            leave.set()
            await connection
            self.holding.clear()

    async def _connect_loop(self, leave: asyncio.Event) -> None:
        while not leave.is_set():
            session: StreamSession | None = None
            try:
                session = await self._connect_once(leave)
            except (StreamError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("dingtalk stream: connection failed (%s)", exc)
            except Exception:  # never let the socket task die while we hold the lease
                log.exception("dingtalk stream: unexpected failure")
            if session is not None and session.frames:
                self._backoff.reset()
            if session is not None and session.disconnect_asked:
                continue
            await self._pause(leave, self._backoff.next())

    async def _connect_once(self, leave: asyncio.Event) -> StreamSession:
        ticket = await open_connection(
            self._http, self._api_base, self._client_id, self._client_secret, self._handlers
        )
        self.tickets += 1
        async with self._http.ws_connect(
            ticket.url(), heartbeat=self._heartbeat, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        ) as ws:
            session = StreamSession(
                ws, self._handlers, handler_timeout=self._handler_timeout,
                max_inflight=self._max_inflight,
            )  # fmt: skip
            self.connected.set()
            log.info("dingtalk stream: connected")
            reader = asyncio.create_task(session.run(), name="dingtalk-stream reader")
            leaving = asyncio.create_task(leave.wait(), name="dingtalk-stream leave")
            try:
                await asyncio.wait({reader, leaving}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, leaving):
                    task.cancel()
                await asyncio.gather(reader, leaving, return_exceptions=True)
                self.connected.clear()
                await session.close(self._drain)
            failed = reader.exception() if reader.done() and not reader.cancelled() else None
            if failed is not None:
                raise failed
        return session


STREAM: web.AppKey[DingtalkStream] = web.AppKey("dingtalk_stream", DingtalkStream)


def replica_name() -> str:
    """This process among the replicas: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def setup(app: web.Application, http: Callable[[], aiohttp.ClientSession]) -> None:
    """Stream mode: hold the connection while the app runs (after `dingtalk.install`).

    Appended after the app's own resources, so it starts once the dispatcher exists and
    stops first at shutdown: no frame is taken in while the dispatcher drains.
    """

    async def hold(app: web.Application) -> AsyncIterator[None]:
        ctx = app[CTX]
        settings = ctx.settings.dingtalk
        stream = app[STREAM] = DingtalkStream(
            http(), settings.api_base, settings.app_key, settings.app_secret,
            stream_handlers(app), ctx.db, replica_name(),
        )  # fmt: skip
        log.info("dingtalk: Stream mode, replica %s (HTTP callbacks not mounted)", stream.holder)
        stream.start()
        yield
        await stream.stop()

    app.cleanup_ctx.append(hold)
