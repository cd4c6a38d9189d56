"""The cyclic garbage collector, tuned for a relay: young collections only, full ones when idle.

Reference counting frees almost everything a relayed chunk allocates at once. What the cyclic
collector still finds is what survives: above all the entries of the live sessions' event
logs, tens of thousands of objects a second at a few hundred streams (a tuple and an event per
delta when these figures were measured; the events are now structs it does not track). With
CPython's generations, each of them is examined again and again as it ages, and a collection
of the older generations stops every stream for as long as it walks them: 30 to 51 ms for a
middle-generation collection at 100 and 200 streams (up to 86 ms with a lower young
threshold), and 185 to 225 ms for a full one, measured with the benchmark's load against an
instrumented gateway.

So every collection is followed by ``gc.freeze()``: its survivors move to the permanent
generation and are never examined again, and each collection walks only what was allocated
since the previous one (a few milliseconds). Objects frozen this way are still freed by
reference counting the moment nothing refers to them; only a reference cycle that forms
among them later would wait. For those, a full collection (everything unfrozen, collected,
frozen again) runs once the gateway has been quiet for ``QUIET`` seconds (no session live,
none started or ended) and the last one is a minute old, and at the latest every hour. (An
instant with no live session was once enough: a full collection of 66 ms then landed
between two back-to-back streams of the benchmark's c=1 probe.) After a benchmark run of
about 4,500 sessions, up to 200 at once, that full collection found 10 unreachable objects
among some 200,000 frozen ones: the sessions' structures are freed by reference counting,
not by the collector.

CPython starts a young collection when its count of tracked allocations *net of frees* passes
the threshold, and frees of frozen objects count too. Under a steady load, the sessions that
end free about as many objects as the live ones allocate, so the count hovers under the
threshold while the young generation grows: after 20 s at 200 streams it held 209,175
objects (mostly the live logs' deltas and their entries) and one collection walked them all
in 110 ms, a gap of five ticks in every stream. Many short sessions one after another do the
same at a single stream: in the benchmark's back-to-back probe (about 400 sessions a second)
no young collection ran for two seconds, and then one took 45 ms. What offsets the count is
sessions ending, which is as often as sessions start. So a young collection also runs once a
session's first token has been written (just after, in the loop's next turn: its next token
is then the furthest away it will be), at most every ``YOUNG_EVERY`` seconds, whatever the
count says. Each walks only what was allocated and kept since the last: under a millisecond
at 200 streams. With little turnover, the count works as CPython intends. Two other
triggers were tried: a timer every 20 ms (its 50 wake-ups a second cost about 80 µs of CPU
per chunk at one paced stream: 431 and 451 µs against 338 and 368), and a session's end
(which, back to back, is the next session's start: the collection landed in its time to
first token).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from sluice.logs import kv

log = logging.getLogger("sluice.gc")

#: Tracked allocations (net of frees) between two young collections; each walks about these.
YOUNG_THRESHOLD = 5_000
#: A full collection when the gateway is quiet and the last one is at least this old (s) …
FULL_WHEN_IDLE_AFTER = 60.0
#: Idle means no session live, and none started or ended, for this long (seconds).
QUIET = 2.0
#: … and at the latest after this long, idle or not.
FULL_AT_LEAST_EVERY = 3600.0
#: How often the idle check looks.
CHECK_EVERY = 10.0
#: At most this often (seconds), a young collection after a session's first token.
YOUNG_EVERY = 0.02


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        gc.freeze()


def tune_gc() -> None:
    """Young collections only, from now on: everything allocated so far (modules,
    configuration, the app) is frozen, and so are the survivors of every collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def untune_gc() -> None:
    """Back to CPython's collector (for tests): nothing frozen, default thresholds."""
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)


def full_collection() -> int:
    """Examine everything once: unfreeze, collect, freeze again. Returns what was unreachable."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    log.info(
        "full collection %s",
        kv(unreachable=found, ms=round((time.perf_counter() - started) * 1000, 1)),
    )
    return found


class YoungCollections:
    """A young collection after a session's first token, unless one ran in the last
    ``YOUNG_EVERY`` seconds: install ``first_token`` as the session manager's hook. It runs in
    the loop's next turn, once the token is written."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0.0

    def first_token(self, _session: object) -> None:
        now = time.monotonic()
        if now - self._last >= YOUNG_EVERY:
            self._last = now
            asyncio.get_running_loop().call_soon(gc.collect, 0)


async def collect_when_quiet(quiet_for: Callable[[], float]) -> None:
    """Run forever: a full collection when the gateway has been quiet (no session live, none
    started or ended) for ``QUIET`` seconds and the last one is a minute old, and at the
    latest every hour. An instant with no live session is not enough: between two
    back-to-back sessions there is one, and the next would wait out the collection."""
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(CHECK_EVERY)
        since = time.monotonic() - last_full
        if (since >= FULL_WHEN_IDLE_AFTER and quiet_for() >= QUIET) or (
            since >= FULL_AT_LEAST_EVERY
        ):
            full_collection()
            last_full = time.monotonic()
