"""docs/runbook.md, run as written: every command of its ``sh`` blocks against a real gateway,
and every configuration snippet, PromQL query and table checked against the code.

The conventions the runbook states, and that these tests rely on:

- ``sh`` blocks are commands; each block runs on its own as one ``bash -euo pipefail`` script
  (so a ``SID=$(…)`` line that starts a simulator session serves the lines after it), in a
  working directory that has the checkout's ``.venv``, ``deploy`` and ``docs`` and the
  ``sluice.toml`` the gateway was started with. The blocks run at the same time, so none may
  depend on another.
- ``$SLUICE`` is a gateway started with the runbook's own ``.venv/bin/sluice serve …`` command
  (the one command not run as part of a block: it is the server), ``$PUBLIC`` a real nginx
  with its default settings in front of it, ``$SLUICE_LOG`` the file that command logs to.
- A command ends with a comment ``# exit N`` when it exits N on purpose; any other exits 0.
  A comment ``# → text`` says the command's output (stdout and stderr) contains ``text``.
- ``toml`` blocks load with ``load_settings``; ``nginx`` blocks (a ``location``) pass
  ``nginx -t`` inside a server; ``promql`` blocks name only metrics, labels and bucket bounds
  the gateway exposes.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics import MetricWrapperBase

from sluice import errors
from sluice.bench.proc import free_port
from sluice.config import ConfigError, Settings, load_settings
from sluice.distributed import BusError
from sluice.gateway.metrics import GatewayMetrics
from sluice.session.recovery import GATEWAY_LOST, NODE_LOST
from sluice.wire._fold import truncated
from tests.proxies import servers

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO / "docs" / "runbook.md"

#: the fence languages the runbook may use: each one is checked by a test below
CHECKED_LANGUAGES = {"sh", "toml", "nginx", "promql"}
#: the checkout's entries the commands use, linked into the working directory
CHECKOUT_LINKS = (".venv", "deploy", "docs")
SERVE_PREFIX = ".venv/bin/sluice serve"
#: every block at once; the longest is a doctor run with 75 s of idle
BLOCKS_TIMEOUT = 240.0


# -- reading the runbook -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fence:
    lang: str
    text: str
    #: the line of the opening fence (1-based)
    line: int


@dataclass(frozen=True, slots=True)
class Command:
    #: the command as written, continuation lines included
    text: str
    line: int
    exit: int
    shows: str | None

    @property
    def where(self) -> str:
        return f"docs/runbook.md:{self.line}: {self.text.splitlines()[0][:100]}"


EXIT_MARK = re.compile(r"\s#\s+exit\s+(\d+)\s*$")
SHOWS_MARK = re.compile(r"\s#\s+→\s+(.+?)\s*$")


def fences(text: str) -> list[Fence]:
    found: list[Fence] = []
    lang: str | None = None
    body: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if lang is None and line.startswith("```"):
            lang, body, start = line[3:].strip(), [], number
        elif lang is not None and line.strip() == "```":
            found.append(Fence(lang, "\n".join(body), start))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"docs/runbook.md:{start}: a code block is not closed"
    return found


def commands(fence: Fence) -> list[Command]:
    """The block's commands: a line ending with ``\\`` continues on the next one; blank and
    comment lines are not commands."""
    found: list[Command] = []
    pending: list[str] = []
    first = 0
    for offset, line in enumerate(fence.text.splitlines(), start=1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            first = fence.line + offset
        pending.append(line)
        if line.endswith("\\"):
            continue
        last = pending[-1]
        exit_mark, shows_mark = EXIT_MARK.search(last), SHOWS_MARK.search(last)
        found.append(
            Command(
                text="\n".join(pending),
                line=first,
                exit=int(exit_mark.group(1)) if exit_mark else 0,
                shows=shows_mark.group(1) if shows_mark else None,
            )
        )
        pending = []
    assert not pending, f"docs/runbook.md:{first}: a command ends with a line continuation"
    return found


def runbook_fences(lang: str | None = None) -> list[Fence]:
    found = fences(RUNBOOK.read_text(encoding="utf-8"))
    return [f for f in found if lang is None or f.lang == lang]


def serve_command() -> Command:
    serving = [
        c for f in runbook_fences("sh") for c in commands(f) if c.text.startswith(SERVE_PREFIX)
    ]
    assert len(serving) == 1, f"expected one `{SERVE_PREFIX}` command in the runbook: {serving}"
    return serving[0]


def command_blocks() -> list[list[Command]]:
    """Every ``sh`` block's commands, the server's own command left out."""
    blocks = [
        [c for c in commands(f) if not c.text.startswith(SERVE_PREFIX)]
        for f in runbook_fences("sh")
    ]
    return [block for block in blocks if block]


# -- running it --------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The reader's checkout, without the repository's own sluice.toml, log or database."""
    path = tmp_path / "checkout"
    path.mkdir()
    for name in CHECKOUT_LINKS:
        (path / name).symlink_to(REPO / name)
    return path


