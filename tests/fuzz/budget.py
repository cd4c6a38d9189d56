"""How many inputs each fuzz property runs, and a tally of how many it did run.

Each property names its share of the short campaign (``make test``); the environment variable
``SLUICE_FUZZ_EXAMPLES=N`` runs every property with ``N`` examples instead (the long
campaign). Every property counts the inputs it tried in ``RAN``; the session's summary prints
the tally (see ``conftest.py``).
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

#: inputs tried, by property name
RAN: Counter[str] = Counter()
#: what became of them, where a property says (``api: answered 2xx``…)
OUTCOMES: Counter[str] = Counter()

ENV = "SLUICE_FUZZ_EXAMPLES"


def examples(short: int) -> int:
    """``short`` in the short campaign, else the count ``SLUICE_FUZZ_EXAMPLES`` gives."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return short
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{ENV} must be a positive integer, not {raw!r}")
    return int(raw)


def fuzz(short: int) -> settings:
    """Hypothesis settings for one fuzz property: no deadline (a busy machine is not a bug)."""
    return settings(
        max_examples=examples(short),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def tally(name: str) -> None:
    RAN[name] += 1


def note(outcome: str) -> None:
    OUTCOMES[outcome] += 1
