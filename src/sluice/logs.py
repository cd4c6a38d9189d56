"""Structured log lines: ``message key=value …`` on stderr, with the session id on every line;
secrets redacted from every line of the ``sluice`` loggers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from sluice.redact import TOKENS_ONLY, Redactor


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
    handler.addFilter(REDACTION)
    root = logging.getLogger("sluice")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class RedactingFilter(logging.Filter):
    """Redacts secrets from each record's message, traceback and stack: the configured keys
    of each source (a running gateway's current redactor, see ``redact_logs``), and token
    shapes always. It sits on every ``sluice`` logger and on the handler of
    ``setup_logging``, so a record is clean whichever handler takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[Callable[[], Redactor]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = [source() for source in self.sources] or [TOKENS_ONLY]
        message = clean = record.getMessage()
        for redactor in redactors:
            clean = redactor.text(clean)
        if clean is not message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        for field in ("exc_text", "stack_info"):
            text = getattr(record, field)
            if text:
                for redactor in redactors:
                    text = redactor.text(text)
                setattr(record, field, text)
        return True


_FORMATTER = logging.Formatter()

#: The one filter; ``redact_logs`` adds it to the loggers and gives it its sources.
REDACTION = RedactingFilter()


def redact_logs(source: Callable[[], Redactor]) -> Callable[[], None]:
    """Redact with ``source()`` (called for each record: keys rotate) from the lines of every
    ``sluice`` logger; returns the function that stops it."""
    manager = logging.Logger.manager
    names = ["sluice", *(n for n in manager.loggerDict if n.startswith("sluice."))]
    for name in names:
        logging.getLogger(name).addFilter(REDACTION)  # (added once, however often called)
    REDACTION.sources.append(source)

    def stop() -> None:
        if source in REDACTION.sources:
            REDACTION.sources.remove(source)

    return stop