@dataclass
class RunbookGateway:
    url: str
    log: Path
    process: asyncio.subprocess.Process


@asynccontextmanager
async def runbook_gateway(workdir: Path) -> AsyncIterator[RunbookGateway]:
    """The gateway the runbook's own serve command starts, on a free port set in sluice.toml."""
    serve = serve_command()
    (workdir / "sluice.toml").write_text(f"[server]\nport = {free_port()}\n")
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"exec {serve.text}",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = workdir / "sluice.log"
    try:
        assert process.stdout is not None
        try:
            async with asyncio.timeout(30):
                line = (await process.stdout.readline()).decode()
        except TimeoutError:
            line = ""
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise AssertionError(f"{serve.where} did not start: {line!r}\n{text}")
        yield RunbookGateway(match.group(1), log, process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def block_script(block: list[Command], outdir: Path) -> str:
    """One bash script for the block: each command's output into its own file, and its exit
    status noted (a command expected to fail is allowed to; any other failure ends the script,
    as ``-e`` does for a reader)."""
    status = outdir / "status"
    parts = []
    for index, command in enumerate(block):
        out = outdir / f"{index}.out"
        if command.exit == 0:
            parts.append(f"{{ {command.text}\n}} >'{out}' 2>&1\necho '{index} 0' >>'{status}'")
        else:
            parts.append(
                f"__rc=0\n{{ {command.text}\n}} >'{out}' 2>&1 || __rc=$?\n"
                f"echo \"{index} $__rc\" >>'{status}'"
            )
    return "\n".join(parts) + "\n"


def write_block(block: list[Command], outdir: Path) -> Path:
    outdir.mkdir(parents=True)
    script = outdir / "block.sh"
    script.write_text(block_script(block, outdir))
    return script


def read_statuses(outdir: Path) -> dict[int, int]:
    """The exit status of each command that ran, by its index in the block."""
    status_path = outdir / "status"
    lines = status_path.read_text().split() if status_path.exists() else []
    return {int(i): int(rc) for i, rc in zip(lines[::2], lines[1::2], strict=True)}


async def run_block(
    block: list[Command], outdir: Path, cwd: Path, env: dict[str, str]
) -> tuple[int, dict[int, int]]:
    script = write_block(block, outdir)
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", str(script), cwd=cwd, env=env, start_new_session=True
    )
    try:
        returncode = await process.wait()
    finally:
        if process.returncode is None:  # cancelled by the deadline: end the whole block
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    return returncode, read_statuses(outdir)


def block_failures(
    block: list[Command], outdir: Path, returncode: int, statuses: dict[int, int]
) -> list[str]:
    failures = []
    for index, command in enumerate(block):
        out_path = outdir / f"{index}.out"
        output = out_path.read_text(errors="replace") if out_path.exists() else ""
        if index not in statuses:
            failures.append(
                f"{command.where}\n  exited {returncode} (expected {command.exit})\n"
                f"  output: {output[-1500:]}"
            )
            break
        if statuses[index] != command.exit:
            failures.append(
                f"{command.where}\n  exited {statuses[index]} (expected {command.exit})\n"
                f"  output: {output[-1500:]}"
            )
        elif command.shows is not None and command.shows not in output:
            failures.append(
                f"{command.where}\n  output lacks {command.shows!r}\n  output: {output[-1500:]}"
            )
    return failures


