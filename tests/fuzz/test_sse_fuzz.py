"""Fuzzing the SSE decoder: real streams damaged byte by byte, large inputs in the worst
chunkings, reconnections at any point, and the encoder with any text.

Extends the properties of ``tests/test_sse.py`` (arbitrary short byte strings checked against
a naive model of the spec) to the streams the gateway actually meets: the recorded provider
transcripts, with CRs, LFs, colons, BOMs, NULs and broken UTF-8 inserted, bytes deleted or
flipped. The decoder documents no exception: ``decode`` and ``flush`` must never raise.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.sse import ServerSentEvent, SSEDecoder, encode_comment, encode_event
from tests.fuzz.budget import fuzz, tally
from tests.test_sse import (
    assert_raw_accounts_for_the_input,
    feed,
    parsed,
    reference_parse,
    split_at,
    time_limit,
)
from tests.wire.wire_replay import transcript, transcripts

STREAMS = [transcript(path) for path in transcripts()]

#: bytes that mean something to an SSE parser or to UTF-8
TRICKY = [
    *(b"\r", b"\n", b"\r\n", b"\n\n", b"\r\r", b":", b": ", b"\0", b" "),
    *(b"\xef\xbb\xbf", b"\xef\xbb", b"\xc3", b"\xa9", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xff"),
    *(b"data:", b"event:", b"id:", b"retry:", b"retry: 9", b"id: \0", b"data"),
]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A recorded provider stream with up to eight byte-level edits."""
    stream = bytearray(draw(st.sampled_from(STREAMS)))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(stream)))
        match draw(st.sampled_from(["insert", "insert", "delete", "flip", "truncate"])):
            case "insert":
                stream[at:at] = draw(st.sampled_from(TRICKY) | st.binary(min_size=1, max_size=4))
            case "delete":
                del stream[at : at + draw(st.integers(1, 16))]
            case "flip":
                if at < len(stream):
                    stream[at] ^= 1 << draw(st.integers(0, 7))
            case "truncate":
                del stream[at:]
    return bytes(stream)


def cuts_in(data: st.DataObject, stream: bytes) -> list[bytes]:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=48), label="cuts")
    return split_at(stream, cuts)


@fuzz(200)
@given(data=st.data())
def test_damaged_provider_streams_decode_as_the_spec_says_at_any_chunking(
    data: st.DataObject,
) -> None:
    tally("sse: damaged provider streams")
    stream = data.draw(damaged(), label="stream")
    expected = reference_parse(stream)
    with time_limit(30):
        events, last_id, retry = feed(cuts_in(data, stream))
    assert (parsed(events), last_id, retry) == expected


@fuzz(100)
@given(data=st.data())
def test_damaged_provider_streams_keep_raw_accounts_for_every_byte(data: st.DataObject) -> None:
    tally("sse: keep_raw on damaged streams")
    stream = data.draw(damaged(), label="stream")
    with time_limit(30):
        assert_raw_accounts_for_the_input(stream, cuts_in(data, stream))


@fuzz(100)
@given(data=st.data())
def test_a_reconnection_at_any_point_starts_a_clean_stream(data: st.DataObject) -> None:
    """``flush()`` anywhere (the connection dropped), then a new stream: the decoder gives what
    a fresh one would, with only the last event id and the retry carried over."""
    tally("sse: reconnection at any point")
    first = data.draw(damaged(), label="first")
    second = data.draw(damaged(), label="second")
    decoder = SSEDecoder(keep_raw=data.draw(st.booleans(), label="keep_raw"))
    for chunk in cuts_in(data, first):
        decoder.decode(chunk)
    assert decoder.flush() == []
    carried = (decoder.last_event_id, decoder.retry)
    events: list[ServerSentEvent] = []
    for chunk in cuts_in(data, second):
        events += decoder.decode(chunk)
    # What a fresh decoder gives for the second stream when told the carried state first.
    told = b"id: " + carried[0].encode()
    if carried[1] is not None:
        told += b"\nretry: %d" % carried[1]
    told += b"\n\n"  # a blank line: the carried retry belongs to no event
    bom = 3 if second.startswith(b"\xef\xbb\xbf") else 0
    expected, _, expected_retry = reference_parse(second[:bom] + told + second[bom:])
    assert parsed(events) == expected
    assert decoder.retry == expected_retry


