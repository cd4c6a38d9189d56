"""The fuzz campaign's summary: how many inputs each property ran, printed after the tests."""

from __future__ import annotations

import os

import pytest

from tests.fuzz.budget import ENV, OUTCOMES, RAN


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RAN:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fuzzing: inputs run")
    width = max(map(len, [*RAN, *OUTCOMES]))
    for name, count in sorted(RAN.items()):
        write(f"{name:<{width}}  {count:>9,}")
    long = os.environ.get(ENV, "").strip()
    campaign = f"long campaign, {ENV}={long}" if long else "short campaign"
    write(f"{'total':<{width}}  {sum(RAN.values()):>9,}  ({campaign})")
    for outcome, count in sorted(OUTCOMES.items()):
        write(f"{outcome:<{width}}  {count:>9,}")
