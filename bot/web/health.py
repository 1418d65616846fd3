"""`/healthz` for the load balancer, `/metrics` for Prometheus, and the request counter.

`/healthz` answers 503 when the database does not answer a `SELECT 1` within
`database.timeout_seconds`, so a replica that lost its database leaves the pool instead of
accepting webhooks it cannot store. It asks through two read-only connections of its own
(storage/db.py), so a writer that is busy (the SQLite lock held, PostgreSQL's write
connections all in transactions) or page reads holding the read pool neither slow it nor
make a healthy database look down.
`/metrics` refreshes the database-backed gauges (cases by status, outbox depth) on
every scrape; those are the truth shared by all replicas.

The middleware labels requests by the route's template (`/api/cases/{id}`), never
the raw path, and by a fixed set of methods: a scanner probing random URLs or
methods must not grow the label set without bound.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.appkeys import CTX, METRICS

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    """200 `{"status":"ok","db":"ok"}`, or 503 `{"status":"degraded","db":"unreachable"}`."""
    if await request.app[CTX].db.ping():
        return web.json_response({"status": "ok", "db": "ok"})
    log.warning("healthz: database unreachable")
    return web.json_response({"status": "degraded", "db": "unreachable"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    """The text exposition. If the database is down the gauges keep their last values
    (the scrape still carries the process counters, and /healthz reports the outage)."""
    collectors = request.app[METRICS]
    try:
        await collectors.refresh(request.app[CTX].db)
    except Exception:
        log.warning("metrics: could not refresh the database gauges", exc_info=True)
    body, content_type = collectors.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def route_label(request: web.Request) -> str:
    """The matched resource's canonical template, or "unmatched" (404/405)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by method, route template and status (errors included).

    The edge middleware (inside this one) has already turned client faults and an
    unreachable database into 4xx/499/503 answers, so what is left as 500 is a bug.
    """
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _count(request, exc.status)
        raise
    except Exception:
        _count(request, 500)
        raise
    _count(request, response.status)
    return response


def _count(request: web.Request, status: int) -> None:
    counters = request.config_dict.get(METRICS)
    if counters is None:
        return
    method = request.method if request.method in METHODS else "other"
    counters.http_requests.labels(
        method=method, route=route_label(request), status=str(status)
    ).inc()
