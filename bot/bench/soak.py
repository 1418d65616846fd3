"""`returnhub bench --soak`: a steady mixed load for minutes, sampled once a minute.

One real `returnhub serve` (WeCom and the OMS pointed at the sink, as in the other
rounds) takes a paced mix, the same every sample: new return requests, duplicates
of the last sample's, WeCom texts from several members and clicks on the CS lead's
open cards, and API reads. After each sample the server's RSS and open file
descriptors (its whole process tree, from /proc), the outbox's pending rows and the
sample's latencies are recorded; bot/bench/soak_report.py judges whether each
stayed flat. Paced (not as fast as possible) so that a minute's work is the same at
minute 1 and minute 10 and a growing figure means the server grew, not the load.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.bench import procs, soak_report, traffic
from bot.bench.load import Req, drive
from bot.bench.report import Progress
from bot.bench.run import count, now, temp_database
from bot.bench.scenarios import open_lead_cards
from bot.bench.seed import seed_cases
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Case, OutboxMessage

# Members who chat (texts) and the share of each kind of request in a sample. Texts
# and CS lead cases stay under WeCom's 30 messages a minute per member, which the
# outbox honours: more would hold rows back, and the depth would grow by design.
TALKERS = ("xiaozhou", "xiaomei", "chenfengkong", "lizongjian", "zhaocaiwu")
SHARES = {"intake": 0.45, "duplicate": 0.10, "text": 0.02, "read": 0.40}
LEAD_CASES_PER_MINUTE = 10
AUTH = (("Authorization", f"Bearer {procs.API_TOKEN}"),)
READS = (
    Req("GET", "/api/cases?status=pending_approval", AUTH),
    Req("GET", "/api/cases?limit=20", AUTH),
    Req("GET", "/healthz"),
)


@dataclass(frozen=True)
class SoakOptions:
    db: str | None
    minutes: int
    sample_seconds: float
    rate: float  # requests a second, all kinds together
    connections: int


class Mix:
    """The requests of one sample: `rate * seconds` of them, the kinds interleaved."""

    def __init__(self, opts: SoakOptions) -> None:
        self.opts = opts
        self.sealer = traffic.WecomSealer()
        self.sample = 0
        self.previous: list[Req] = []  # last sample's new webhooks, to send again
        self.clicked: set[int] = set()
        self.msg_ids = itertools.count(1)

    async def build(self, db: Database) -> list[Req]:
        self.sample += 1
        total = max(10, round(self.opts.rate * self.opts.sample_seconds))
        share = {kind: max(1, round(total * part)) for kind, part in SHARES.items()}
        at = now()
        lead = max(1, round(LEAD_CASES_PER_MINUTE * self.opts.sample_seconds / 60))
        prefix = f"soak{self.sample}"
        # The CS lead's cases first: their cards are out by the next sample, to be clicked.
        fresh = traffic.generic(prefix + "lead", lead, at, amounts=("132.00",))
        fresh += traffic.generic(prefix, share["intake"], at, amounts=("29.90",))
        again = [traffic.signed_generic(r.body, at) for r in self.previous[: share["duplicate"]]]
        self.previous = fresh
        texts = [
            self.sealer.texts(TALKERS[n % len(TALKERS)], "/帮助", 1, at, next(self.msg_ids))[0]
            for n in range(share["text"])
        ]
        cards = [c for c in await open_lead_cards(db, 200) if c.card_id not in self.clicked]
        clicks = [self.sealer.click(c, at) for c in cards[:lead]]
        self.clicked.update(c.card_id for c in cards[:lead])
        reads = [READS[n % len(READS)] for n in range(share["read"])]
        kinds = (fresh, again, texts, clicks, reads)
        return [r for group in itertools.zip_longest(*kinds) for r in group if r is not None]


async def sample(server: procs.Child, db: Database, mix: Mix, number: int) -> dict[str, Any]:
    requests = await mix.build(db)
    opts = mix.opts
    stats = await drive(
        "python", server.base, requests, connections=opts.connections,
        seconds=opts.sample_seconds, rate=opts.rate,
    )  # fmt: skip
    return {
        "sample": number,
        "requests": stats.requests,
        "errors": stats.errors,
        "rate": round(stats.rate, 1),
        "p50_ms": round(stats.p50_ms, 2),
        "p99_ms": round(stats.p99_ms, 2),
        "rss_mib": round(server.rss_mib(), 1),
        "open_fds": server.open_fds(),
        "outbox_pending": await count(db, OutboxMessage, OutboxMessage.status == "pending"),
    }


async def soak(opts: SoakOptions, tmp: Path) -> dict[str, Any]:
    """Start the sink and the server on a fresh database, run `opts.minutes` samples."""
    progress = Progress(opts.minutes)
    load_before = os.getloadavg()
    async with temp_database(opts.db, tmp, "soak") as url:
        db = Database(url)
        await upgrade(db)
        await seed_cases(db, 0, 1_000)  # a table with history, as in the scale rounds
        sink = await procs.start_helper("sink", tmp)
        port = procs.free_port()
        config = procs.write_config(tmp, port=port, db_url=url, sink=sink.base)
        server = await procs.start_server(config, port, tmp)
        samples = []
        try:
            mix = Mix(opts)
            for minute in range(1, opts.minutes + 1):
                samples.append(await sample(server, db, mix, minute))
                progress.step(f"soak sample {minute}")
            cases = await count(db, Case)
        finally:
            server.stop()
            sink.stop()
            await db.dispose()
    return {
        "engine": "postgresql" if opts.db else "sqlite",
        "client": "python",
        "cpus": os.cpu_count(),
        "load_average": {
            "start": [round(x, 2) for x in load_before],
            "end": [round(x, 2) for x in os.getloadavg()],
        },  # fmt: skip
        "connections": opts.connections,
        "rate": opts.rate,
        "sample_seconds": opts.sample_seconds,
        "samples": samples,
        "cases_at_end": cases,
        "cards_clicked": len(mix.clicked),
    }


def cmd_soak(args: Any) -> int:
    """`bench --soak`: print the samples and the verdict (exit 0 either way: the
    verdict is a reading to judge, and a shared machine can make one noisy)."""
    opts = SoakOptions(
        db=args.db,
        minutes=args.minutes,
        sample_seconds=args.sample_seconds,
        rate=args.rate,
        connections=min(args.connections, 16),
    )
    with tempfile.TemporaryDirectory(prefix="returnhub-soak-") as name:
        result = asyncio.run(soak(opts, Path(name)))
    result["rule"] = soak_report.RULE
    result["verdict"] = soak_report.verdict(result["samples"])
    print(
        json.dumps(result, ensure_ascii=False, indent=2)
        if args.json
        else soak_report.table(result)
    )
    return 0
