"""Plaza's configuration: one pydantic-settings class read from `PLAZA_*` variables and `.env`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$")
_UNIT_S = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600}
_UNIT_S |= {"hour": 3600, "d": 86400, "day": 86400}


@dataclass(frozen=True)
class Rate:
    """A token bucket's shape: `capacity` tokens, refilled evenly over `period_s` seconds."""

    capacity: int
    period_s: float

    @property
    def per_second(self) -> float:
        return self.capacity / self.period_s

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse `100/hour`, `10/15min`, `20/s`."""
        match = _RATE_RE.match(text)
        if not match:
            raise ValueError(f"not a rate: {text!r} (expected e.g. '100/hour' or '10/15min')")
        count, multiplier, unit = match.groups()
        period = (int(multiplier) if multiplier else 1) * _UNIT_S[unit]
        if int(count) <= 0 or period <= 0:
            raise ValueError(f"rate must be positive: {text!r}")
        return cls(capacity=int(count), period_s=float(period))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLAZA_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./plaza.db"
    # Connections per process to PostgreSQL; mind max_connections across `--workers` and machines.
    database_pool_size: int = Field(default=20, ge=1)
    # A request waits this long for a free connection (both databases), then gets 503 `overloaded`.
    database_pool_timeout_s: float = Field(default=5.0, gt=0)
    redis_url: str | None = None
    # Every Redis key and channel starts with this, so several deployments (or test runs) share one server.
    redis_prefix: str = "plaza:"
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    auto_migrate: bool | None = None  # None: migrate on start only on the embedded SQLite default
    # Run the stream consumers and periodic jobs inside `plaza serve` (else only in `plaza worker`).
    run_workers: bool = True

    redirect_status: Literal[301, 302] = 302
    create_rate: str = "100/hour"
    login_failures_per_user: str = "10/15min"
    login_failures_per_ip: str = "100/15min"
    blocked_hosts: str = ""
    geoip_db: Path | None = None
    trust_forwarded_for: bool = False
    token_ttl_days: int = Field(default=30, ge=1)

    # Redirect caches: a small per-process LRU with a short TTL in front of Redis (1 h) in front of SQL.
    redirect_lru_size: int = Field(default=100_000, ge=0)
    redirect_lru_ttl_s: float = Field(default=30.0, ge=0)
    redirect_cache_ttl_s: int = Field(default=3600, ge=1)
    negative_cache_ttl_s: int = Field(default=60, ge=1)
    # Codes are leased from the database in blocks so that creates do not contend on one counter row.
    code_block_size: int = Field(default=1000, ge=1)

    click_flush_interval_s: float = Field(default=0.5, gt=0)
    click_buffer_max: int = Field(default=200_000, ge=1000)
    expiry_sweep_interval_s: float = Field(default=300.0, gt=0)

    max_body_bytes: int = 1024 * 1024
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    # The WebSocket gateway (`/ws`).
    ws_auth_timeout_s: float = Field(
        default=10.0, gt=0
    )  # the contract: a first `auth` frame within 10 s
    ws_heartbeat_s: int = Field(default=10, ge=1)  # how often clients are asked to ping
    ws_idle_timeout_s: float = Field(default=30.0, gt=0)  # three missed 10 s heartbeats
    # Frames waiting for one slow client; when full it is told to reconnect (and sync) instead.
    ws_send_queue: int = Field(default=1000, ge=2)
    # permessage-deflate (RFC 7692) when a client offers it. Off: compressing every frame for every
    # recipient was a tenth of a chat server's CPU, and each connection's zlib state ~40 KB (bench/);
    # chat frames are small. Behind a proxy that compresses, or on metered links, turn it on.
    ws_compression: bool = False
    # Young-generation collections every this many allocations (CPython: 700). Higher keeps requests
    # in flight from being promoted, and so full collections rare (seconds at 10,000 WebSockets);
    # lower suits pure redirect load a little better (see bench/RESULTS.md).
    gc_young_threshold: int = Field(default=10_000, ge=100)
    # Young-generation collections also every this many seconds, whatever the count (0: by count
    # only). Under many WebSockets the count hardly moves while young objects pile up (see app.py).
    gc_young_every_s: float = Field(default=0.1, ge=0)
    # Full collections every this many seconds instead of by CPython's rule (0: CPython's rule). A
    # full collection walks every object: about a second at 10,000 WebSockets (see app.py).
    gc_full_every_s: float = Field(default=600.0, ge=0)
    # Connections one user may hold on one process; another is refused (error frame, close 4429).
    ws_max_connections_per_user: int = Field(default=20, ge=1)
    # Sends per user: a token bucket refilled at this many per second, holding at most the burst.
    chat_send_rate: float = Field(default=20.0, gt=0)
    chat_send_burst: int = Field(default=50, ge=1)
    # Online lapses this long after the last heartbeat of a process holding the user's connection.
    presence_ttl_s: float = Field(default=30.0, gt=0)
    # Going offline is announced only if no connection came back within this.
    presence_grace_s: float = Field(default=15.0, ge=0)
    # The node bits (0-15) of time-ordered ids such as message ids; unset: leased from the database,
    # so up to 16 processes started against one database never share one.
    node_id: int | None = Field(default=None, ge=0, le=15)

    # Chat messages older than this are purged by the periodic job (every expiry_sweep_interval_s);
    # 0 keeps them forever.
    chat_retention_days: int = Field(default=30, ge=0)
    # A device not seen (connected, or confirming a delivery) for this long loses its delivered cursors
    # (same job); if it comes back it syncs as a new device. 0 keeps them forever.
    chat_device_ttl_days: int = Field(default=90, ge=0)

    # Offline push: a notification per message for each recipient with no connection. Unset URL: each
    # is a log line; set: POSTed there as JSON, retried (retryable failures) with backoff from
    # push_retry_base_s, doubling, up to push_max_attempts tries, then kept in push_dead_letters.
    push_webhook_url: str | None = None
    push_max_attempts: int = Field(default=5, ge=1)
    push_retry_base_s: float = Field(default=0.5, gt=0)
    push_timeout_s: float = Field(default=5.0, gt=0)

    # Authors with at least this many followers are not fanned out: readers merge their posts.
    feed_celebrity_threshold: int = Field(default=10_000, ge=1)
    # A timeline not read for this long expires; fan-out skips it and the next read rebuilds it.
    feed_active_days: float = Field(default=7.0, gt=0)
    feed_timeline_len: int = Field(default=800, ge=10)  # post ids kept per cached timeline
    # Timelines (the bulk of Redis memory) on a Redis Cluster; everything else stays on redis_url.
    feed_redis_cluster_url: str | None = None
    # Hash tags the timelines spread over on that cluster: fewer, larger Lua calls per fan-out page
    # with fewer; memory spread more evenly over many nodes with more.
    feed_timeline_slot_groups: int = Field(default=16, ge=1, le=16384)
    feed_rank_budget_ms: float = Field(default=20.0, ge=0)  # over it, ranked reads fall back

    def chat_send_bucket(self) -> Rate:
        return Rate(
            capacity=self.chat_send_burst, period_s=self.chat_send_burst / self.chat_send_rate
        )

    @field_validator("create_rate", "login_failures_per_user", "login_failures_per_ip")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        Rate.parse(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def blocked_host_set(self) -> frozenset[str]:
        """The block list: a comma list of hosts, or `@path` / a path to a file with one host per line."""
        raw = self.blocked_hosts.strip()
        path = Path(raw.removeprefix("@"))
        if raw and (raw.startswith("@") or ("," not in raw and path.is_file())):
            raw = path.read_text(encoding="utf-8").replace("\n", ",")
        hosts = (h.strip().lower().rstrip(".") for h in raw.split(","))
        return frozenset(h for h in hosts if h and not h.startswith("#"))
