"""The gateway's log setup: structured lines (text, or JSON objects with the session and
correlation ids), secrets redacted in either, and no per-record lookups the format never uses."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.bench.proc import free_port
from sluice.gateway.app import correlation_id
from sluice.logs import (
    ASGI_SERVER_LOGGERS,
    CORRELATION_ID,
    REDACTION,
    SESSION_ID,
    kv,
    redact_logs,
    setup_logging,
)
from sluice.redact import Redactor
from tests.gateways import gateway_node

#: a configured provider key (fake), and a token of a known provider's shape (fake too)
PROVIDER_KEY = "test-key-not-real-0042"
SHAPED = "sk-proj-" + "fakeTestKeyNotReal2" * 2
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) (sluice[\w.]*) (.*)$")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    saved = (
        logging._srcfile,
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    )
    loggers = [logging.getLogger(name) for name in ("sluice", None, *ASGI_SERVER_LOGGERS)]
    kept = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    structured, sources = REDACTION.structured, REDACTION.sources[:]
    try:
        yield
    finally:
        (
            logging._srcfile,
            logging.logThreads,
            logging.logProcesses,
            logging.logMultiprocessing,
        ) = saved
        for logger, (handlers, level, propagate) in zip(loggers, kept, strict=True):
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
        REDACTION.structured, REDACTION.sources[:] = structured, sources


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- text lines --------------------------------------------------------------------------------


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


def test_kv_keeps_its_fields_apart_for_the_json_lines() -> None:
    line = kv(a=1, b=None, c="two words", d=0.1234567)
    assert line.fields == {"a": 1, "c": "two words", "d": 0.1234567}
    assert "x " + line == 'x a=1 c="two words" d=0.123457'  # a str, as before


def test_text_lines_are_as_before_and_carry_no_ids(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info")
    context = contextvars.copy_context()
    context.run(CORRELATION_ID.set, "req-1")
    context.run(
        logging.getLogger("sluice.session").warning,
        "session error %s",
        kv(session_id="op-1", type="upstream_error", message="it broke"),
    )
    (line,) = capsys.readouterr().err.splitlines()
    match = TEXT_LINE.match(line)
    assert match is not None, line
    assert match.groups() == (
        "WARNING",
        "sluice.session",
        'session error session_id=op-1 type=upstream_error message="it broke"',
    )
    assert "req-1" not in line


# -- JSON lines --------------------------------------------------------------------------------


def test_a_json_line_has_the_text_the_fields_and_the_ids(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", "json")
    log = logging.getLogger("sluice.session")

    def in_a_session() -> None:
        CORRELATION_ID.set("req-7")
        SESSION_ID.set("op-7")
        log.info("client left %s", kv(reason="client_too_slow", readers=0, delay_s=0.25))
        log.warning(
            "session error %s",
            kv(session_id="op-8", type="upstream_error", retryable=True, message="it broke"),
        )
        log.info("plain %d%% of it", 50)

    contextvars.copy_context().run(in_a_session)
    log.info("outside any request")
    left, error, plain, outside = json_lines(capsys.readouterr().err)
    assert TS.match(left["ts"]), left["ts"]
    assert left == {
        "ts": left["ts"],
        "level": "INFO",
        "logger": "sluice.session",
        "message": "client left",
        "reason": "client_too_slow",
        "readers": 0,
        "delay_s": 0.25,
        "session_id": "op-7",
        "correlation_id": "req-7",
    }
    # the line's own session id wins; a field named like a key of the line gets ``kv_``
    assert error["session_id"] == "op-8" and error["correlation_id"] == "req-7"
    assert error["message"] == "session error" and error["kv_message"] == "it broke"
    assert error["retryable"] is True and error["level"] == "WARNING"
    assert plain["message"] == "plain 50% of it"
    assert "session_id" not in outside and "correlation_id" not in outside


def test_json_lines_are_redacted_as_text_lines_are(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = redact_logs(lambda: Redactor([PROVIDER_KEY]))
    log = logging.getLogger("sluice.session")
    secret = f"bad key {PROVIDER_KEY} and {SHAPED}"
    clean = "bad key [redacted] and sk-proj-[redacted]"

    def log_both() -> None:
        log.warning("session error %s", kv(session_id="op-1", message=secret))
        log.warning("upstream said %s", secret)
        try:
            raise RuntimeError(secret)
        except RuntimeError:
            log.exception("session failed %s", kv(session_id="op-1"))

    try:
        setup_logging("info")
        log_both()
        text = capsys.readouterr().err
        setup_logging("info", "json")
        log_both()
        lines = capsys.readouterr().err
    finally:
        stop()
    assert PROVIDER_KEY not in text + lines and SHAPED not in text + lines
    assert f'message="{clean}"' in text and f"upstream said {clean}" in text
    assert f"RuntimeError: {clean}" in text
    error, said, failed = json_lines(lines)
    assert error["message"] == "session error" and error["kv_message"] == clean
    assert error["session_id"] == "op-1"
    assert said["message"] == f"upstream said {clean}"
    assert failed["message"] == "session failed" and failed["level"] == "ERROR"
    assert failed["exception"].startswith("Traceback")
    assert f"RuntimeError: {clean}" in failed["exception"]


def test_the_warnings_of_other_libraries_are_json_lines_too(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # as an earlier server in this process may have left it: a handler of its own
    logging.getLogger("uvicorn").addHandler(logging.StreamHandler())
    logging.getLogger("uvicorn").propagate = False
    setup_logging("info", "json")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("asyncio").info("not shown: below warning")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["logger"] == "uvicorn.error" and line["level"] == "WARNING"
    assert line["message"] == "Invalid HTTP request received."


# -- correlation ids ---------------------------------------------------------------------------


def test_the_correlation_id_is_the_clients_when_it_is_a_short_token() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"type": "http", "headers": list(headers)}

    assert correlation_id(scope((b"x-request-id", b"req-42.a:b"))) == "req-42.a:b"
    assert correlation_id(scope((b"x-correlation-id", b"c-1"))) == "c-1"
    assert correlation_id(scope((b"x-correlation-id", b"c-1"), (b"x-request-id", b"r-1"))) == "r-1"
    made = {correlation_id(scope()) for _ in range(3)}
    assert len(made) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", m) for m in made)
    # nothing that could forge a log line, nothing overlong
    for bad in (b"a b", b"x\nlevel=ERROR", b'"', b"a" * 129, b""):
        assert re.fullmatch(r"[0-9a-f]{16}", correlation_id(scope((b"x-request-id", bad))))


# -- a gateway that logs JSON lines ------------------------------------------------------------


@asynccontextmanager
async def echoing_upstream() -> AsyncIterator[int]:
    """A provider that refuses every request with a 401 whose message repeats the key it was
    sent and a token of a known shape, as a misconfigured proxy might."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        auth = re.search(r"(?im)^authorization: bearer (\S+)", head)
        key = auth.group(1) if auth else "none"
        body = json.dumps(
            {"error": {"message": f"Incorrect API key {key} ({SHAPED})", "type": "auth"}}
        ).encode()
        writer.write(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def run_to_end(http: httpx.AsyncClient, session_id: str) -> None:
    async with http.stream("GET", f"/api/sessions/{session_id}/events") as events:
        async for _ in events.aiter_bytes():
            pass


async def test_a_gateway_with_log_format_json_writes_json_lines_with_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_TEST_ECHO_KEY", PROVIDER_KEY)
    port = free_port()
    async with echoing_upstream() as upstream:
        config = (
            f'[server]\nport = {port}\nlog_format = "json"\n'
            f'[store]\nurl = "sqlite:///{tmp_path}/sluice.db"\n'
            "[sim]\ntoken_rate = 2000\nttft = 0.01\noutput_tokens = 30\n"
            f'[providers.echo]\nkind = "openai"\nbase_url = "http://127.0.0.1:{upstream}/v1"\n'
            'api_key_env = "SLUICE_TEST_ECHO_KEY"\n'
        )
        async with gateway_node(tmp_path, "gw", config, port) as node:
            started = await node.http.post(
                "/api/sessions",
                json={"model": "sim/support", "prompt": "Hello"},
                headers={"x-request-id": "req-complete-1"},
            )
            complete = started.json()["id"]
            failed = (
                await node.http.post(
                    "/api/sessions", json={"model": "sim/error-mid-stream", "prompt": "Hello"}
                )
            ).json()["id"]
            await run_to_end(node.http, complete)
            await run_to_end(node.http, failed)
            echoed = await node.http.post(
                "/v1/chat/completions",
                json={"model": "echo/any", "messages": [{"role": "user", "content": "Hi"}]},
                headers={"x-request-id": "req-echo-1"},
            )
            assert echoed.status_code == 502
            echo_session = echoed.headers["x-sluice-session-id"]
            refused = await node.http.post(
                "/api/sessions",
                json={"model": "nowhere/model", "prompt": "Hello"},
                headers={"x-request-id": "req-refused-1"},
            )
            assert refused.status_code == 404
    text = (tmp_path / "gw.log").read_text()
    assert PROVIDER_KEY not in text and SHAPED not in text
    # every line but the banner on stdout is one JSON object
    lines = [line for line in text.splitlines() if line.strip()]
    banner = [line for line in lines if line.startswith("sluice gateway listening on ")]
    assert len(banner) == 1
    records = [json.loads(line) for line in lines if line not in banner]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)

    def of(session_id: str) -> list[dict[str, Any]]:
        return [r for r in records if r.get("session_id") == session_id]

    finished = [r for r in of(complete) if r["message"] == "session finished"]
    assert [(r["state"], r["correlation_id"]) for r in finished] == [("complete", "req-complete-1")]
    # the errored session: every line of it carries the one id made for its request
    failed_lines = of(failed)
    assert {r["message"] for r in failed_lines} >= {"session error", "session finished"}
    (made,) = {r["correlation_id"] for r in failed_lines}
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    # the provider's echo of the key: redacted in the JSON line as in a text line
    (error,) = [r for r in of(echo_session) if r["message"] == "session error"]
    assert error["correlation_id"] == "req-echo-1" and error["type"] == "upstream_auth"
    assert "Incorrect API key [redacted] (sk-proj-[redacted])" in error["kv_message"]
    # a refusal before any session: the request's id, no session
    (rejected,) = [r for r in records if r.get("correlation_id") == "req-refused-1"]
    assert rejected["message"] == "request rejected" and "session_id" not in rejected
    assert rejected["type"] == "unknown_model" and rejected["status"] == 404
