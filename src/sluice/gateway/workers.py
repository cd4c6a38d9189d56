"""``sluice serve --workers N``: the supervisor that binds the port once, runs N gateway
processes on it, replaces one that dies and stops them all on SIGTERM or SIGINT.

The port's listening sockets are the supervisor's: it binds ``N * LISTENERS`` sockets with
``SO_REUSEPORT`` (``sluice.listen``) and hands each worker a group of its own, so the kernel
spreads new connections evenly over the workers and no two processes wait on one accept
queue. The supervisor keeps every group open: while a dead worker is being replaced, the
connections its sockets receive wait in their queue for the new process instead of being
refused, and a second gateway started on the same port is refused as with one process.

A worker is ``sluice serve`` itself, started again with a hidden ``--worker-sockets`` option
naming the descriptors it inherits; it runs ``serve_forever`` as one process does. The
workers write their metrics to a directory the supervisor makes and removes
(``PROMETHEUS_MULTIPROC_DIR``, see ``sluice.gateway.metrics``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from sluice.gateway.metrics import MULTIPROC_DIR_ENV
from sluice.listen import BACKLOG, LISTENERS, listening_sockets
from sluice.logs import kv

log = logging.getLogger("sluice.workers")

#: the hidden option of ``sluice serve`` that makes it a worker: its sockets' descriptors
WORKER_SOCKETS_OPTION = "--worker-sockets"
#: workers replaced at most this often: past ``RESTARTS`` in ``RESTART_WINDOW`` seconds the
#: supervisor stops (a worker that dies at once would otherwise be started forever)
RESTARTS = 5
RESTART_WINDOW = 60.0
#: a worker's exit status meaning its configuration was refused: not restarted
REFUSED = 2
#: seconds between two looks at the workers
TICK = 0.1
#: seconds a worker gets to finish after SIGTERM before SIGKILL
STOP_TIMEOUT = 30.0

_PR_SET_PDEATHSIG = 1


def bus_refusal(workers: int, bus_url: str | None) -> str | None:
    """Why ``--workers`` must not start: several workers without a shared bus."""
    if workers <= 1 or bus_url:
        return None
    return (
        f"--workers {workers} needs [bus] url (Redis): a session lives in the worker that "
        "started it, and following or stopping it from another would not find it "
        "(docs/deployment.md#workers-on-one-node)"
    )


def worker_sockets(option: str) -> list[socket.socket]:
    """The listening sockets a worker inherited, from ``--worker-sockets 5,6,7``."""
    return [socket.socket(fileno=int(fd)) for fd in option.split(",") if fd]


@dataclass
class _Slot:
    """One worker's place: its sockets (kept for its successor) and its process."""

    index: int
    sockets: list[socket.socket]
    process: subprocess.Popen[bytes] | None = None
    started: list[int] = field(default_factory=list)


class Supervisor:
    """Runs ``count`` workers on ``host``:``port`` until a signal says stop.

    ``argv`` is the worker's command without ``--worker-sockets`` (``sluice serve`` with the
    same configuration and the port as bound).
    """

    def __init__(self, argv: Sequence[str], host: str, port: int, count: int) -> None:
        self.argv = list(argv)
        self.count = count
        sockets = listening_sockets(host, port, count * LISTENERS)
        if len(sockets) < count * LISTENERS:  # no SO_REUSEPORT here: one socket, shared
            sockets = sockets * count
        for sock in sockets:
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
        self.host = host
        self.port: int = sockets[0].getsockname()[1]
        self.slots = [
            _Slot(i, sockets[i * LISTENERS : (i + 1) * LISTENERS] or sockets[i : i + 1])
            for i in range(count)
        ]
        self.metrics_dir = tempfile.mkdtemp(prefix="sluice-metrics-")
        self._restarts: deque[float] = deque()
        self._signal: int | None = None
        #: the workers sent SIGTERM already, by pid
        self._stopped: set[int] = set()
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> int:
        """Start the workers, keep them running, stop them on a signal; the exit status."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for slot in self.slots:
                if self._signal is None:
                    self._start(slot)
            print(f"sluice gateway listening on {self.url} ({self.count} workers)", flush=True)
            status = self._watch()
            self._stop_all()
            return status
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for slot in self.slots:
                for sock in slot.sockets:
                    sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    # -- the loop ------------------------------------------------------------------------------

    def _watch(self) -> int:
        while self._signal is None:
            time.sleep(TICK)
            for slot in self.slots:
                process = slot.process
                if process is None or process.poll() is None:
                    continue
                self._buried(slot, process)
                if self._signal is not None:
                    break
                if process.returncode == REFUSED:
                    print(f"sluice: worker {slot.index} refused to start", file=sys.stderr)
                    return REFUSED
                if not self._may_restart():
                    print(
                        f"sluice: workers died {RESTARTS} times within {RESTART_WINDOW:.0f} s; "
                        "stopping (see the log above)",
                        file=sys.stderr,
                    )
                    return 1
                log.warning(
                    "worker died, starting another %s",
                    kv(worker=slot.index, pid=process.pid, status=process.returncode),
                )
                self._start(slot)
        log.info("stopping the workers %s", kv(signal=signal.Signals(self._signal).name))
        return 0

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= RESTARTS:
            return False
        self._restarts.append(now)
        return True

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        """The first signal stops the loop; each is passed on to the workers (a second one
        makes them skip the wait for their connections, as with one process)."""
        again = self._signal is not None
        self._signal = sig
        for slot in self.slots:
            self._terminate(slot, again)

    def _terminate(self, slot: _Slot, again: bool = False) -> None:
        """SIGTERM to the slot's worker, once (or ``again``)."""
        process = slot.process
        if process is None or process.poll() is not None:
            return
        if again or process.pid not in self._stopped:
            self._stopped.add(process.pid)
            process.send_signal(signal.SIGTERM)

    # -- workers -------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        fds = [sock.fileno() for sock in slot.sockets]
        argv = [*self.argv, WORKER_SOCKETS_OPTION, ",".join(map(str, fds))]
        env = {**os.environ, MULTIPROC_DIR_ENV: self.metrics_dir}
        slot.process = subprocess.Popen(
            argv,
            env=env,
            pass_fds=fds,
            # Not in the terminal's process group: Ctrl-C reaches the supervisor alone, which
            # passes it on once; a worker whose supervisor dies is sent SIGTERM by the kernel.
            process_group=0,
            preexec_fn=self._die_with_parent,
        )
        slot.started.append(slot.process.pid)
        log.info("worker started %s", kv(worker=slot.index, pid=slot.process.pid))

    def _die_with_parent(self) -> None:
        self._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def _buried(self, slot: _Slot, process: subprocess.Popen[bytes]) -> None:
        """A worker gone: its live gauges no longer count."""
        mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
        slot.process = None

    def _stop_all(self) -> None:
        """SIGTERM to every worker still running, then wait; SIGKILL past ``STOP_TIMEOUT``."""
        running = [s for s in self.slots if s.process is not None]
        for slot in running:
            self._terminate(slot)
        deadline = time.monotonic() + STOP_TIMEOUT
        for slot in running:
            process = slot.process
            assert process is not None
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._buried(slot, process)


def run_workers(argv: Sequence[str], host: str, port: int, count: int) -> int:
    """``sluice serve --workers N`` after its checks: the supervisor's exit status."""
    return Supervisor(argv, host, port, count).run()
