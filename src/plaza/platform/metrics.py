"""Prometheus metrics of one app instance, on a registry of its own (several apps may share a process).

Under `plaza serve --workers N` the processes write their values to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode, which `plaza serve` sets up), and /metrics answers the sum
of every process, whichever one serves it.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Buckets from 0.25 ms: the redirect fast path answers in well under a millisecond.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def ws_frame(self, direction: str, kind: str) -> Any:
        """The frames counter for (direction, type), looked up once: every frame counts."""
        child = self._frame_children.get((direction, kind))
        if child is None:
            child = self._frame_children[(direction, kind)] = self.ws_frames.labels(direction, kind)
        return child

    def request_observer(self, method: str, route: str, status: int) -> Any:
        """The latency histogram's `observe` for (method, route template, status), looked up once."""
        key = (method, route, status)
        observe = self._request_observers.get(key)
        if observe is None:
            child = self.request_latency.labels(method, route, str(status))
            observe = self._request_observers[key] = child.observe
        return observe

    def __init__(self) -> None:
        self._frame_children: dict[tuple[str, str], Any] = {}
        self._request_observers: dict[tuple[str, str, int], Any] = {}
        self.registry = CollectorRegistry()
        self.request_latency = Histogram(
            "plaza_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache_events = Counter(
            "plaza_cache_events_total",
            "Cache lookups by cache layer and result (hit, miss, negative_hit)",
            ["cache", "result"],
            registry=self.registry,
        )
        self.stream_lag = Gauge(
            "plaza_stream_lag_entries",
            "Entries of a durable stream not yet acknowledged by a consumer group",
            ["stream", "group"],
            registry=self.registry,
            multiprocess_mode="livemax",  # every process sees the same stream
        )
        self.clicks_buffered = Gauge(
            "plaza_clicks_buffered",
            "Clicks held in this process's buffer, not yet flushed to the stream",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.clicks_dropped = Counter(
            "plaza_clicks_dropped_total",
            "Clicks dropped because the buffer was full",
            registry=self.registry,
        )
        self.clicks_recorded = Counter(
            "plaza_clicks_recorded_total",
            "Clicks aggregated into SQL, by kind (human or bot)",
            ["kind"],
            registry=self.registry,
        )
        self.ws_connections = Gauge(
            "plaza_ws_connections",
            "WebSocket connections open on this process (authenticated or not)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.ws_frames = Counter(
            "plaza_ws_frames_total",
            "WebSocket frames by direction (in, out) and type",
            ["direction", "type"],
            registry=self.registry,
        )
        self.ws_kicked = Counter(
            "plaza_ws_slow_clients_total",
            "Connections told to reconnect because their send queue was full",
            registry=self.registry,
        )

        self.ws_delivery_seconds = Histogram(
            "plaza_ws_delivery_seconds",
            "From a chat message's commit to its frame written to a recipient's socket",
            buckets=(*LATENCY_BUCKETS, 5, 10),
            registry=self.registry,
        )
        self.chat_messages = Counter(
            "plaza_chat_messages_total",
            "Chat messages members sent, each counted once (a retried send is not); rate() of it is "
            "messages per second",
            registry=self.registry,
        )
        self.feed_timeline_inserts = Counter(
            "plaza_feed_timeline_inserts_total",
            "Post ids written into home and celebrity timelines by fan-out",
            registry=self.registry,
        )
        self.feed_fanout_seconds = Histogram(
            "plaza_feed_fanout_duration_seconds",
            "Time to fan one event out to every follower, by kind (post, delete)",
            ["kind"],
            buckets=(*LATENCY_BUCKETS, 5, 10, 30),
            registry=self.registry,
        )

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_DIR):
            every_process = CollectorRegistry()
            multiprocess.MultiProcessCollector(every_process)  # type: ignore[no-untyped-call]
            return generate_latest(every_process)
        return generate_latest(self.registry)

    @staticmethod
    def process_exited() -> None:
        """Drop this process's live gauges from the shared files (multiprocess mode only)."""
        if os.environ.get(MULTIPROC_DIR):
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
