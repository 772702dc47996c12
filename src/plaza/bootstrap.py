"""The composition root: builds adapters from settings, then the services on top of them.

Nothing here runs at import time; `open_platform` connects, `build_services` wires, and `close_platform`
releases what was opened.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from plaza.accounts.service import AccountsService
from plaza.chat import frames as chat_frames
from plaza.chat.notifier import Notifier
from plaza.chat.push import OfflinePush
from plaza.chat.pushers import LogPusher, PushProvider, WebhookPusher
from plaza.chat.service import ChatService
from plaza.feed.fanout import FanOut, OutboxRelay
from plaza.feed.posts import PostCache
from plaza.feed.service import FeedService
from plaza.feed.timelines import MemoryTimelines, RedisTimelines, Timelines
from plaza.links.analytics import ClickAggregator
from plaza.links.cache import RedirectCache
from plaza.links.clicks import ClickBuffer
from plaza.links.codes import CodeAllocator
from plaza.links.geo import GeoLookup
from plaza.links.service import LinksService
from plaza.platform.bus import MemoryStreams, RedisStreams, Streams
from plaza.platform.clock import Clock, SystemClock
from plaza.platform.counters import advance
from plaza.platform.db import Database
from plaza.platform.ids import MAX_NODE, CodePermutation, SnowflakeIds
from plaza.platform.kv import KV, MemoryKV, RedisKV, redis_client, redis_cluster_client
from plaza.platform.metrics import Metrics
from plaza.platform.migrate import upgrade
from plaza.platform.pubsub import MemoryPubSub, PubSub, RedisPubSub
from plaza.platform.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from plaza.platform.tables import plaza_meta
from plaza.realtime.hub import RealtimeHub
from plaza.realtime.presence import Presence
from plaza.realtime.sessions import Sessions
from plaza.settings import Settings

_NODE_COUNTER = "snowflake_node"


@dataclass
class Platform:
    settings: Settings
    clock: Clock
    metrics: Metrics
    db: Database
    kv: KV
    streams: Streams
    pubsub: PubSub
    limiter: RateLimiter
    timelines: Timelines
    redis: aioredis.Redis | None
    secret_key: bytes = b""
    node: int = 0  # this process's bits in time-ordered ids
    timelines_cluster: RedisCluster | None = None  # PLAZA_FEED_REDIS_CLUSTER_URL's client


@dataclass
class Services:
    accounts: AccountsService
    links: LinksService
    cache: RedirectCache
    clicks: ClickBuffer
    aggregator: ClickAggregator
    geo: GeoLookup
    realtime: RealtimeHub
    chat: ChatService
    feed: FeedService
    fanout: FanOut
    relay: OutboxRelay
    notifier: Notifier


async def open_platform(
    settings: Settings, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> Platform:
    clock = clock or SystemClock()
    db = Database.from_url(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_timeout_s=settings.database_pool_timeout_s,
    )
    if settings.redis_url:
        client = redis_client(settings.redis_url)
        prefix = settings.redis_prefix
        kv: KV = RedisKV(client, prefix)
        streams: Streams = RedisStreams(client, prefix)
        pubsub: PubSub = RedisPubSub(client, prefix)
        limiter: RateLimiter = RedisRateLimiter(client, prefix)
        timelines: Timelines = RedisTimelines(client, prefix, max_len=settings.feed_timeline_len)
    else:
        client = None
        kv, streams, pubsub = MemoryKV(clock=clock), MemoryStreams(clock=clock), MemoryPubSub()
        limiter = MemoryRateLimiter(clock=clock)
        timelines = MemoryTimelines(max_len=settings.feed_timeline_len, clock=clock)
    cluster = None
    if settings.feed_redis_cluster_url:
        cluster = redis_cluster_client(settings.feed_redis_cluster_url)
        timelines = RedisTimelines(
            cluster,
            settings.redis_prefix,
            max_len=settings.feed_timeline_len,
            slot_groups=settings.feed_timeline_slot_groups,
        )
    platform = Platform(
        settings, clock, metrics or Metrics(), db, kv, streams, pubsub, limiter, timelines, client
    )
    platform.timelines_cluster = cluster
    if settings.should_migrate_on_start:
        await upgrade(db)
    platform.secret_key = await _secret_key(db, settings)
    platform.node = settings.node_id if settings.node_id is not None else await _lease_node(db)
    return platform


async def close_platform(platform: Platform) -> None:
    await platform.kv.aclose()
    await platform.streams.aclose()
    if platform.redis is not None:
        await platform.redis.aclose()
    if platform.timelines_cluster is not None:
        await platform.timelines_cluster.aclose()
    await platform.db.dispose()


async def _secret_key(db: Database, settings: Settings) -> bytes:
    """PLAZA_SECRET_KEY, or the instance's own, generated once and kept in the database."""
    if settings.secret_key:
        return settings.secret_key.encode()
    async with db.read() as conn:
        stored = (
            await conn.execute(select(plaza_meta.c.value).where(plaza_meta.c.key == "secret_key"))
        ).scalar()
    if stored is None:
        try:
            async with db.write() as conn:
                await conn.execute(
                    insert(plaza_meta).values(key="secret_key", value=secrets.token_hex(32))
                )
        except IntegrityError:
            pass  # another process generated it first; read theirs
        async with db.read() as conn:
            stored = (
                await conn.execute(
                    select(plaza_meta.c.value).where(plaza_meta.c.key == "secret_key")
                )
            ).scalar_one()
    return str(stored).encode()


