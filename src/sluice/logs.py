"""Log lines on stderr: ``message key=value …`` (text), or one JSON object a line (json), with
the session and correlation ids where they are known; secrets redacted from every line of the
``sluice`` loggers, in either format."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import orjson

from sluice.redact import TOKENS_ONLY, Redactor

#: the formats ``[server] log_format`` takes
LOG_FORMATS = ("text", "json")
#: uvicorn's loggers that JSON lines take over (its access log stays off)
ASGI_SERVER_LOGGERS = ("uvicorn", "uvicorn.error")

#: the id that ties a request's lines together: the client's ``X-Request-Id`` (or
#: ``X-Correlation-Id``), else one made for the request; a session's lines carry the one of
#: the request that started it
CORRELATION_ID: ContextVar[str | None] = ContextVar("sluice_correlation_id", default=None)
#: the session the current task works for (set by the session's own task, and by the
#: request that started it)
SESSION_ID: ContextVar[str | None] = ContextVar("sluice_session_id", default=None)


class Fields(str):
    """``kv()``'s text, which is what a text line shows, with its fields kept apart for the
    JSON lines."""

    fields: dict[str, Any]


def kv(**fields: Any) -> Fields:
    """``key=value`` pairs; values with spaces are quoted, floats kept short; None skipped."""
    parts = []
    kept: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        kept[key] = value
        if isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
            if not text or any(c in text for c in ' "='):
                text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    line = Fields(" ".join(parts))
    line.fields = kept
    return line


def setup_logging(level: str = "info", log_format: str = "text") -> None:
    # The format uses none of these, and each record would look them up: the calling frame
    # (``sys._getframe`` walks), the thread, the process (a ``getpid`` system call) and the
    # multiprocessing name. The logging HOWTO's "Optimization" section names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    REDACTION.structured = log_format == "json"
    handler.addFilter(REDACTION)
    root = logging.getLogger("sluice")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    if log_format == "json":
        # Every line on stderr is JSON: the warnings of the libraries below too (the ASGI
        # server's, asyncio's), which would otherwise print as plain text.
        others = logging.getLogger()
        others.handlers[:] = [handler]
        others.setLevel(logging.WARNING)
        for name in ASGI_SERVER_LOGGERS:  # (their handlers, if an earlier server set them)
            server = logging.getLogger(name)
            server.handlers.clear()
            server.propagate = True


def json_lines() -> bool:
    """Whether ``setup_logging`` chose JSON lines: the server then leaves its own loggers
    to the root's handler instead of giving them one of its own."""
    return REDACTION.structured


# -- JSON lines --------------------------------------------------------------------------------

#: the keys of a JSON line that a field of the same name may not take (it gets ``kv_``)
RESERVED = frozenset(("ts", "level", "logger", "message", "correlation_id", "exception", "stack"))


class JsonFormatter(logging.Formatter):
    """One JSON object a record: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``
    (the line's text without its fields), the ``kv()`` fields as keys of their own,
    ``session_id`` and ``correlation_id`` where known, and ``exception`` (the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        text, fields = structured(record)
        created = record.created
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": text,
        }
        for key, value in fields.items():
            line[f"kv_{key}" if key in RESERVED else key] = value
        if "session_id" not in line:
            session_id = SESSION_ID.get()
            if session_id is not None:
                line["session_id"] = session_id
        correlation_id = CORRELATION_ID.get()
        if correlation_id is not None:
            line["correlation_id"] = REDACTION.text(correlation_id)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


def structured(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """The record's text without its ``kv()`` fields, and the fields (numbers and booleans
    as they are, anything else as text); as redacted, if the redaction filter has seen it."""
    kept: tuple[str, dict[str, Any]] | None = getattr(record, "sluice_structured", None)
    if kept is not None:
        return kept
    return _split(record)


_SPACES = re.compile(" {2,}")


def _split(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    args = record.args
    if not isinstance(args, tuple) or not any(type(a) is Fields for a in args):
        return record.getMessage(), {}
    fields: dict[str, Any] = {}
    for arg in args:
        if type(arg) is Fields:
            for key, value in arg.fields.items():
                fields[key] = value if isinstance(value, int | float) else str(value)
    text = str(record.msg) % tuple("" if type(a) is Fields else a for a in args)
    return _SPACES.sub(" ", text).strip(), fields


# -- redaction ---------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Redacts secrets from each record's message, traceback and stack: the configured keys
    of each source (a running gateway's current redactor, see ``redact_logs``), and token
    shapes always. It sits on every ``sluice`` logger and on the handler of
    ``setup_logging``, so a record is clean whichever handler takes it. With JSON lines
    (``structured``), a record whose message it changes keeps its text and fields apart,
    each redacted, for the formatter."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[Callable[[], Redactor]] = []
        self.structured = False

    def redactors(self) -> list[Redactor]:
        return [source() for source in self.sources] or [TOKENS_ONLY]

    def text(self, text: str) -> str:
        for redactor in self.redactors():
            text = redactor.text(text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = self.redactors()
        message = clean = record.getMessage()
        for redactor in redactors:
            clean = redactor.text(clean)
        if clean is not message:
            if self.structured and not hasattr(record, "sluice_structured"):
                text, fields = _split(record)
                for redactor in redactors:
                    text = redactor.text(text)
                    fields = {
                        k: redactor.text(v) if isinstance(v, str) else v for k, v in fields.items()
                    }
                record.__dict__["sluice_structured"] = (text, fields)
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
