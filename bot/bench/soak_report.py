"""The soak's verdict and table: did RSS, open fds, outbox depth and p99 stay flat?

The rule, for each figure: the median of the last third of the samples may exceed
the median of the first third by at most 20 % plus a small absolute slack (so a
figure near zero, an outbox of 0 then 3 rows, is not called growing). A leak grows
without bound, so over ten minutes it shows as the last third above the first; the
medians keep one slow sample (a neighbour's burst on a shared machine) from deciding.
"""

from __future__ import annotations

import statistics
from typing import Any

GROWTH = 0.20
# figure -> (column title, absolute slack)
FIGURES = {
    "rss_mib": ("RSS MiB", 8.0),
    "open_fds": ("open fds", 4.0),
    "outbox_pending": ("outbox pending", 20.0),
    "p99_ms": ("p99 ms", 5.0),
}
RULE = (
    "flat = median of the last third of the samples <= 1.2 x median of the first third"
    " + slack (RSS 8 MiB, fds 4, outbox 20 rows, p99 5 ms)"
)


def verdict(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    third = max(1, len(samples) // 3)
    out = {}
    for name, (_title, slack) in FIGURES.items():
        first = statistics.median(s[name] for s in samples[:third])
        last = statistics.median(s[name] for s in samples[-third:])
        out[name] = {
            "first_third": first,
            "last_third": last,
            "flat": last <= first * (1 + GROWTH) + slack,
        }
    return out


def table(result: dict[str, Any]) -> str:
    load = result["load_average"]
    out = [
        f"returnhub bench --soak · {result['engine']} · {result['rate']:g} req/s paced on"
        f" {result['connections']} connections · {len(result['samples'])} samples of"
        f" {result['sample_seconds']:g} s · {result['cpus']} CPUs · load average"
        f" {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end",
        "",
        f"{'sample':>6}{'requests':>10}{'errors':>8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'RSS MiB':>10}{'open fds':>10}{'outbox pending':>16}",
    ]
    for s in result["samples"]:
        out.append(
            f"{s['sample']:>6}{s['requests']:>10}{s['errors']:>8}{s['rate']:>8.1f}"
            f"{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}{s['rss_mib']:>10.1f}{s['open_fds']:>10}"
            f"{s['outbox_pending']:>16}"
        )
    out += ["", f"verdict ({result['rule']}):"]
    for name, v in result["verdict"].items():
        word = "flat" if v["flat"] else "GROWING"
        out.append(
            f"  {FIGURES[name][0]:<15} first third {v['first_third']:>9.1f}"
            f"   last third {v['last_third']:>9.1f}   {word}"
        )
    out.append(
        f"cases at the end: {result['cases_at_end']}; CS lead cards clicked:"
        f" {result['cards_clicked']}"
    )
    return "\n".join(out)
