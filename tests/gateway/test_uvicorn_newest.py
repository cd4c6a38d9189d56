"""The gateway's protocol (``server._Protocol``, a subclass of uvicorn's) against the newest
uvicorn release that ``pyproject.toml`` allows, not only the one ``constraints.txt`` pins: a
release within the range that changes what the subclass relies on fails here first.

The release is installed from the package index into a directory of its own (the download
is kept in pip's cache), and ``test_server_protocol.py`` runs in a child process with that
directory first on its path."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _declared_uvicorn() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [requirement] = [
        Requirement(line) for line in project["dependencies"] if Requirement(line).name == "uvicorn"
    ]
    return requirement


def test_the_protocol_tests_pass_on_the_newest_uvicorn_in_range(tmp_path: Path) -> None:
    declared = _declared_uvicorn()
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",  # its dependencies (h11, click, the [standard] extras) are the venv's
            "--target",
            str(target),
            f"uvicorn{declared.specifier}",
        ],
        check=True,
        timeout=300,
    )
    [dist] = target.glob("uvicorn-*.dist-info")
    newest = Version(dist.name.removeprefix("uvicorn-").removesuffix(".dist-info"))
    assert newest in declared.specifier

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT / "src")])}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pytest, uvicorn\n"
            "print('uvicorn', uvicorn.__version__, 'from', uvicorn.__file__, flush=True)\n"
            "sys.exit(pytest.main(sys.argv[1:]))",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/gateway/test_server_protocol.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    first = output.splitlines()[0]
    assert first == f"uvicorn {newest} from {target / 'uvicorn' / '__init__.py'}", output
    assert run.returncode == 0, output
    assert " passed" in output and "failed" not in output and "skipped" not in output, output
