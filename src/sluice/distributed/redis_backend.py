"""The Redis backend of the live log, the control channel and the operations bus.

Key layout (``P`` is the configured prefix, ``sluice:`` by default; see docs/deployment.md)::

    P{<session>}:events     stream, one entry per session per write window: id 0-<last seq>,
                            field e = JSON [[seq, type, data], ...]; the end marker (id *,
                            field end = 1) closes it
    P{<session>}:state      hash: state (live | done), node, summary (JSON, once done)
    Pnode:{<node>}:sessions set of the node's live sessions
    Pnode:{<node>}:control  pub/sub channel of commands to the node
    Pnodes                  sorted set: node -> end of its lease (Redis's clock, ms)
    Pbus:<topic>            pub/sub channel of the operations bus

A session's two keys share a hash tag, hence a cluster slot. Writes are queued and sent together
(group commit, at most one write per ``append_window``): the window's starts, one script call
that adds every session's new events (one stream entry each) and renews their TTL, and the
finishes, over the live log's own pipelined connection (``resp.py``) or redis-py's pipeline.
Reads page through the stream; followers block on ``XREAD`` on connections of their own. Every
error of redis-py or the socket below is raised as ``BusError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, NamedTuple, TypeAlias

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sluice.distributed import BusError
from sluice.distributed.control import Command
from sluice.distributed.livelog import (
    DONE,
    LIVE,
    NONE,
    PAGE,
    READ_LIMIT,
    LoggedEvent,
    Lookup,
    NewEvent,
)
from sluice.distributed.resp import RespConnection
from sluice.logs import kv
from sluice.session.bus import Message, Subscription

log = logging.getLogger("sluice.bus")

#: seconds a follower's XREAD blocks before it checks that the log still exists
FOLLOW_BLOCK = 5.0
#: seconds any other command may take
COMMAND_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
#: stream entries (write windows) a session's log keeps at most (``MAXLEN ~``): a bound for a
#: runaway session, far above any real one's
MAX_ENTRIES = 100_000
#: events queued and not yet written past which appends fail at once
MAX_PENDING = 100_000

# KEYS: per session its stream and its state; ARGV: maxlen, ttl (ms), then per session the
# entry id and its events. An entry whose id is not above the stream's last (a repeated
# append, or one after the end marker) is refused by XADD and skipped.
_APPEND = """
local maxlen, ttl = ARGV[1], ARGV[2]
local stored = 0
for i = 1, #KEYS, 2 do
  local n = i + 1
  local ok = redis.pcall('XADD', KEYS[i], 'MAXLEN', '~', maxlen, ARGV[n + 1], 'e', ARGV[n + 2])
  if type(ok) == 'string' then
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('PEXPIRE', KEYS[i + 1], ttl)
    stored = stored + 1
  end
