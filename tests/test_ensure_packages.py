"""``scripts/ensure-packages.sh``: the system programs ``make test`` needs, or one clear line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure-packages.sh"


def run(bin_dir: Path, *pairs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT), *pairs],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_apt_a_missing_program_is_named_in_one_line(tmp_path: Path) -> None:
    # A PATH with the shell's helpers and no apt-get: a machine where apt is not usable.
    (tmp_path / "id").symlink_to(shutil.which("id") or "/usr/bin/id")
    done = run(tmp_path, "sluice-no-such-program=sluice-no-such-package")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "sluice-no-such-program not found" in line
    assert "apt-get is not available" in line
    assert "sluice-no-such-package" in line


def test_a_program_already_there_is_left_alone_and_its_path_printed(tmp_path: Path) -> None:
    (tmp_path / "id").symlink_to(shutil.which("id") or "/usr/bin/id")
    done = run(tmp_path, "id=coreutils")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "id")
