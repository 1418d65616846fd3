"""Prometheus metrics, one registry per application instance.

No module-level collectors and no default global registry (STYLE.md rule 6): tests
build several apps in one process, and a global registry would refuse to register
the same metric twice. `create_app` builds one `Metrics` and serves `render()` on
`/metrics`, calling `refresh(db)` first so the gauges read the database, which is
the truth shared by every replica.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from storage import outbox
from storage.db import Database
from storage.models import Case

NAMESPACE = "returnhub"


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
        self.cases_by_status = Gauge(
            "cases",
            "Return cases by workflow status, read from the database on scrape.",
            ["status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "outbox_depth",
            "Outbox rows waiting (pending) or dead-lettered (dead).",
            ["status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
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
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def refresh(self, db: Database) -> None:
        """Set the gauges from the database (cheap GROUP BY queries, run per scrape).

        The gauges are cleared first so a status that no longer has any case drops to
        absent instead of keeping its last value.
        """
        async with db.read() as session:
            rows = (
                await session.execute(select(Case.status, func.count()).group_by(Case.status))
            ).all()
            depth = await outbox.depth(session)
        self.cases_by_status.clear()
        for status, count in rows:
            self.cases_by_status.labels(status=status).set(count)
        for status, count in depth.items():
            self.outbox_depth.labels(status=status).set(count)
