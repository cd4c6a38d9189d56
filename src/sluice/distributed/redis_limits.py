"""Admission limits on Redis (``limits.Limits``): every check and its count in one script, so
that two nodes admitting at once never both take the last slot.

Keys, under the bus prefix, all with the hash tag ``{limits}`` (one cluster slot, so one
script may touch several):

- ``{limits}:live:<counter>``: a sorted set of session ids scored by when their lease ends
  (milliseconds on Redis's clock); expired members are removed before every count;
- ``{limits}:window:<name>``: a sorted set of ``<ms>:<n>:<amount>`` members scored by when they
  were counted; members older than the window are removed before every count.

Every key expires a while after its last write, so the keys of a key revoked long ago go away.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.distributed.redis_backend import _NOW, RedisLink, _mapped, _ms

# KEYS: the counters; ARGV: member, lease (ms), then one ceiling per key. Returns 0 when
# counted everywhere, else the (1-based) index of the first counter at its ceiling.
_ACQUIRE = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local ceiling = tonumber(ARGV[2 + i])
    if ceiling > 0 and not redis.call('ZSCORE', key, ARGV[1])
        and redis.call('ZCARD', key) >= ceiling then
        return i
    end
end
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
    redis.call('PEXPIRE', key, tonumber(ARGV[2]) * 2)
end
return 0
"""
)

# KEYS: counters; ARGV: member, lease (ms). Only members still there are renewed.
_RENEW = (
    _NOW
    + """
for _, key in ipairs(KEYS) do
    if redis.call('ZADD', key, 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1]) then
        redis.call('PEXPIRE', key, tonumber(ARGV[2]) * 2)
    end
end
return 1
"""
)

_COUNT = (
    _NOW
    + "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) return redis.call('ZCARD', KEYS[1])"
)

# KEYS: the window; ARGV: limit, window (ms). Returns -1 when counted, else the ms until the
# oldest member leaves the window.
_HIT = (
    _NOW
    + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(0, tonumber(oldest[2]) + window - now)
end
local n = redis.call('INCR', KEYS[1] .. ':n')
redis.call('PEXPIRE', KEYS[1] .. ':n', window * 2)
redis.call('ZADD', KEYS[1], now, now .. ':' .. n .. ':1')
redis.call('PEXPIRE', KEYS[1], window * 2)
return -1
"""
)

# KEYS: the window; ARGV: amount, window (ms).
_ADD = (
    _NOW
    + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('INCR', KEYS[1] .. ':n')
redis.call('PEXPIRE', KEYS[1] .. ':n', window * 2)
redis.call('ZADD', KEYS[1], now, now .. ':' .. n .. ':' .. ARGV[1])
redis.call('PEXPIRE', KEYS[1], window * 2)
return 1
"""
)

# KEYS: the window; ARGV: window (ms). The amounts summed in the script: one reply.
_TOTAL = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local total = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    total = total + tonumber(string.match(member, ':(%d+)$'))
end
return total
"""
)


class RedisLimits:
    """The limits of every node sharing one Redis (and one prefix)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        client = link.client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._count = client.register_script(_COUNT)
        self._hit = client.register_script(_HIT)
        self._add = client.register_script(_ADD)
        self._total = client.register_script(_TOTAL)

    def _live(self, counter: str) -> str:
        return f"{self.link.prefix}{{limits}}:live:{counter}"

    def _window(self, name: str) -> str:
        return f"{self.link.prefix}{{limits}}:window:{name}"

    async def acquire(
        self, session_id: str, ceilings: Sequence[tuple[str, int]], lease: float
    ) -> int | None:
        if not ceilings:
            return None
        keys = [self._live(counter) for counter, _ in ceilings]
        args: list[str | int] = [session_id, _ms(lease)]
        args += [max(0, ceiling) for _, ceiling in ceilings]
        with _mapped("admitting a session"):
            refused = int(await self._acquire(keys=keys, args=args))
        return None if refused == 0 else refused - 1

    async def release(self, session_id: str, counters: Sequence[str]) -> None:
        if not counters:
            return
        with _mapped("releasing a session"):
            async with self.link.client.pipeline(transaction=False) as pipe:
                for counter in counters:
                    pipe.zrem(self._live(counter), session_id)
                await pipe.execute()

    async def renew(self, held: Sequence[tuple[str, Sequence[str]]], lease: float) -> None:
        if not held:
            return
        with _mapped("renewing admissions"):
            async with self.link.client.pipeline(transaction=False) as pipe:
                for session_id, counters in held:
                    if counters:
                        keys = [self._live(counter) for counter in counters]
                        await self._renew(keys=keys, args=[session_id, _ms(lease)], client=pipe)
                await pipe.execute()

    async def count(self, counter: str) -> int:
        with _mapped("counting sessions"):
            return int(await self._count(keys=[self._live(counter)]))

    async def hit(self, name: str, limit: int, window: float = 60.0) -> float | None:
        with _mapped("counting a request"):
            wait = int(await self._hit(keys=[self._window(name)], args=[limit, _ms(window)]))
        return None if wait < 0 else wait / 1000

    async def add(self, name: str, amount: int, window: float = 60.0) -> None:
        with _mapped("counting tokens"):
            await self._add(keys=[self._window(name)], args=[max(0, amount), _ms(window)])

    async def total(self, name: str, window: float = 60.0) -> int:
        with _mapped("summing tokens"):
            return int(await self._total(keys=[self._window(name)], args=[_ms(window)]))

    async def close(self) -> None:
        return None
