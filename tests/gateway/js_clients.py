"""The JavaScript clients of agent front ends, run for real in Node.js: tests/clients (AG-UI's
``@ag-ui/client``, the AI SDK's ``ai``), installed by scripts/ensure-clients.sh (``npm ci``
from the committed lock file). A machine without Node.js or npm fails these tests with the
way to fix it; they are never skipped."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests" / "clients"
ENSURE = ROOT / "scripts" / "ensure-clients.sh"


def install_clients() -> Path:
    """tests/clients with its node_modules installed (``npm ci`` once, when out of date)."""
    done = subprocess.run(["bash", str(ENSURE)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(
            "the JavaScript clients could not be installed (scripts/ensure-clients.sh): "
            f"{done.stderr.strip()[-2000:]}",
            pytrace=False,
        )
    return CLIENTS


async def run_client(script: str, url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run ``tests/clients/<script> URL OPTIONS`` and return the JSON it prints. The gateway
    under test serves from this event loop, so the script runs beside it, not blocking it."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENTS / script),
        url,
        orjson.dumps(options).decode(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CLIENTS,
    )
    try:
        async with asyncio.timeout(90):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, f"{script} exited {process.returncode}: {err.decode()[-3000:]}"
    seen: dict[str, Any] = orjson.loads(out)
    seen["stderr"] = err.decode()
    return seen
