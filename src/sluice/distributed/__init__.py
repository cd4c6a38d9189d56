"""What sessions share across processes and nodes: the live event log, the control channel and
the operations bus.

Each is a small protocol with an in-process implementation (the embedded default, one process)
and a Redis one (``[bus] url = "redis://…"``), and one contract test suite that both pass:

- ``livelog.LiveLog``: a session's events as they are relayed, readable and followable from any
  process, with a lookup that answers none / live (on which node) / done;
- ``control.Control``: commands (Stop, Retry) to the node that owns a session, and node leases;
- ``sluice.session.bus.Bus``: coalesced operations messages (``redis_backend.RedisBus``).

``backplane.open_backplane(settings)`` builds the three from ``[bus]``. This package imports
nothing of a session: sessions use it, not the other way round.

Errors of the layers below (redis-py, sockets) are mapped at the boundary to ``BusError``;
callers never catch a library's exceptions.
"""

from __future__ import annotations

from sluice.errors import SluiceError


class BusError(SluiceError):
    """The shared backend (Redis) did not answer, or refused a command."""

    type = "bus_unavailable"
    status = 503
    retryable = True
