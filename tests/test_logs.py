"""The gateway's log setup: structured lines, and no per-record lookups the format never uses."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sluice.logs import kv, setup_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    saved = (
        logging._srcfile,
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    )
    root = logging.getLogger("sluice")
    handlers, level, propagate = root.handlers[:], root.level, root.propagate
    try:
        yield
    finally:
        (
            logging._srcfile,
            logging.logThreads,
            logging.logProcesses,
            logging.logMultiprocessing,
        ) = saved
        root.handlers[:], root.level, root.propagate = handlers, level, propagate


def test_a_record_skips_the_caller_thread_and_process_lookups(restored_logging: None) -> None:
    setup_logging("info")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.getLogger("sluice").addHandler(Keep())
    logging.getLogger("sluice.session").info("session finished %s", kv(state="complete"))
    (record,) = records
    assert record.getMessage() == "session finished state=complete"
    assert record.lineno == 0 and record.thread is None and record.process is None


def test_kv_quotes_what_would_split_and_skips_none() -> None:
    assert kv(a=1, b=None, c="two words", d=0.1234567) == 'a=1 c="two words" d=0.123457'
