"""Resume ids: the last event id a client says it holds, checked before anything is replayed.

An event's id is its sequence number in its session's log (1, 2, ...); a client resumes with
the last id it received (``Last-Event-ID``, or ``?after=``), 0 for none. An id that is not
a small non-negative integer is refused (``invalid_request``), and so is one past the
session's last event (``resume_beyond_log``): the client claims events it was never sent,
and any replay would either skip or repeat some, so none is made.
"""

from __future__ import annotations

from collections.abc import Mapping

from sluice.errors import BadRequest, ResumeBeyondLog

#: digits an id may have: ids count the events of one session, far fewer than this allows;
#: the bound keeps ``int()`` off a string thousands of digits long
MAX_DIGITS = 15


def resume_id(raw: str | None, name: str = "after") -> int:
    """``raw`` as an id (absent or empty: 0); ``BadRequest`` for anything else than up to
    ``MAX_DIGITS`` ASCII digits."""
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS):
        raise BadRequest(
            f"{name} must be a non-negative integer of at most {MAX_DIGITS} digits "
            "(the id of the last event received)"
        )
    return int(raw)


def requested_resume_id(headers: Mapping[str, str], query: Mapping[str, str]) -> int:
    """The id an SSE request resumes after: its ``Last-Event-ID`` header (what a browser's
    ``EventSource`` sends on reconnecting), else its ``after`` parameter, else 0."""
    header = headers.get("last-event-id")
    if header:
        return resume_id(header, "Last-Event-ID")
    return resume_id(query.get("after"), "after")


def check_within(after: int, last: object, session_id: str) -> None:
    """``ResumeBeyondLog`` if ``after`` is past ``last``, the id of the session's last event
    (its log's length; a stored record's ``events``). A record without a count, written
    before records had one, is not checked."""
    if isinstance(last, int) and after > last:
        raise ResumeBeyondLog(
            f"event id {after} is beyond the last event of session {session_id} ({last}); "
            "resume after an id this session sent"
        )
