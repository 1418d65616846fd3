"""Prometheus metrics, one registry per application instance.

No module-level collectors and no default global registry (STYLE.md rule 6): tests
build several apps in one process, and a global registry would refuse to register
the same metric twice. `create_app` builds one `Metrics` and serves `render()` on
`/metrics`, calling `refresh(db)` first so the gauges read the database, which is
the truth shared by every replica.

Under `serve --workers N` (bot/workers.py) the parent sets PROMETHEUS_MULTIPROC_DIR
for its workers: prometheus_client then keeps each worker's counters in files there,
and whichever worker answers a scrape sums them all, so the counters neither depend
on which worker answered nor go back when one restarts. The database gauges are not
per process: they are a snapshot this worker read, exported beside the sums.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from storage import outbox_dead
from storage.db import Database
from storage.models import Case

NAMESPACE = "returnhub"
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # the variable prometheus_client reads


class DatabaseGauges:
    """Cases by status and outbox depth as last read from the database (a collector)."""

    def __init__(self) -> None:
        self.cases: dict[str, int] = {}
        self.depth: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        yield _by_status(
            "cases",
            "Return cases by workflow status, read from the database on scrape.",
            self.cases,
        )
        yield _by_status(
            "outbox_depth", "Outbox rows waiting (pending) or dead-lettered (dead).", self.depth
        )


def _by_status(name: str, documentation: str, counts: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=["status"])
    for status, count in counts.items():
        family.add_metric([status], count)
    return family


class Metrics:
    """The collectors the app, the outbox worker and the dashboard update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests served, by route template (not raw path, to bound cardinality).",
            ["method", "route", "status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.database = DatabaseGauges()
        self.registry.register(self.database)
        self.deliveries = Counter(
            "outbox_deliveries",
            "Outbox delivery outcomes by message kind: sent, retry or dead.",
            ["kind", "result"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.delivery_failures = Counter(
            "outbox_delivery_failures",
            "Failed delivery attempts (retried or dead-lettered) by message kind.",
            ["kind"],
            namespace=NAMESPACE,
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for the `/metrics` route."""
        shared = os.environ.get(MULTIPROCESS_DIR)
        if not shared:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        workers, snapshot = CollectorRegistry(), CollectorRegistry()
        MultiProcessCollector(workers, path=shared)
        snapshot.register(self.database)
        return generate_latest(workers) + generate_latest(snapshot), CONTENT_TYPE_LATEST

    async def refresh(self, db: Database) -> None:
        """Set the gauges from the database (cheap GROUP BY queries, run per scrape).

        The snapshot is replaced whole, so a status that no longer has any case drops
        to absent instead of keeping its last value.
        """
        async with db.read() as session:
            rows = (
                await session.execute(select(Case.status, func.count()).group_by(Case.status))
            ).all()
            depth = await outbox_dead.depth(session)
        self.database.cases = {status: count for status, count in rows}
        self.database.depth = dict(depth)
