"""Structured log lines: ``message key=value …`` on stderr, with the session id on every line."""

from __future__ import annotations

import logging
import sys
from typing import Any


def kv(**fields: Any) -> str:
    """``key=value`` pairs; values with spaces are quoted, floats kept short."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
            if not text or any(c in text for c in ' "='):
                text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def setup_logging(level: str = "info") -> None:
    # The format uses none of these, and each record would look them up: the calling frame
    # (``sys._getframe`` walks), the thread, the process (a ``getpid`` system call) and the
    # multiprocessing name. The logging HOWTO's "Optimization" section names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("sluice")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
