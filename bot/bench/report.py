"""What a bench run prints: a progress line while it runs, a table or JSON at the end."""

from __future__ import annotations

import json
import sys
from typing import Any

from bot.bench.load import Stats


class Progress:
    """`[#####.....] 5/14 label` on stderr, redrawn in place on a terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done = min(self.done + 1, self.total)
        filled = round(20 * self.done / self.total)
        line = f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} {label}"
        if self.tty:
            sys.stderr.write(f"\r\x1b[2K{line}")
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def merge(rounds: list[Stats]) -> dict[str, Any]:
    """Several rounds of one target: total rate, mean p50, worst p99 and max."""
    seconds = sum(r.seconds for r in rounds)
    requests = sum(r.requests for r in rounds)
    return {
        "rounds": len(rounds),
        "requests": requests,
        "errors": sum(r.errors for r in rounds),
        "rate": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(sum(r.p50_ms for r in rounds) / len(rounds), 2) if rounds else 0.0,
        "p99_ms": round(max((r.p99_ms for r in rounds), default=0.0), 2),
        "max_ms": round(max((r.max_ms for r in rounds), default=0.0), 2),
        "cpu_ms_per_request": cpu_ms(rounds),
    }


def cpu_ms(rounds: list[Stats]) -> float:
    """The target's CPU per answered request: what a shared machine's load distorts
    least (a round slowed by other work still costs its requests the same CPU)."""
    requests = sum(r.requests for r in rounds)
    return round(1000 * sum(r.cpu_seconds for r in rounds) / requests, 3) if requests else 0.0


def ratio(server: dict[str, Any], bare: dict[str, Any]) -> float:
    return round(server["rate"] / bare["rate"], 4) if bare.get("rate") else 0.0


def cpu_ratio(server: dict[str, Any], bare: dict[str, Any]) -> float:
    """Bare CPU per request over the server's: the ratio if both were CPU-bound."""
    own = server.get("cpu_ms_per_request")
    return round(bare["cpu_ms_per_request"] / own, 4) if own else 0.0


def table(result: dict[str, Any]) -> str:
    """The run as a plain-text table (what docs/performance.md quotes)."""
    out = [
        f"returnhub bench · {result['engine']} · client {result['client']} · "
        f"{result['connections']} connections · {result['workers']} worker(s)",
        "",
        f"{'scenario':<22}{'target':<8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'errors':>8}{'ratio':>8}{'CPU ms/req':>12}{'CPU ratio':>11}",
    ]
    for name, row in result["ab"].items():
        for target in ("bare", "server"):
            s = row[target]
            server = target == "server"
            r = f"{row['ratio']:.3f}" if server else ""
            c = f"{row['cpu_ratio']:.3f}" if server else ""
            out.append(
                f"{name:<22}{target:<8}{s['rate']:>10.1f}{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}"
                f"{s['max_ms']:>9.1f}{s['errors']:>8}{r:>8}{s['cpu_ms_per_request']:>12.3f}{c:>11}"
            )
    out.append("")
    for name, s in result["during_intake"].items():
        out.append(
            f"{name + ' (under load)':<30}{s['rate']:>10.1f} req/s  p50 {s['p50_ms']:.1f} ms"
            f"  p99 {s['p99_ms']:.1f} ms  errors {s['errors']}"
        )
    ob = result["outbox"]
    out.append(
        f"outbox due depth: max {ob['max_depth']} during load, {ob['depth_at_end']} when it"
        f" stopped; drained in {ob['drain_seconds']} s; {ob['held_by_rate_limit']} held by"
        " WeCom's per-member limit"
    )
    for extra in ("wecom_text", "wecom_click"):
        if extra in result["effects"]:
            out.append(f"{extra}: {json.dumps(result['effects'][extra], ensure_ascii=False)}")
    out += ["", f"{'stored cases':>12}{'intake req/s':>14}{'vs first':>10}{'RSS MiB':>10}"
            f"{'vs first':>10}{'api p50 ms':>12}{'api req/s':>11}{'CPU ms/req':>12}"
            f"{'dashboard p50 / p99 ms':>24}"]  # fmt: skip
    for row in result["scale"]:
        out.append(
            f"{row['cases']:>12}{row['intake']['rate']:>14.1f}{row['intake_vs_first']:>10.2f}"
            f"{row['rss_mib']:>10.1f}{row['rss_vs_first']:>10.2f}{row['api']['p50_ms']:>12.1f}"
            f"{row['api']['rate']:>11.1f}{row['intake']['cpu_ms_per_request']:>12.3f}"
            f"{row['dashboard']['p50_ms']:>15.1f} / {row['dashboard']['p99_ms']:<6.1f}"
        )
    out.append("")
    for row in result["sla_tick"]:
        out.append(
            f"SLA tick, {row['timers']:>7} open timers: {row['ms']:.1f} ms for {row['due']} due"
        )
    return "\n".join(out)
