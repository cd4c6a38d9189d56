"""The shared interfaces built from ``[bus]`` (live log, control, bus, limits): in-process when no
URL is set, else Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluice.config import BusSettings
from sluice.distributed.control import Control, MemoryControl
from sluice.distributed.limits import Limits, MemoryLimits
from sluice.distributed.livelog import LiveLog, MemoryLiveLog
from sluice.session.bus import Bus, MemoryBus

if TYPE_CHECKING:
    from sluice.distributed.redis_backend import RedisLink


@dataclass(slots=True)
class Backplane:
    """The live log, the control channel and the operations bus of one process, and what
    closes them."""

    log: LiveLog
    control: Control
    bus: Bus
    #: the connections to Redis, None in-process
    link: RedisLink | None = None
    #: the admission limits counted across processes
    limits: Limits = field(default_factory=MemoryLimits)

    @property
    def kind(self) -> str:
        return "memory" if self.link is None else "redis"

    async def open(self) -> None:
        """Check that the shared backend answers; raises ``BusError`` when Redis does not."""
        if self.link is not None:
            await self.link.open()

    async def close(self) -> None:
        """Write what the live log has queued, then close the connections. Idempotent."""
        await self.log.close()
        await self.control.close()
        await self.limits.close()
        if self.link is not None:
            await self.link.close()


def build_backplane(settings: BusSettings) -> Backplane:
    """The backends ``settings`` name, not yet connected (Redis is reached at the first
    command, or by ``Backplane.open``): what a gateway builds before its event loop runs."""
    if settings.url is None:
        return Backplane(MemoryLiveLog(), MemoryControl(), MemoryBus())
    from sluice.distributed.redis_backend import RedisBus, RedisControl, RedisLink, RedisLiveLog
    from sluice.distributed.redis_limits import RedisLimits

    link = RedisLink(settings.url, settings.prefix)
    live_log = RedisLiveLog(link, window=settings.append_window, live_ttl=settings.live_ttl)
    return Backplane(live_log, RedisControl(link), RedisBus(link), link, RedisLimits(link))


async def open_backplane(settings: BusSettings) -> Backplane:
    """The backends ``settings`` name, ready to use; raises ``BusError`` when Redis does not
    answer."""
    backplane = build_backplane(settings)
    try:
        await backplane.open()
    except BaseException:
        await backplane.close()
        raise
    return backplane
