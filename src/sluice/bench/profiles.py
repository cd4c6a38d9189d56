"""The stream shapes the mock upstream sends, chosen by the model name of the request.

The model is the one knob that reaches the mock unchanged through every target (a gateway
rewrites headers and paths, but forwards the model), so it carries the profile: the part after
the last ``/`` of ``"mock/paced"`` is ``paced``.

- ``paced``: a role chunk, 64 text deltas of 16 bytes one every 20 ms, usage, terminator;
- ``fast``: the same stream with no delay between deltas;
- ``hold``: a role chunk, then nothing until the client leaves (idle open streams);
- ``flood``: a million deltas as fast as the reader takes them (the slow reader);
- ``<deltas>x<pace_ms>``, e.g. ``64x20`` or ``8x2``: any other count and pace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The pace of the standard stream, and the number of text deltas in it.
PACE = 0.020
DELTAS = 64
#: Deltas in a ``flood`` stream: bounded, so a reader that never stops still ends.
FLOOD_DELTAS = 1_000_000

_CUSTOM = re.compile(r"(\d{1,7})x(\d{1,6}(?:\.\d{1,3})?)")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    deltas: int
    #: seconds between two deltas; 0 sends each as soon as the transport takes it
    pace: float
    #: after the role chunk, send nothing more and keep the stream open
    hold: bool = False

    @property
    def duration(self) -> float:
        """The nominal time from the first delta to the terminator."""
        return self.deltas * self.pace


PROFILES = {
    "paced": Profile("paced", DELTAS, PACE),
    "fast": Profile("fast", DELTAS, 0.0),
    "hold": Profile("hold", 0, 0.0, hold=True),
    "flood": Profile("flood", FLOOD_DELTAS, 0.0),
}


class UnknownProfile(ValueError):
    """The model names no profile the mock knows."""


def profile_for(model: str) -> Profile:
    """The profile named by ``model`` (``"mock/paced"``, ``"paced"``, ``"64x20"``)."""
    name = model.rpartition("/")[2]
    profile = PROFILES.get(name)
    if profile is not None:
        return profile
    match = _CUSTOM.fullmatch(name)
    if match is None:
        known = ", ".join(PROFILES)
        raise UnknownProfile(f"model {model!r} names no profile ({known}, or NxMS like 64x20)")
    deltas, pace_ms = int(match[1]), float(match[2])
    if deltas < 1:
        raise UnknownProfile(f"model {model!r}: a stream needs at least one delta")
    return Profile(name, deltas, pace_ms / 1000)