# -- no hang: decoding is linear in the input ------------------------------------------------------
#
# Each input below is 1-4 MiB fed in 16-1024 byte chunks: tens of thousands of ``decode`` calls.
# Linear work finishes in about a second; work quadratic in a pending line or event would copy
# terabytes and never finish, so the bound (``time_limit``) separates the two on any machine
# without measuring time.

LINE = 4 * 1024 * 1024


def _long_line(size: int) -> tuple[bytes, int]:
    return b"data: " + b"x" * size + b"\n\n", 1


def _many_data_lines(size: int) -> tuple[bytes, int]:
    return b"data: ab\n" * (size // 9) + b"\n", 1


def _many_events(size: int) -> tuple[bytes, int]:
    return b"data: a\n\n" * (size // 9), size // 9


def _cr_line_ends(size: int) -> tuple[bytes, int]:
    return b"data: a\r\r" * (size // 9), size // 9


def _long_comment_then_event(size: int) -> tuple[bytes, int]:
    return b":" + b"c" * size + b"\r\ndata: a\r\n\r\n", 1


def _long_unterminated_event(size: int) -> tuple[bytes, int]:
    return b"event: " + b"e" * (size // 2) + b"\ndata: " + b"d" * (size // 2), 0


SHAPES = {
    "one long line": _long_line,
    "many data lines in one event": _many_data_lines,
    "many small events": _many_events,
    "CR line ends": _cr_line_ends,
    "a long comment": _long_comment_then_event,
    "an event that never ends": _long_unterminated_event,
}


@pytest.mark.parametrize("shape", list(SHAPES))
@fuzz(3)
@given(data=st.data())
def test_large_inputs_in_small_chunks_decode_in_linear_work(
    shape: str, data: st.DataObject
) -> None:
    tally("sse: large inputs, small chunks")
    size = data.draw(st.integers(LINE // 4, LINE), label="size")
    stream, dispatched = SHAPES[shape](size)
    step = data.draw(st.sampled_from([16, 61, 256, 1024]), label="chunk size")
    keep_raw = data.draw(st.booleans(), label="keep_raw")
    decoder = SSEDecoder(keep_raw=keep_raw)
    count = 0
    with time_limit(60):
        for start in range(0, len(stream), step):
            count += len(decoder.decode(stream[start : start + step]))
        decoder.flush()
    assert count == dispatched


# -- the encoder ---------------------------------------------------------------------------------


@fuzz(300)
@given(
    data=st.text() | st.binary().map(lambda b: b.decode("utf-8", "replace")),
    event=st.none() | st.text(max_size=12),
    id_=st.none() | st.text(max_size=12),
    retry=st.none() | st.integers(min_value=-(10**6), max_value=10**15),
    comment=st.text(max_size=12),
)
def test_encoded_frames_decode_back_or_the_encoder_says_why(
    data: str, event: str | None, id_: str | None, retry: int | None, comment: str
) -> None:
    """``encode_event`` raises only its documented ``ValueError``; what it writes decodes back."""
    tally("sse: encoder round trip")
    try:
        frame = encode_event(data, event=event, id=id_, retry=retry)
    except ValueError:
        assert (
            (event is not None and ("\r" in event or "\n" in event))
            or (id_ is not None and any(c in id_ for c in "\r\n\0"))
            or (retry is not None and retry < 0)
        )
        return
    events, last_id, last_retry = feed([encode_comment(comment) + frame])
    want_data = data.replace("\r\n", "\n").replace("\r", "\n")
    assert parsed(events) == [(event or "message", want_data, id_ or "", retry)]
    assert (last_id, last_retry) == (id_ or "", retry)
