"""Admission counted across processes and nodes (``[bus] url`` set): the gateway's ceiling of
live streams, each client's ceiling, and each key's requests and tokens per minute, held in
the shared ``Limits`` so that they hold for the whole deployment, not per process.

A session is counted when it is admitted and released when it ends; while it lives, its
process renews its lease every ``LEASE / 3`` seconds, so the sessions of a process that died
stop counting within ``LEASE`` seconds. Releases and the tokens of ended sessions are written
by one task (``keep``), woken as sessions end: a slot frees a moment after its session ended,
never before.

The per-process checks (``Gateway._admit``) still run first: they cost nothing and refuse
what this process alone already knows to refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from sluice.access.control import Principal
from sluice.config import StreamSettings
from sluice.distributed import BusError
from sluice.distributed.limits import Limits
from sluice.errors import Overloaded, RateLimited
from sluice.logs import kv

log = logging.getLogger("sluice.admission")

#: seconds a live session stays counted without its process renewing it
LEASE = 15.0
#: the counter of every live session of the deployment
GATEWAY = "gateway"


class SharedAdmission:
    def __init__(self, limits: Limits, settings: StreamSettings) -> None:
        self.limits = limits
        self.settings = settings
        #: the counters each session of this process is counted in
        self.held: dict[str, list[str]] = {}
        #: sessions ended and tokens spent, to be written by ``keep``
        self._released: list[tuple[str, list[str]]] = []
        self._tokens: list[tuple[str, int]] = []
        self._wake = asyncio.Event()

    async def admit(self, principal: Principal, admission_key: str | None, session_id: str) -> None:
        """Count the session, or raise what the client is told (nothing counted then)."""
        streams = self.settings
        ceilings = [(GATEWAY, streams.max_concurrent)]
        key = principal.key
        if admission_key is not None:
            ceiling = streams.max_per_key
            if key is not None and key.max_streams is not None:
                ceiling = key.max_streams
            ceilings.append((f"client:{admission_key}", ceiling))
        refused = await self.limits.acquire(session_id, ceilings, LEASE)
        if refused == 0:
            raise Overloaded(
                f"the gateway is at its ceiling of {streams.max_concurrent} concurrent streams "
                "across all its processes; retry shortly"
            )
        if refused is not None:
            raise RateLimited(
                f"this client has {ceilings[refused][1]} streams open across the gateway's "
                "processes, its ceiling; retry when one ends"
            )
        counters = [counter for counter, _ in ceilings]
        try:
            if key is not None and key.rpm is not None:
                wait = await self.limits.hit(f"rpm:{key.name}", key.rpm)
                if wait is not None:
                    raise RateLimited(
                        f"this API key made {key.rpm} requests in the last minute across the "
                        "gateway's processes, its limit",
                        retry_after=max(1.0, wait),
                    )
            tpm = None if key is None else key.tpm
            if key is not None and tpm is not None:
                used = await self.limits.total(f"tpm:{key.name}")
                if used >= tpm:
                    raise RateLimited(
                        f"this API key used {tpm} tokens in the last minute across the "
                        "gateway's processes, its limit",
                        retry_after=60.0,
                    )
        except BaseException:
            await self.limits.release(session_id, counters)
            raise
        self.held[session_id] = counters

    def restarted(self, session_id: str, admission_key: str | None) -> None:
        """A session live again (Retry) without passing ``admit``: counted, not refused."""
        if session_id not in self.held:
            counters = [GATEWAY] if admission_key is None else [GATEWAY, f"client:{admission_key}"]
            self.held[session_id] = counters

    def ended(self, session_id: str, api_key: str | None, tokens: int) -> None:
        """The session ended: released (and its tokens counted) by ``keep``, soon."""
        counters = self.held.pop(session_id, None)
        if counters is not None:
            self._released.append((session_id, counters))
        if api_key is not None and tokens > 0:
            self._tokens.append((api_key, tokens))
        self._wake.set()

    async def keep(self, live: Callable[[], Iterable[str]]) -> None:
        """Write releases and tokens as sessions end; renew the live ones' leases. Runs until
        cancelled; then writes what is pending once more."""
        every = LEASE / 3
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, renewed + every - loop.time())):
                        await self._wake.wait()
                self._wake.clear()
                await self._write()
                if loop.time() >= renewed + every:
                    renewed = loop.time()
                    await self._renew(live())
        finally:
            await asyncio.shield(self._write())

    async def _write(self) -> None:
        released, self._released = self._released, []
        tokens, self._tokens = self._tokens, []
        try:
            for session_id, counters in released:
                await self.limits.release(session_id, counters)
            for name, amount in tokens:
                await self.limits.add(f"tpm:{name}", amount)
        except BusError as exc:
            log.warning("admissions not released %s", kv(error=exc.message))

    async def _renew(self, live: Iterable[str]) -> None:
        held = [(sid, self.held[sid]) for sid in live if sid in self.held]
        try:
            await self.limits.renew(held, LEASE)
        except BusError as exc:
            log.warning("admissions not renewed %s", kv(error=exc.message))
