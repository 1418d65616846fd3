"""`returnhub bench`: set up the processes, run the scenarios, print the result."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

from bot.bench import procs, scenarios, soak
from bot.bench.load import pick_client
from bot.bench.report import Progress, table
from bot.bench.run import Options, Run, temp_database
from bot.bench.seed import seed_cases
from storage.db import Database
from storage.migrate import upgrade

FULL = {"seconds": 10.0, "rounds": 2, "sizes": (1_000, 10_000, 100_000),
        "timer_sizes": (1_000, 100_000), "drain_limit": 120.0}  # fmt: skip
QUICK = {"seconds": 1.0, "rounds": 1, "sizes": (200, 2_000),
         "timer_sizes": (1_000, 5_000), "drain_limit": 30.0}  # fmt: skip


def options(args: argparse.Namespace) -> Options:
    preset: dict[str, Any] = dict(QUICK if args.quick else FULL)
    profile = Path(args.profile).resolve() if args.profile else None
    if profile:
        profile.parent.mkdir(parents=True, exist_ok=True)
    if args.seconds:
        preset["seconds"] = args.seconds
    if args.rounds:
        preset["rounds"] = args.rounds
    return Options(
        client=pick_client(args.client),
        db=args.db,
        connections=args.connections,
        burst=args.burst,
        workers=args.workers,
        profile=profile,
        **preset,
    )


def steps(opts: Options) -> int:
    """Progress steps: two per A/B round of four scenarios, two per scale size."""
    return 4 * 2 * opts.rounds + 2 * len(opts.sizes) + 1


async def bench(opts: Options) -> dict[str, Any]:
    progress = Progress(steps(opts))
    with tempfile.TemporaryDirectory(prefix="returnhub-bench-") as name:
        tmp = Path(name)
        async with temp_database(opts.db, tmp, "cases") as url:
            db = Database(url)
            await upgrade(db)
            await seed_cases(db, 0, opts.sizes[0])
            sink = await procs.start_helper("sink", tmp)
            bare = await procs.start_helper("bare", tmp, copies=opts.workers)
            port = procs.free_port()
            config = procs.write_config(tmp, port=port, db_url=url, sink=sink.base)

            async def restart() -> procs.Child:
                return await procs.start_server(config, port, tmp, workers=opts.workers)

            # Only the first server (the A/B rounds) runs under the profiler.
            server = await procs.start_server(
                config, port, tmp, workers=opts.workers, profile=opts.profile
            )
            try:
                run = Run(opts, opts.client, db, progress)
                loaded = await scenarios.intake_under_load(run, bare, server)
                effects = await scenarios.wecom_rounds(run, bare, server)
                server, scale = await scenarios.scale(run, server, restart)
            finally:
                for child in (server, bare, sink):
                    child.stop()
                await db.dispose()
        progress.step("SLA tick with open timers")
        ticks = await scenarios.sla_tick(opts, tmp)
    return {
        "engine": "postgresql" if opts.db else "sqlite",
        "client": opts.client,
        "connections": opts.connections,
        "burst_connections": opts.burst,
        "workers": opts.workers,
        "cpus": os.cpu_count(),
        "seconds_per_round": opts.seconds,
        "ab": run.summary(),
        "during_intake": loaded["reads"],
        "outbox": loaded["outbox"],
        "effects": effects,
        "scale": scale,
        "sla_tick": ticks,
    }


def cmd_bench(args: argparse.Namespace) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one migration per temp database
    if args.soak:
        return soak.cmd_soak(args)
    opts = options(args)
    result = asyncio.run(bench(opts))
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else table(result))
    if opts.profile:
        summary = opts.profile.with_suffix(".txt")
        with summary.open("w") as out:
            stats = pstats.Stats(str(opts.profile), stream=out)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(40)
        print(f"profile: {opts.profile} ({summary})", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="压测：与裸 aiohttp 端点对比 / load benchmark against a bare aiohttp endpoint",
    )
    p.add_argument("--db", help="PostgreSQL 地址（在其上新建临时库，结束后删除）；默认临时 SQLite")
    p.add_argument("--quick", action="store_true", help="约 20 秒的冒烟运行 / ~20 s smoke run")
    p.add_argument("--json", action="store_true", help="输出 JSON 而不是表格 / print JSON")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                   help="压测客户端：auto 有 wrk 时用 wrk / load client")  # fmt: skip
    p.add_argument("--connections", type=int, default=64, help="并发连接数（默认 64）")
    p.add_argument(
        "--burst", type=int, default=200,
        help="突发场景的并发连接数（默认 200）/ connections of the burst intake rounds",
    )  # fmt: skip
    p.add_argument("--seconds", type=float, help="每轮时长（秒）/ seconds per round")
    p.add_argument("--rounds", type=int, help="每个场景的 A/B 轮数 / A/B rounds per scenario")
    p.add_argument(
        "--workers", type=int, default=1,
        help="服务进程数，裸端点同样开这么多 / server workers (the ceiling gets as many)",
    )  # fmt: skip
    p.add_argument(
        "--profile", metavar="FILE",
        help="用 cProfile 记录服务端（会变慢，数字不可比）/ profile the server into FILE",
    )  # fmt: skip
    p.add_argument(
        "--soak", action="store_true",
        help="持续稳定的混合负载，每分钟采样 RSS、文件描述符、outbox 积压和 p99 / steady soak",
    )  # fmt: skip
    p.add_argument("--minutes", type=int, default=10, help="--soak 的采样次数（默认 10）")
    p.add_argument(
        "--sample-seconds", type=float, default=60.0,
        help="--soak 每次采样的时长（秒，默认 60）/ seconds per soak sample",
    )  # fmt: skip
    p.add_argument(
        "--rate", type=float, default=40.0,
        help="--soak 的稳定请求速率（每秒，默认 40）/ paced requests per second",
    )  # fmt: skip
    p.set_defaults(func=cmd_bench)