end
return stored
"""

# KEYS: stream, state; ARGV: summary, ttl (ms). The end marker's id (Redis's clock) is above
# every 0-<seq> entry, so followers wake and later appends are refused; the summary is kept
# once, in the state.
_FINISH = """
redis.call('XADD', KEYS[1], '*', 'end', '1')
redis.call('HSET', KEYS[2], 'state', 'done', 'summary', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: stream. A log started again after its end (a retry): the end marker goes, and the
# stream's last id goes back to its last event's, so that the new attempt's events (0-<seq>)
# are taken again.
_REOPEN = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top == 1 and top[1][2][1] == 'end' then
  redis.call('XDEL', KEYS[1], top[1][1])
  local events = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  redis.call('XSETID', KEYS[1], #events == 1 and events[1][1] or '0-0')
end
return 1
"""


class _Start(NamedTuple):
    session_id: str
    node_id: str


class _Finish(NamedTuple):
    session_id: str
    node_id: str | None
    summary: bytes
    ttl_ms: int


#: one of a window's writes: a start, a finish, or a group of appends (events by session)
_Op: TypeAlias = _Start | _Finish | dict[str, list[NewEvent]]

# Leases on Redis's clock, so that nodes' clocks need not agree.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
_HEARTBEAT = _NOW + "redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1]) return 1"
_ALIVE = _NOW + "local s = redis.call('ZSCORE', KEYS[1], ARGV[1]) return s and tonumber(s) > now"
_EXPIRED = _NOW + "return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)"


@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Raise the errors of redis-py and the socket as ``BusError``."""
    try:
        yield
    except RedisError as exc:
        raise BusError(f"redis: {what} failed: {exc}") from exc
    except OSError as exc:
        raise BusError(f"redis: {what} failed: {exc.strerror or type(exc).__name__}") from exc


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisLink:
    """The connections to one Redis and the key layout under one prefix.

    ``client`` runs commands (its pool grows as they overlap); ``blocking`` is a pool of its own
    for the reads that wait (``XREAD BLOCK``, subscriptions), so that they never hold up a write.
    """

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        #: may hold a password: never logged
        self.url = url
        common: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT}
        try:
            self.client = aioredis.Redis.from_url(url, socket_timeout=COMMAND_TIMEOUT, **common)
            self.blocking = aioredis.Redis.from_url(
                url, socket_timeout=FOLLOW_BLOCK + COMMAND_TIMEOUT, **common
            )
        except ValueError as exc:  # a malformed URL; its text would show the password
            raise BusError("redis: the bus url is not a Redis URL") from exc
        self._closed = False

    # -- keys ---------------------------------------------------------------------------------

    def events_key(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:events"

    def state_key(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:state"

    def handover_key(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:handover"

    def sessions_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{{{node_id}}}:sessions"

    def control_channel(self, node_id: str) -> str:
        return f"{self.prefix}node:{{{node_id}}}:control"

    @property
    def nodes_key(self) -> str:
        return f"{self.prefix}nodes"

    def bus_channel(self, topic: str) -> str:
        return f"{self.prefix}bus:{topic}"

    # -- connections --------------------------------------------------------------------------

    async def open(self) -> None:
        """Check that Redis answers (a clear error at start rather than at the first stream)."""
        await self.run("PING")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self.blocking.aclose()

    async def run(self, *args: Any) -> Any:
        """Run one command; its reply as redis-py parses it."""
        with _mapped(str(args[0]).lower()):
            return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def run_blocking(self, *args: Any) -> Any:
        """Run one command that waits (``XREAD BLOCK``) on the blocking pool."""
        with _mapped(str(args[0]).lower()):
            return await self.blocking.execute_command(*args)  # type: ignore[no-untyped-call]

    @asynccontextmanager
    async def subscribed(self, channel: str) -> AsyncIterator[aioredis.client.PubSub]:
        """A pub/sub connection subscribed to ``channel``; the subscription is confirmed by
        Redis before the context is entered, so nothing published after is missed."""
        pubsub = self.blocking.pubsub()
        try:
            with _mapped("subscribe"):
                await pubsub.subscribe(channel)
                async with asyncio.timeout(COMMAND_TIMEOUT):
                    while True:
                        reply = await pubsub.get_message(timeout=COMMAND_TIMEOUT)
                        if reply is not None and reply["type"] == "subscribe":
                            break
            yield pubsub
        finally:
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(pubsub.aclose())


async def _messages(pubsub: aioredis.client.PubSub) -> AsyncIterator[bytes]:
    """The payloads published on a subscribed connection, as they arrive."""
    while True:
        with _mapped("receiving"):
            reply = await pubsub.get_message(timeout=None)
        if reply is not None and reply["type"] == "message":
            yield reply["data"]


# ---------------------------------------------------------------------------------------------
# The live log


class RedisLiveLog:
    """Session logs in Redis Streams; see the module's docstring for the layout.

    Writes are queued, and a window's writes share one future: what ``start``, ``append`` and
    ``finish`` return. A window is sent once no write is in flight and ``window`` seconds have
    passed since the previous one began (group commit). Over the direct connection the sending
    is done in callbacks (the loop's turn after the append, and the reply's ``data_received``),
    with no task; over redis-py's pipeline, by a writer task this object owns.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        window: float = 0.005,
        live_ttl: float = 86400.0,
        direct: bool = True,
    ) -> None:
        self.link = link
        self.window = window
        self._live_ttl = _ms(live_ttl)
        #: the writes' own pipelined connection (None: redis-py's pipeline, as for rediss://)
        self._direct: RespConnection | None = None
        if direct:
            with contextlib.suppress(ValueError):
                self._direct = RespConnection(link.url, CONNECT_TIMEOUT, COMMAND_TIMEOUT)
        #: the window's starts, finishes and earlier groups of appends, in call order
        self._ops: list[_Op] = []
        #: the window's latest appends, by session (one script call for them all)
        self._appends: dict[str, list[NewEvent]] = {}
        self._pending = 0
        self._future: asyncio.Future[None] | None = None
        #: the loop time the last write began
        self._began = -window
        self._in_flight = False
        self._timer: asyncio.TimerHandle | None = None
        self._kicked = False
        self._connecting: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        #: set while nothing is queued or in flight
        self._idle = asyncio.Event()
        self._idle.set()
        #: the owning node of each session started here and not finished
        self._owners: dict[str, str] = {}
        self._closed = False
        #: write windows sent (each one round trip), for the benchmark
        self.windows_written = 0

    # -- writes -------------------------------------------------------------------------------

    def _window(self) -> asyncio.Future[None]:
        future = self._future
        if future is None:
            if self._closed:
                return _failed(BusError("the live log is closed"))
            loop = asyncio.get_running_loop()
            future = self._future = loop.create_future()
            self._idle.clear()
            if self._direct is not None:
                if not self._kicked:
                    self._kicked = True
                    loop.call_soon(self._kick)  # after this turn's other reads
            else:
                self._wake.set()
                if self._writer is None:
                    self._writer = loop.create_task(self._write_windows())
        return future

    def _cut(self, session_id: str) -> None:
        """A start or finish of ``session_id`` goes after its appends queued before it: the
        appends queued so far become one group of the window, ahead of it."""
        if session_id in self._appends:
            self._ops.append(self._appends)
            self._appends = {}

    def start(self, session_id: str, node_id: str) -> Awaitable[None]:
        self._owners[session_id] = node_id
        future = self._window()
        self._cut(session_id)
        self._ops.append(_Start(session_id, node_id))
        return future

    def append(self, session_id: str, batch: Sequence[NewEvent]) -> Awaitable[None]:
        if not batch:
            return self._future or _done()
        if self._pending >= MAX_PENDING:
            return _failed(BusError("redis: the live log's write queue is full"))
        future = self._future or self._window()
        queued = self._appends.get(session_id)
        if queued is None:
            self._appends[session_id] = list(batch)
        else:
            queued.extend(batch)
        self._pending += len(batch)
        return future

    def finish(self, session_id: str, summary: Mapping[str, Any], ttl: float) -> Awaitable[None]:
        node = self._owners.pop(session_id, None)
        if node is None:  # a session started elsewhere (a dead node's, being closed)
            return self._finish_elsewhere(session_id, summary, ttl)
        return self._queue_finish(session_id, node, summary, ttl)

    async def _finish_elsewhere(
        self, session_id: str, summary: Mapping[str, Any], ttl: float
    ) -> None:
        node = (await self.lookup(session_id)).node
        await self._queue_finish(session_id, node, summary, ttl)

    def _queue_finish(
        self, session_id: str, node: str | None, summary: Mapping[str, Any], ttl: float
    ) -> asyncio.Future[None]:
        future = self._window()
        self._cut(session_id)
        self._ops.append(_Finish(session_id, node, orjson.dumps(summary), _ms(ttl)))
        return future

    def _take(self) -> tuple[asyncio.Future[None] | None, list[list[Any]]]:
        """The window's future and its commands; the queue starts afresh."""
        future, self._future = self._future, None
        ops = self._ops
        if self._appends:
            ops.append(self._appends)
        commands = self._commands(ops)
        self._ops, self._appends = [], {}
        self._pending = 0
        return future, commands

    def _settle(self, future: asyncio.Future[None] | None, outcome: list[Any] | BusError) -> None:
        error = outcome if isinstance(outcome, BusError) else _first_error(outcome)
        if error is not None:
            log.warning("live log write failed %s", kv(error=error.message))
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
                # An append's caller need not await it: the failure is logged above, and the
                # future must not complain later that nobody retrieved it.
                future.exception()

    # the direct connection: no task

    def _kick(self, due_now: bool = False) -> None:
        self._kicked = False
        if (
            self._future is None
            or self._in_flight
            or self._timer is not None
            or self._connecting is not None
        ):
            return
        direct = self._direct
        assert direct is not None
        loop = asyncio.get_running_loop()
        due = self._began + self.window
        if not due_now and due > loop.time():
            # (a timer may fire a little early by the loop's clock: it sends all the same)
            self._timer = loop.call_at(due, self._timer_fired)
            return
        if not direct.ready:
            self._connecting = loop.create_task(self._connect())
            return
        future, commands = self._take()
        self._in_flight = True
        self._began = loop.time()
        self.windows_written += 1
        direct.send(commands, partial(self._answered, future))

    def _timer_fired(self) -> None:
        self._timer = None
        self._kick(due_now=True)

    def _answered(self, future: asyncio.Future[None] | None, outcome: list[Any] | BusError) -> None:
        self._in_flight = False
        self._settle(future, outcome)
        self._next()

    def _next(self) -> None:
        if self._future is not None:
            self._kick()
        elif not self._in_flight:
            self._idle.set()

    async def _connect(self) -> None:
        assert self._direct is not None
        try:
            await self._direct.connect()
        except BusError as exc:
            future, _ = self._take()  # what waited for the connection fails with it
            self._settle(future, exc)
        finally:
            self._connecting = None
        self._next()

    # redis-py's pipeline: a writer task

    async def _write_windows(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            wait = self._began + self.window - loop.time()
            await asyncio.sleep(wait if wait > 0 else 0)
            self._began = loop.time()
            self._wake.clear()
            future, commands = self._take()
            self.windows_written += 1
            try:
                outcome: list[Any] | BusError = await self._pipeline(commands)
            except BusError as exc:
                outcome = exc
            except BaseException:
                self._settle(future, BusError("the live log's writer stopped"))
                raise
            self._settle(future, outcome)
            if self._future is None:
                self._idle.set()

    async def _pipeline(self, commands: list[list[Any]]) -> list[Any]:
        pipe = self.link.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        with _mapped("writing the live log"):
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    def _commands(self, ops: list[_Op]) -> list[list[Any]]:
        """A window's commands, in the order of the calls that queued them: per start, the
        log reopened and named live; per group of appends, one script call adding each
        session's events as one stream entry (and renewing their TTL); per finish, the end
        marker and summary. The scripts go whole (``EVAL``; Redis caches them compiled):
        nothing to reload after Redis restarts."""
        link, ttl = self.link, self._live_ttl
        commands: list[list[Any]] = []
        for op in ops:
            if isinstance(op, dict):
                keys: list[str] = []
                args: list[Any] = [MAX_ENTRIES, ttl]
                for session_id, events in op.items():
                    keys.append(link.events_key(session_id))
                    keys.append(link.state_key(session_id))
                    args.append(f"0-{events[-1][0]}")
                    args.append(orjson.dumps(events))
                commands.append(["EVAL", _APPEND, len(keys), *keys, *args])
            elif isinstance(op, _Start):
                session_id, node_id = op
                state = link.state_key(session_id)
                sessions = link.sessions_key(node_id)
                commands.append(["EVAL", _REOPEN, 1, link.events_key(session_id)])
                commands.append(["HSET", state, "state", LIVE, "node", node_id])
                commands.append(["HDEL", state, "summary"])
                commands.append(["PEXPIRE", state, ttl])
                commands.append(["SADD", sessions, session_id])
                commands.append(["PEXPIRE", sessions, ttl])
            else:
                session_id, owner, summary, finish_ttl = op
                events_key, state = link.events_key(session_id), link.state_key(session_id)
                commands.append(["EVAL", _FINISH, 2, events_key, state, summary, finish_ttl])
                if owner is not None:
                    commands.append(["SREM", link.sessions_key(owner), session_id])
        return commands

    # -- reads --------------------------------------------------------------------------------

    async def read(
        self, session_id: str, after: int = 0, limit: int = READ_LIMIT
    ) -> list[LoggedEvent]:
        key = self.link.events_key(session_id)
        out: list[LoggedEvent] = []
        start = f"(0-{after}"
        while len(out) < limit:
            entries = await self.link.run("XRANGE", key, start, "+", "COUNT", PAGE)
            for entry_id, fields in entries:
                batch = _fields(fields).get(b"e")
                if batch is None:  # the end marker
                    return out[:limit]
                after = _add_events(batch, after, out)
                start = b"(" + entry_id
            if len(entries) < PAGE:
                break
        return out[:limit]

    async def follow(self, session_id: str, after: int = 0) -> AsyncIterator[list[LoggedEvent]]:
        if (await self.lookup(session_id)).state == NONE:
            return
        key = self.link.events_key(session_id)
        last: bytes | str = f"0-{after}"
        block = _ms(FOLLOW_BLOCK)
        while True:
            reply = await self.link.run_blocking(
                "XREAD", "COUNT", PAGE, "BLOCK", block, "STREAMS", key, last
            )
            if not reply:
                # Nothing for a while: the log may have expired (its node died unfinished).
                if (await self.lookup(session_id)).state == NONE:
                    return
                continue
            page: list[LoggedEvent] = []
            ended = False
            for entry_id, fields in _stream_entries(reply):
                last = entry_id
                batch = _fields(fields).get(b"e")
                if batch is None:
                    ended = True
                    break
                after = _add_events(batch, after, page)
            if page:
                yield page
            if ended:
                return

    async def lookup(self, session_id: str) -> Lookup:
        state, node, summary = await self.link.run(
            "HMGET", self.link.state_key(session_id), "state", "node", "summary"
        )
        node_id = node.decode() if node is not None else None
        if state == DONE.encode():
            return Lookup(DONE, node_id, orjson.loads(summary) if summary else {})
        if state == LIVE.encode():
            return Lookup(LIVE, node_id)
        return Lookup(NONE)

    async def owned_by(self, node_id: str) -> list[str]:
        link = self.link
        members = await link.run("SMEMBERS", link.sessions_key(node_id))
        session_ids = sorted(m.decode() for m in members)
        if not session_ids:
            return []
        pipe = link.client.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.execute_command("HMGET", link.state_key(session_id), "state", "node")
        with _mapped("listing a node's sessions"):
            states = await pipe.execute()
        return [
            session_id
            for session_id, (state, node) in zip(session_ids, states, strict=True)
            if state == LIVE.encode() and node == node_id.encode()
        ]

    async def close(self) -> None:
        """Write what is queued, then stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._idle.wait()
        if self._timer is not None:
            self._timer.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self._direct is not None:
            await self._direct.close()


def _first_error(replies: list[Any]) -> BusError | None:
    for reply in replies:
        if isinstance(reply, Exception):
            return BusError(f"redis: a live log write failed: {reply}")
    return None


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _failed(error: BaseException) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    future.exception()  # retrieved: the caller need not await it
    return future


def _fields(fields: Any) -> dict[bytes, bytes]:
    """A stream entry's fields (RESP2 gives a flat list, RESP3 a map)."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _stream_entries(reply: Any) -> list[tuple[bytes, Any]]:
    """The entries of the one stream an XREAD asked for (RESP2: a list, RESP3: a map)."""
    if isinstance(reply, dict):
        return list(next(iter(reply.values())))
    return list(reply[0][1])


def _add_events(batch: bytes, after: int, out: list[LoggedEvent]) -> int:
    """Add the events of one stored entry numbered above ``after``; return the last number."""
    for seq, kind, data in orjson.loads(batch):
        if seq > after:
            out.append((seq, kind, data))
            after = seq
    return after


# ---------------------------------------------------------------------------------------------
# The control channel


class RedisControl:
    """Commands over pub/sub (one channel per node), leases in one sorted set."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        client = link.client
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._alive = client.register_script(_ALIVE)
        self._expired = client.register_script(_EXPIRED)

    async def send(self, node_id: str, command: Command) -> bool:
        payload = orjson.dumps(command.to_json())
        receivers = await self.link.run("PUBLISH", self.link.control_channel(node_id), payload)
        return bool(receivers)

    @asynccontextmanager
    async def listen(self, node_id: str) -> AsyncIterator[AsyncIterator[Command]]:
        async with self.link.subscribed(self.link.control_channel(node_id)) as pubsub:
            yield _commands(pubsub)

    async def heartbeat(self, node_id: str, ttl: float) -> None:
        with _mapped("renewing a lease"):
            await self._heartbeat(keys=[self.link.nodes_key], args=[node_id, _ms(ttl)])

    async def alive(self, node_id: str) -> bool:
        with _mapped("reading a lease"):
            return bool(await self._alive(keys=[self.link.nodes_key], args=[node_id]))

    async def expired_nodes(self) -> list[str]:
        with _mapped("reading the leases"):
            nodes = await self._expired(keys=[self.link.nodes_key])
        return sorted(node.decode() for node in nodes)

    async def forget(self, node_id: str) -> bool:
        return bool(await self.link.run("ZREM", self.link.nodes_key, node_id))

    async def hand_over(self, session_id: str, request: bytes, ttl: float) -> None:
        await self.link.run("SET", self.link.handover_key(session_id), request, "PX", _ms(ttl))

    async def take(self, session_id: str) -> bytes | None:
        taken = await self.link.run("GETDEL", self.link.handover_key(session_id))
        return None if taken is None else bytes(taken)

    async def withdraw(self, session_id: str) -> None:
        await self.link.run("DEL", self.link.handover_key(session_id))

    async def close(self) -> None:
        return None


async def _commands(pubsub: aioredis.client.PubSub) -> AsyncIterator[Command]:
    async for payload in _messages(pubsub):
        try:
            command = Command.from_json(orjson.loads(payload))
        except orjson.JSONDecodeError:
            command = None
        if command is None:
            log.warning("control message ignored: not a command")
            continue
        yield command


# ---------------------------------------------------------------------------------------------
# The operations bus


class RedisBus:
    """The ``Bus`` over Redis pub/sub: every node's subscribers receive every node's messages.

    A subscription's messages are taken off its connection at once by a task the subscription
    owns, into a bounded ``Subscription`` that drops the oldest: a slow reader loses old
    messages, and Redis never holds a backlog for it.
    """

    def __init__(self, link: RedisLink, queue_size: int = 1024) -> None:
        self.link = link
        self._queue_size = queue_size

    async def publish(self, topic: str, message: Message) -> None:
        await self.link.run("PUBLISH", self.link.bus_channel(topic), orjson.dumps(message))

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(self._queue_size)
        async with self.link.subscribed(self.link.bus_channel(topic)) as pubsub:
            reader = asyncio.get_running_loop().create_task(_receive(pubsub, subscription))
            try:
                yield subscription
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def close(self) -> None:
        return None


async def _receive(pubsub: aioredis.client.PubSub, subscription: Subscription) -> None:
    try:
        async for payload in _messages(pubsub):
            try:
                message = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(message, dict):
                subscription.put(message)
    except BusError as exc:
        subscription.fail(exc)
