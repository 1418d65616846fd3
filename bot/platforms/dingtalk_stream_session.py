"""One DingTalk Stream WebSocket: read frames, run their handlers, ack each after it returned.

A CALLBACK (robot message, card click) or EVENT frame runs its topic's handler in
a task this session tracks (at most `max_inflight` at a time: reading pauses when
they are all busy). The handler stores the event's idempotency key before it
returns, so the ack — sent only then — never confirms something a crash could
lose. A handler that fails or overruns `handler_timeout` gets a 500 ack (events:
status LATER), which is no success: the gateway re-pushes, and the key makes the
second run do nothing twice. A `CallbackRejected` 4xx (not our robot, bad payload)
is acked with that code: refused for good, as the HTTP route would answer it; its
503 (shutting down) is a 500, so the frame comes back to a replica still running.
A frame whose messageId is already running is not started again (the running one
will ack it).

SYSTEM frames are answered at once, in the read loop: a ping's `data` is echoed,
a `disconnect` ends reading so the owner reconnects (the gateway closes 10 s later).
`close` lets running handlers finish within `drain` seconds, so their acks still go
out on this socket, then cancels the rest and closes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp

from bot.platforms.dingtalk_stream_protocol import (
    CALLBACK,
    DISCONNECT,
    EVENT,
    EVENTS,
    PING,
    SYSTEM,
    Frame,
    Handler,
    ack,
    failure,
    success,
)
from bot.platforms.inbound import CallbackRejected

log = logging.getLogger(__name__)


class StreamSession:
    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        handlers: Mapping[str, Handler],
        *,
        handler_timeout: float,
        max_inflight: int,
    ) -> None:
        self._ws = ws
        self._handlers = handlers
        self._timeout = handler_timeout
        self._slots = asyncio.Semaphore(max_inflight)
        self._running: dict[str, asyncio.Task[None]] = {}
        self.frames = 0  # frames received: the connection worked
        self.disconnect_asked = False

    async def run(self) -> None:
        """Read until the socket closes or the gateway asks to disconnect."""
        async for msg in self._ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                log.warning("dingtalk stream: socket error %s", self._ws.exception())
                return
            if self.disconnect_asked:
                return

    async def _on_text(self, raw: str) -> None:
        try:
            frame = Frame.parse(raw)
        except ValueError as exc:
            log.warning("dingtalk stream: ignored a malformed frame (%s)", exc)
            return
        self.frames += 1
        if frame.type == SYSTEM:
            if frame.topic == PING:
                await self._send(ack(frame.message_id, frame.data))
            elif frame.topic == DISCONNECT:
                log.info("dingtalk stream: gateway asks to reconnect (%s)", frame.data[:200])
                self.disconnect_asked = True
            else:
                log.info("dingtalk stream: system topic %r ignored", frame.topic)
            return
        if frame.message_id in self._running:
            log.info("dingtalk stream: %s re-pushed while running; one run", frame.message_id)
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(frame), name=f"dingtalk-stream {frame.message_id}")
        self._running[frame.message_id] = task

    async def _handle(self, frame: Frame) -> None:
        try:
            await self._send(await self._answer(frame))
        finally:
            self._running.pop(frame.message_id, None)
            self._slots.release()

    async def _answer(self, frame: Frame) -> str:
        handler = self._handlers.get(EVENTS if frame.type == EVENT else frame.topic)
        if handler is None or frame.type not in (EVENT, CALLBACK):
            log.warning("dingtalk stream: no handler for %s %r", frame.type, frame.topic)
            return failure(frame, 404, "topic not handled")
        try:
            data = frame.payload()
        except ValueError as exc:
            log.warning("dingtalk stream: %s has bad data (%s)", frame.message_id, exc)
            return failure(frame, 400, "bad request")
        try:
            answer = await asyncio.wait_for(handler(data), self._timeout)
        except CallbackRejected as exc:  # the adapter refuses it: final unless it is a 5xx
            log.warning(
                "dingtalk stream: %s refused (%d): %s", frame.message_id, exc.status, exc.reason
            )
            return failure(frame, exc.status if exc.status < 500 else 500, exc.reason)
        except TimeoutError:
            log.error(
                "dingtalk stream: %s %s overran %ss", frame.topic, frame.message_id, self._timeout
            )
            return failure(frame, 500, "internal error")
        except Exception:
            log.exception("dingtalk stream: handler for %s failed", frame.topic)
            return failure(frame, 500, "internal error")
        return success(frame, answer)

    async def _send(self, text: str) -> None:
        if self._ws.closed:
            log.info("dingtalk stream: ack not sent, socket closed (the gateway re-pushes)")
            return
        try:
            await self._ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.info("dingtalk stream: ack not sent (%s); the gateway re-pushes", exc)

    async def close(self, drain: float) -> None:
        tasks = list(self._running.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._ws.close()