async def test_every_command_of_the_runbook_works_as_written(workdir: Path, tmp_path: Path) -> None:
    blocks = command_blocks()
    assert sum(len(b) for b in blocks) >= 30, "the runbook lost its commands"
    async with runbook_gateway(workdir) as gw:
        gateway_port = int(gw.url.rsplit(":", 1)[1])
        async with servers.nginx_variant(tmp_path / "nginx", gateway_port, "defaults") as nginx:
            env = {**os.environ, "SLUICE": gw.url, "PUBLIC": nginx.url, "SLUICE_LOG": str(gw.log)}
            outdirs = [tmp_path / "blocks" / str(i) for i in range(len(blocks))]
            async with asyncio.timeout(BLOCKS_TIMEOUT):
                results = await asyncio.gather(
                    *(run_block(b, d, workdir, env) for b, d in zip(blocks, outdirs, strict=True))
                )
        log = gw.log.read_text(errors="replace")
    failures = [
        failure
        for block, outdir, (returncode, statuses) in zip(blocks, outdirs, results, strict=True)
        for failure in block_failures(block, outdir, returncode, statuses)
    ]
    assert not failures, "\n\n".join(failures)
    # nothing the runbook does is a defect in the gateway
    assert "session failed" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
async def test_the_serve_command_stops_on_a_signal_and_finalises_live_sessions(
    workdir: Path, sig: signal.Signals
) -> None:
    async with runbook_gateway(workdir) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            response = await http.post(
                "/api/sessions",
                json={"model": "sim/support", "prompt": "Hello"},
                headers={"x-sim-token-rate": "5"},
            )
            session_id = response.json()["id"]
            assert (await http.get(f"/api/sessions/{session_id}")).json()["state"] in (
                "starting",
                "streaming",
            )
        gw.process.send_signal(sig)
        async with asyncio.timeout(20):
            returncode = await gw.process.wait()
    assert returncode == 0
    log = gw.log.read_text(errors="replace")
    # the record was stored (the line follows the store's write) with the state it ended in
    assert f"session finished session_id={session_id} state=cancelled" in log, log
    # cancelled by the shutdown itself, not cut when the server gave up waiting for it
    assert f"session cancelled session_id={session_id} reason=gateway_shutdown" in log, log
    assert "graceful shutdown exceeded" not in log, log


# -- the settings block ------------------------------------------------------------------------


def test_the_settings_block_names_the_defaults_of_sluice_serve() -> None:
    settings = next(f for f in runbook_fences("sh") if "export SLUICE=" in f.text)
    values = dict(re.findall(r"^export (\w+)=(\S+)", settings.text, re.MULTILINE))
    assert set(values) == {"SLUICE", "PUBLIC", "SLUICE_LOG"}
    defaults = Settings()
    assert values["SLUICE"] == f"http://{defaults.host}:{defaults.port}"
    # the serve command logs to the file the block names
    assert f"2>>{values['SLUICE_LOG']}" in serve_command().text


