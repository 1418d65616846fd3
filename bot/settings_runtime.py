"""The service's own sections: server, database, API, console, files, outbox, photos, digest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    timezone: str = "Asia/Shanghai"
    # Signs card-button tokens and API cursors; unset: one is generated and kept in the
    # database. Changing it keeps the old one valid for secret_grace_days (docs/operations.md).
    secret: str = ""
    secret_grace_days: int = 7
    demo: bool = False
    max_body_bytes: int = 1_048_576
    body_timeout_seconds: float = 10.0  # a body not complete by then gets 408
    # A connection with no complete request head this long after it opened (or after its
    # last answer) is closed: a client trickling header bytes holds no slot for longer.
    idle_timeout_seconds: float = 15.0
    # `returnhub serve` processes (bot/workers.py); 0: one per core on PostgreSQL, 1 on SQLite.
    workers: int = 0


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///./var/returnhub.db"
    timeout_seconds: float = 5.0  # connect, pooled-connection wait, /healthz
    statement_timeout_seconds: float = 10.0  # per statement; SQLite lock waits; 0 = none
    # Group commit (bot/writer.py): at most this many inbound events per transaction,
    # and on PostgreSQL up to this many such transactions at once, the extra ones only
    # for a backlog of full batches (SQLite has one writer).
    write_batch: int = 200
    write_concurrency: int = 4


@dataclass(frozen=True)
class ApiSettings:
    token: str = ""


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = False


@dataclass(frozen=True)
class FilesSettings:
    routing: str = "routing.toml"
    sla: str = "sla.toml"
    scripts: str = "scripts"
    evidence: str = "var/evidence"  # chat photos, content-addressed (storage/evidence.py)
    warehouse: str = "warehouse.toml"  # inspection outcomes, release timing, parts, abuse


@dataclass(frozen=True)
class OutboxSettings:
    """Delivery: retry schedule (bot/outbox_retry.py), batch, robot limit, tick, lease."""

    base_delay_seconds: float = 2.0  # first retry after 1-2 s, doubling per failure
    max_delay_seconds: float = 600.0  # the cap on one wait
    give_up_after_hours: float = 24.0  # dead-letter once failing this long (not by count)
    batch: int = 50
    rate_per_minute: int = 20  # per destination: WeCom/DingTalk group robots allow 20/min
    tick_seconds: float = 1.0
    lease_seconds: int = 60


@dataclass(frozen=True)
class PhotoSettings:
    """Chat photos: the byte and pixel bounds of one image, and how long after a scan a
    photo without a code is evidence for the case just scanned (handlers/photos.py)."""

    max_bytes: int = 10 << 20  # a phone photo is 2-6 MB
    max_pixels: int = 40_000_000  # 40 megapixels: every phone camera, no decompression bomb
    evidence_window_minutes: int = 30


@dataclass(frozen=True)
class DigestSettings:
    """The daily digest (handlers/digest.py): at `time` (HH:MM in server.timezone) the
    previous day's figures go to every member holding one of `roles`, and to the named
    group robots (`[wecom] robots` / `[dingtalk] robots`), once across replicas."""

    enabled: bool = True
    time: str = "09:00"
    roles: tuple[str, ...] = ("ops_director", "cs_lead")
    wecom_robots: tuple[str, ...] = ()
    dingtalk_robots: tuple[str, ...] = ()
    chart: bool = True  # a PNG chart beside the markdown where the platform takes images
