"""The other processes of a bench run: the ceiling and the sink.

`bare` is the ceiling: an aiohttp endpoint that reads the body and answers 202
with a JSON body like the webhook's, with no work between — the rate no handler
on this framework can beat. `sink` stands in for the far side of the outbox:
WeCom's API (gettoken, message/send, update_template_card) and the OMS callback,
answering at once, so delivery is measured and not the network.

    python -m bot.bench.ceiling --mode bare --port 9001
"""

from __future__ import annotations

import argparse
import itertools
import json

from aiohttp import web

ACK = json.dumps({"case_id": "RC-000000-0000", "duplicate": False}).encode()


async def _bare(request: web.Request) -> web.Response:
    await request.read()
    status = 202 if request.method == "POST" else 200
    return web.Response(status=status, body=ACK, content_type="application/json")


def bare_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _bare)
    return app


def sink_app() -> web.Application:
    codes = itertools.count(1)

    async def gettoken(_: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "access_token": "bench", "expires_in": 7200})

    async def send(request: web.Request) -> web.Response:
        await request.read()
        code = f"bench-code-{next(codes)}"
        return web.json_response({"errcode": 0, "errmsg": "ok", "response_code": code})

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": []})

    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    app.router.add_post("/cgi-bin/message/send", send)
    app.router.add_route("*", "/{tail:.*}", ok)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="returnhub bench: ceiling or sink process")
    parser.add_argument("--mode", choices=("bare", "sink"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = bare_app() if args.mode == "bare" else sink_app()
    # reuse_port: several bare processes share the port, like `serve --workers N`.
    web.run_app(
        app, host="127.0.0.1", port=args.port, access_log=None, print=None, reuse_port=True
    )


if __name__ == "__main__":
    main()