def program_names(command: Command) -> list[str]:
    """The programs a command runs: the first word of each pipeline stage and substitution."""
    lexer = shlex.shlex(command.text.replace("\\\n", " "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    names, expect = [], True
    for token in lexer:
        if token in ("|", "||", "&&", ";", "(", ")"):
            expect = True
        elif expect and not re.match(r"^\w+=", token):  # VAR=… assigns, the next word runs
            names.append(token)
            expect = False
    return names


def test_the_commands_use_only_the_tools_the_runbook_names() -> None:
    intro = next(line for line in RUNBOOK.read_text().split("\n- ") if "The tools used" in line)
    named = set(re.findall(r"`([^`]+)`", intro)) | {"export", "true"}
    used = {
        name: command.where
        for block in command_blocks()
        for command in block
        for name in program_names(command)
    }
    assert {"curl", "python3", ".venv/bin/sluice"} <= set(used)
    assert set(used) <= named, {n: w for n, w in used.items() if n not in named}


def test_every_code_block_is_of_a_checked_kind() -> None:
    found = runbook_fences()
    assert {f.lang for f in found} <= CHECKED_LANGUAGES, [
        (f.line, f.lang) for f in found if f.lang not in CHECKED_LANGUAGES
    ]
    assert all(runbook_fences(lang) for lang in CHECKED_LANGUAGES)


# -- configuration snippets ------------------------------------------------------------------


def test_the_toml_snippets_are_valid_settings(tmp_path: Path) -> None:
    for fence in runbook_fences("toml"):
        path = tmp_path / f"snippet-{fence.line}.toml"
        path.write_text(fence.text)
        try:
            load_settings(path)
        except ConfigError as exc:
            raise AssertionError(f"docs/runbook.md:{fence.line}: {exc}") from exc


def test_the_nginx_snippets_pass_nginx_t(tmp_path: Path) -> None:
    binary = servers.system_binary("nginx")
    for fence in runbook_fences("nginx"):
        prefix = tmp_path / f"nginx-{fence.line}"
        prefix.mkdir()
        site = f"server {{\n    listen {servers.HOST}:{free_port()};\n{fence.text}\n}}"
        config = prefix / "nginx.conf"
        config.write_text(servers.nginx_main(prefix, site))
        result = subprocess.run(
            [binary, "-t", "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, f"docs/runbook.md:{fence.line}: {result.stderr}"


# -- metrics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Family:
    """One metric as Prometheus exposes it."""

    name: str
    kind: str
    labels: tuple[str, ...]
    #: the histogram's bucket bounds
    bounds: tuple[float, ...] = ()

    @property
    def documented_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name

    @property
    def series(self) -> set[str]:
        if self.kind == "counter":
            return {f"{self.name}_total", f"{self.name}_created"}
        if self.kind == "histogram":
            suffixes = ("_bucket", "_sum", "_count", "_created")
            return {self.name + suffix for suffix in suffixes}
        return {self.name}


def gateway_families() -> dict[str, Family]:
    families = {}
    for metric in vars(GatewayMetrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        bounds = tuple(getattr(metric, "_upper_bounds", ()))
        family = Family(metric._name, metric._type, tuple(metric._labelnames), bounds)
        families[family.name] = family
    assert families, "GatewayMetrics has no metrics"
    return families


def test_the_metrics_table_lists_every_metric_with_its_labels() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(sluice_\w+)` \|([^|]*)\|", text, re.MULTILINE)
    documented = {name: tuple(re.findall(r"`(\w+)`", labels)) for name, labels in rows}
    expected = {f.documented_name: f.labels for f in gateway_families().values()}
    assert documented == expected


def test_the_promql_examples_use_only_what_the_gateway_exposes() -> None:
    families = gateway_families()
    by_series = {series: f for f in families.values() for series in f.series}
    queries = [
        (fence.line, line)
        for fence in runbook_fences("promql")
        for line in fence.text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(queries) >= 5
    for line_number, query in queries:
        where = f"docs/runbook.md (block at {line_number}): {query}"
        names = set(re.findall(r"\bsluice_\w+", query))
        assert names, where
        unknown = names - set(by_series)
        assert not unknown, f"{where}: no such series {unknown}"
        used = [by_series[name] for name in names]
        labels = {label for f in used for label in f.labels}
        if any(name.endswith("_bucket") for name in names):
            labels.add("le")
        grouped = {
            label.strip()
            for group in re.findall(r"\bby \(([^)]*)\)", query)
            for label in group.split(",")
        }
        matched = dict(re.findall(r"(\w+)=~?\"([^\"]*)\"", query))
        assert grouped | set(matched) <= labels, f"{where}: labels {grouped | set(matched)}"
        if "le" in matched:
            bounds = {b for f in used for b in f.bounds}
            assert float(matched["le"]) in bounds, f"{where}: no bucket le={matched['le']}"


# -- error types -------------------------------------------------------------------------------


def subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]


def test_the_error_tables_list_every_error_type() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    ending = {cls.type for cls in subclasses(errors.UpstreamError)}
    ending |= {errors.classify_status(s)[0] for s in (400, 401, 404, 408, 429, 500, 503, 529)}
    ending |= {truncated("").type, "upstream_protocol", "cancelled", "internal_error"}
    ending |= {GATEWAY_LOST, NODE_LOST}
    refused = {
        cls.type
        for cls in subclasses(errors.RequestError)
        if cls is not errors.ClientProtocolError  # a WebSocket refusal, not a request's
    } | {errors.ProviderNotConfigured.type, errors.Overloaded.type, BusError.type}
    listed = set(re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE))
    assert ending - listed == set(), "session error types missing from the runbook"
    assert refused - listed == set(), "refusal types missing from the runbook"
