"""One worker of `returnhub serve --workers N`: the full app on a socket its parent bound.

Started by bot/workers.py as `python -m bot.worker_child --fd FD --slot I [--config P]`;
not a command for people. The parent has run the migrations, so the app starts
with `migrate=False`. Unlike `web.run_app`, a second SIGTERM/SIGINT is ignored: the
parent forwards one while systemd (KillMode=control-group) or a terminal's Ctrl-C
may send another, and run_app would let that one abort the drain half-way. A
worker whose parent is gone stops by itself rather than keep the port.

Every response carries `X-Returnhub-Worker: <pid>`, so an operator (and the
multi-worker test) can tell which worker answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket

from aiohttp import web

from bot.web.edge import server_kwargs

log = logging.getLogger("returnhub.workers")

WORKER_HEADER = "X-Returnhub-Worker"
PARENT_CHECK_SECONDS = 1.0


async def _stamp(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers[WORKER_HEADER] = str(os.getpid())


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            log.warning("父进程已退出，本工作进程停止 / the parent is gone: stopping")
            stop.set()


async def _serve(
    app: web.Application, sock: socket.socket, slot: int, parent: int, early: list[int]
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)  # set twice is set once
    if early:  # asked to stop while importing: start, then stop at once
        stop.set()
    runner = web.AppRunner(app, **server_kwargs(app))  # as `serve` with one process
    try:
        await runner.setup()  # the app's start-up: keyring, members, the clock
    except Exception:
        log.exception("工作进程 %d 启动失败 / worker %d failed to start", slot, slot)
        return 1
    watchdog = loop.create_task(_watch_parent(parent, stop))
    try:
        await web.SockSite(runner, sock).start()
        log.info("工作进程 %d 就绪 / worker %d ready (pid %d)", slot, slot, os.getpid())
        await stop.wait()
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        await runner.cleanup()  # stop intake, drain, stop the clock, flush, dispose
    return 0


def main(argv: list[str] | None = None) -> int:
    early: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda got, _frame: early.append(got))
    from bot.app import create_app
    from bot.cli import _load, _logging
    from bot.heap import freeze_after_start

    p = argparse.ArgumentParser(prog="returnhub-worker")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--slot", type=int, required=True)
    p.add_argument("--config")
    args = p.parse_args(argv)
    _logging(f"w{args.slot}")
    parent = os.getppid()
    settings = _load(args.config)  # exit 2 on a config error: the parent stops the server
    app = create_app(settings, migrate=False)
    app.on_response_prepare.append(_stamp)
    freeze_after_start(app)
    return asyncio.run(_serve(app, socket.socket(fileno=args.fd), args.slot, parent, early))


if __name__ == "__main__":
    raise SystemExit(main())