async def _lease_node(db: Database) -> int:
    """The next of 16 node numbers in turn: processes started one after another never share one."""
    async with db.write() as conn:
        return await advance(conn, _NODE_COUNTER, 1) % (MAX_NODE + 1)


def build_services(platform: Platform) -> Services:
    settings, clock, db = platform.settings, platform.clock, platform.db
    accounts = AccountsService(db, platform.kv, platform.pubsub, platform.limiter, settings, clock)
    cache = RedirectCache(
        db=db,
        kv=platform.kv,
        pubsub=platform.pubsub,
        clock=clock,
        metrics=platform.metrics,
        lru_size=settings.redirect_lru_size,
        lru_ttl_s=settings.redirect_lru_ttl_s,
        kv_ttl_s=settings.redirect_cache_ttl_s,
        negative_ttl_s=settings.negative_cache_ttl_s,
    )
    geo = GeoLookup(settings.geoip_db)
    aggregator = ClickAggregator(db, geo, platform.metrics)
    clicks = ClickBuffer(
        platform.streams,
        aggregator,
        platform.metrics,
        max_size=settings.click_buffer_max,
        flush_interval_s=settings.click_flush_interval_s,
    )
    allocator = CodeAllocator(db, CodePermutation(platform.secret_key), settings.code_block_size)
    links = LinksService(
        db=db,
        cache=cache,
        allocator=allocator,
        limiter=platform.limiter,
        accounts=accounts,
        settings=settings,
        clock=clock,
    )
    ids = SnowflakeIds(platform.node, clock.time)  # one sequence per process: ids never repeat
    realtime, chat = _build_chat(platform, accounts, ids)
    feed = FeedService(
        db=db,
        timelines=platform.timelines,
        cache=PostCache(db, platform.kv, accounts, platform.pubsub, clock),
        accounts=accounts,
        pusher=realtime,
        pubsub=platform.pubsub,
        ids=ids,
        clock=clock,
        settings=settings,
    )
    relay = OutboxRelay(db, platform.streams)
    feed.outbox_kick = relay.kick
    fanout = FanOut(feed, db, platform.metrics)
    notifier = Notifier(
        db=db,
        accounts=accounts,
        provider=_push_provider(settings),
        clock=clock,
        max_attempts=settings.push_max_attempts,
        retry_base_s=settings.push_retry_base_s,
    )
    return Services(
        accounts,
        links,
        cache,
        clicks,
        aggregator,
        geo,
        realtime,
        chat,
        feed,
        fanout,
        relay,
        notifier,
    )


def _push_provider(settings: Settings) -> PushProvider:
    if settings.push_webhook_url:
        return WebhookPusher(settings.push_webhook_url, timeout_s=settings.push_timeout_s)
    return LogPusher()


async def close_services(services: Services) -> None:
    """Release what the services hold; the platform is closed after."""
    if services.chat.offline_push is not None:
        await services.chat.offline_push.aclose()
    await services.notifier.provider.aclose()
    services.geo.close()


def _build_chat(
    platform: Platform, accounts: AccountsService, ids: SnowflakeIds
) -> tuple[RealtimeHub, ChatService]:
    """The WebSocket hub, and chat on top of it (registering its frame handlers there)."""
    settings = platform.settings
    sessions = Sessions(
        platform.kv,
        platform.pubsub,
        platform.metrics,
        registry_ttl_s=3 * settings.ws_heartbeat_s,  # three missed beats: the process is gone
    )
    presence = Presence(
        sessions,
        platform.kv,
        platform.clock,
        ttl_s=settings.presence_ttl_s,
        grace_s=settings.presence_grace_s,
    )
    realtime = RealtimeHub(
        sessions=sessions,
        presence=presence,
        authenticate=accounts.authenticate,
        settings=settings,
        metrics=platform.metrics,
    )
    chat = ChatService(
        db=platform.db,
        accounts=accounts,
        pusher=realtime,
        ids=ids,
        clock=platform.clock,
        limiter=platform.limiter,
        send_rate=settings.chat_send_bucket(),
        offline_push=OfflinePush(streams=platform.streams, presence=realtime),
        retention_days=settings.chat_retention_days,
        device_ttl_days=settings.chat_device_ttl_days,
        metrics=platform.metrics,
    )
    chat_frames.register(realtime, chat)
    realtime.set_audience(chat.contacts)
    realtime.on_devices_seen(chat.devices.seen)
    return realtime, chat
