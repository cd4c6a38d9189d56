"""Tests for sluice.sse: WHATWG conformance vectors, every parsing rule, the encoder, and
property-based tests that split the byte stream at the worst places."""

from __future__ import annotations

import re
import signal
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import accumulate, pairwise
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import UpstreamNotEventStream
from sluice.sse import FrameTooLarge, ServerSentEvent, SSEDecoder, encode_comment, encode_event
from sluice.transports.status import refusal

Parsed = tuple[str, str, str, int | None]  # (event, data, id, retry) of one dispatched event


# --- helpers -------------------------------------------------------------------------------


def split_at(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``stream`` cut at the given offsets (in any order; duplicates give empty chunks)."""
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds)]


def feed(
    chunks: Sequence[bytes], keep_raw: bool = False
) -> tuple[list[ServerSentEvent], str, int | None]:
    """Decode ``chunks`` as one stream, flush, and return events and the decoder's state."""
    decoder = SSEDecoder(keep_raw=keep_raw)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.decode(chunk))
    events.extend(decoder.flush())
    return events, decoder.last_event_id, decoder.retry


def parsed(events: Sequence[ServerSentEvent]) -> list[Parsed]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def decode_whole(stream: bytes) -> tuple[list[Parsed], str, int | None]:
    events, last_id, retry = feed([stream])
    return parsed(events), last_id, retry


def datas(stream: bytes) -> list[str]:
    return [e.data for e in feed([stream])[0]]


def reference_parse(stream: bytes) -> tuple[list[Parsed], str, int | None]:
    """A deliberately naive model of the spec: decode everything, split lines, apply rules.

    Works on the whole stream at once, so it knows nothing about chunks; the decoder must
    agree with it for every chunking.
    """
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split("\r\n|\r|\n", text)
    lines.pop()  # the unterminated remainder is never processed
    events: list[Parsed] = []
    event_type, data, last_id, id_buffer, retry = "", "", "", "", None
    block_retry: int | None = None
    for line in lines:
        if line == "":
            last_id = id_buffer  # an id takes effect when its event is dispatched
            if data:
                events.append((event_type or "message", data[:-1], last_id, block_retry))
            event_type, data, block_retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
        elif name == "retry" and value and len(value) <= 4300 and value.strip("0123456789") == "":
            retry = block_retry = int(value)
    return events, last_id, retry


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (SIGALRM; the suite runs on Linux in the main thread)."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"decoder did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- conformance vectors (web-platform-tests eventsource/format-*) ---------------------------
#
# Every format vector of the web-platform-tests EventSource suite, transcribed as data in
# tests/fixtures/sse/wpt-eventsource-format.toml (its header names the source and licence):
# each response body as the test's server sends it, and every event a browser dispatches for
# it, with its type and lastEventId. A response after the first is a reconnection: the decoder
# is flushed (the connection ended) and carries on, as the relay's decoder does.

WPT = tomllib.loads(
    (Path(__file__).parent / "fixtures" / "sse" / "wpt-eventsource-format.toml").read_text("utf-8")
)
WPT_VECTORS = {vector["name"]: vector for vector in WPT["vector"]}
Chunker = Callable[[bytes], list[bytes]]


def whole(stream: bytes) -> list[bytes]:
    return [stream]


def byte_by_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def split_cut(stream: bytes, cut: int) -> list[bytes]:
    return split_at(stream, [cut])


def run_vector(vector: dict[str, Any], chunker: Chunker) -> dict[str, Any]:
    """What one decoder makes of a vector's responses, each cut into chunks by ``chunker``."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    reconnect_ids: list[str] = []
    for number, response in enumerate(vector["responses"]):
        if number:
            events += decoder.flush()  # the connection ended: the client reconnects
            reconnect_ids.append(decoder.last_event_id)  # its Last-Event-ID
        for chunk in chunker(response.encode()):
            events += decoder.decode(chunk)
    events += decoder.flush()
    return {
        "events": [{"data": e.data, "type": e.event, "id": e.id} for e in events],
        "reconnect_ids": reconnect_ids if len(vector["responses"]) > 1 else None,
        "retry": decoder.retry,
        "last_event_id": decoder.last_event_id,
    }


def expected(vector: dict[str, Any]) -> dict[str, Any]:
    events = vector["events"]
    return {
        "events": events,
        "reconnect_ids": vector.get("reconnect_ids"),
        "retry": vector.get("retry"),
        # none of the vectors ends with an id that no event carried
        "last_event_id": events[-1]["id"],
    }


def test_every_format_vector_of_the_suite_is_here() -> None:
    files = {vector["source"] for vector in [*WPT["vector"], *WPT["mime"]]}
    assert len(files) == 23 and len(WPT["vector"]) == 26 and len(WPT["mime"]) == 3
    assert all(name.startswith("eventsource/format-") for name in files)


@pytest.mark.parametrize("name", list(WPT_VECTORS))
@pytest.mark.parametrize("chunker", [whole, byte_by_byte], ids=["whole", "byte-by-byte"])
def test_format_vector(name: str, chunker: Chunker) -> None:
    vector = WPT_VECTORS[name]
    assert run_vector(vector, chunker) == expected(vector)


@pytest.mark.parametrize("name", list(WPT_VECTORS))
def test_format_vector_split_at_every_boundary(name: str) -> None:
    vector = WPT_VECTORS[name]
    for cut in range(max(len(r.encode()) for r in vector["responses"]) + 1):
        assert run_vector(vector, partial(split_cut, cut=cut)) == expected(vector), cut


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_property_format_vectors_at_random_boundaries(data: st.DataObject) -> None:
    vector = WPT_VECTORS[data.draw(st.sampled_from(sorted(WPT_VECTORS)))]
    assert run_vector(vector, lambda s: split_at(s, data.draw(cuts_in(s)))) == expected(vector)


@pytest.mark.parametrize("mime", WPT["mime"], ids=[m["name"] for m in WPT["mime"]])
def test_format_mime_vector_decides_whether_the_upstream_is_a_stream(mime: dict[str, Any]) -> None:
    refused = refusal(200, {"content-type": mime["content_type"]})
    assert (refused is None) == mime["accepted"]
    if refused is not None:
        assert isinstance(refused, UpstreamNotEventStream)


def test_the_utf8_vector_is_accepted_whatever_its_charset_parameter() -> None:
    assert refusal(200, {"content-type": WPT_VECTORS["format-utf-8"]["content_type"]}) is None


#: each response of each vector, as one stream (for the tests below that need one stream)
VECTORS = {
    f"{vector['name']} #{number}": response.encode()
    for vector in WPT["vector"]
    for number, response in enumerate(vector["responses"])
}


@pytest.mark.parametrize("name", list(VECTORS))
def test_vector_stream_agrees_with_the_reference_model(name: str) -> None:
    assert decode_whole(VECTORS[name]) == reference_parse(VECTORS[name])


# --- the common one-event chunk, decoded with nothing pending ---------------------------------

WARM_UP = b"id: 1\ndata: warm-up\n\n"


@pytest.mark.parametrize(
    "chunk",
    [
        b'data: {"a": 1}\n\n',
        b"data:x\n\n",
        b"data:\n\n",
        b"data: \n\n",
        b"data:  two spaces\n\n",
        b"data\n\n",
        b"event: delta\ndata: x\n\n",
        b"event:delta\ndata:x\n\n",
        b"event:\ndata: x\n\n",
        b"event: \ndata:\n\n",
        b"event: e\xc3\xa9\ndata: \xff\n\n",
        b"event: x\nid: 2\n\n",
        b"event: x\n\n",
        b"event: x\ndata: a\ndata: b\n\n",
        b"Event: x\ndata: a\n\n",
        b"eventx: x\ndata: a\n\n",
        b"event: x\ndatum: a\n\n",
        b"data: a\n\ndata: b\n\n",
        b"data: a\r\n\n",
        b": ping\n\n",
        b"\n\n",
    ],
)
def test_single_event_chunks_after_the_first_follow_the_spec(chunk: bytes) -> None:
    decoder = SSEDecoder(keep_raw=True)
    decoder.decode(WARM_UP)  # past the BOM check, with nothing pending
    events = decoder.decode(chunk)
    assert parsed(events) == reference_parse(WARM_UP + chunk)[0][1:]
    assert b"".join(e.raw for e in events) == (chunk if events else b"")


@pytest.mark.parametrize("keep_raw", [False, True])
@pytest.mark.parametrize("name", list(VECTORS))
def test_frames_gives_what_decode_gives_as_tuples(name: str, keep_raw: bool) -> None:
    # The relay's view, chunk by chunk: the usual one-event chunk after the first (its own
    # path) and every vector split at every boundary (the general one).
    usual = [WARM_UP, b'data: {"a": 1}\n\n', b"event: e\ndata: x\n\n"]
    bounds = list(accumulate(map(len, usual)))
    stream = b"".join(usual) + VECTORS[name]
    for cut in range(bounds[-1] + 1, len(stream) + 1):
        by_decode, by_frames = SSEDecoder(keep_raw), SSEDecoder(keep_raw)
        for chunk in split_at(stream, [*bounds, cut]):
            events = by_decode.decode(chunk)
            assert by_frames.frames(chunk) == [(e.event, e.data, e.raw) for e in events], cut


# --- UTF-8 -----------------------------------------------------------------------------------


def test_multibyte_characters_split_across_chunks_decode_intact() -> None:
    stream = "data: é€😀\n\n".encode()
    for cut in range(len(stream) + 1):
        assert [e.data for e in feed(split_at(stream, [cut]))[0]] == ["é€😀"], cut


def test_multibyte_characters_fed_byte_by_byte_decode_intact() -> None:
    stream = "event: ü\ndata: é€😀\nid: 😀\n\n".encode()
    events, last_id, _ = feed([bytes([b]) for b in stream])
    assert parsed(events) == [("ü", "é€😀", "😀", None)]
    assert last_id == "😀"


def test_invalid_utf8_decodes_to_replacement_characters() -> None:
    assert datas(b"data: a\xffb\xc3\n\n") == ["a\ufffdb\ufffd"]


def test_invalid_utf8_uses_one_replacement_per_maximal_subpart() -> None:
    # Encoding Standard: a truncated sequence is one U+FFFD; a surrogate encoding is three.
    assert datas(b"data:\xf0\x9f\x98x\xed\xa0\x80\n\n") == ["\ufffdx\ufffd\ufffd\ufffd"]


def test_truncated_sequence_before_a_line_end_does_not_swallow_it() -> None:
    assert datas(b"data: \xe2\x82\ndata: b\n\n") == ["\ufffd\nb"]


def test_invalid_bytes_in_a_field_name_make_an_unknown_field() -> None:
    assert datas(b"dat\xe1:x\n\ndata: ok\n\n") == ["ok"]


# --- BOM ---------------------------------------------------------------------------------------


def test_leading_bom_is_dropped() -> None:
    assert datas(b"\xef\xbb\xbfdata: a\n\n") == ["a"]


@pytest.mark.parametrize("cuts", [[1], [2], [1, 2], [3], [1, 2, 3]])
def test_leading_bom_split_across_chunks_is_dropped(cuts: list[int]) -> None:
    stream = b"\xef\xbb\xbfdata: a\n\n"
    assert [e.data for e in feed(split_at(stream, cuts))[0]] == ["a"]


def test_second_bom_is_data_not_dropped() -> None:
    # A stream that starts with two BOMs: the second makes the field name "\ufeffdata".
    assert datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == ["b"]


def test_bom_at_the_start_of_a_later_chunk_is_not_dropped() -> None:
    events, _, _ = feed([b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\n", b"data: c\n\n"])
    assert [e.data for e in events] == ["a", "c"]


def test_partial_bom_followed_by_other_bytes_is_not_dropped() -> None:
    events, _, _ = feed([b"\xef\xbb", b"data: a\n\n"])
    assert events == []  # the field name is "\ufffddata"


def test_short_first_chunk_that_is_not_a_bom_is_kept() -> None:
    events, _, _ = feed([b"d", b"a", b"ta: a\n\n"])
    assert [e.data for e in events] == ["a"]


# --- line ends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_every_line_end_style_is_accepted(eol: bytes) -> None:
    stream = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol
    assert parsed(feed([stream])[0]) == [("e", "a\nb", "", None)]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # Were the LF counted again it would be a blank line, dispatching "a" on its own.
    events, _, _ = feed([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert [e.data for e in events] == ["a\nb"]


def test_cr_at_the_end_of_a_chunk_dispatches_without_waiting() -> None:
    decoder = SSEDecoder()
    assert [e.data for e in decoder.decode(b"data: a\r\r")] == ["a"]
    assert decoder.decode(b"\n") == []  # the second half of that CRLF, not a new line


def test_cr_ending_a_line_split_across_chunks_dispatches_without_waiting() -> None:
    decoder = SSEDecoder()
    decoder.decode(b"\r")
    assert decoder.decode(b"data: a") == []
    assert decoder.decode(b"b\r") == []
    assert [e.data for e in decoder.decode(b"\r")] == ["ab"]


def test_lf_after_a_cr_in_a_later_chunk_only_completes_one_pair() -> None:
    events, _, _ = feed([b"data: a\r", b"\n\ndata: b\n\n"])
    assert [e.data for e in events] == ["a", "b"]


def test_lf_cr_is_two_line_ends() -> None:
    assert datas(b"data: a\n\r") == ["a"]


# --- comments and field parsing ----------------------------------------------------------------


def test_comment_lines_are_ignored() -> None:
    assert datas(b": ping\n\n:\ndata: a\n: in between\ndata: b\n\n") == ["a\nb"]


def test_comment_only_stream_dispatches_nothing() -> None:
    assert datas(b": ping\n\n: ping\n\n") == []


def test_field_name_ends_at_the_first_colon() -> None:
    assert datas(b"data:a:b: c\n\n") == ["a:b: c"]


def test_only_one_leading_space_is_removed_from_the_value() -> None:
    assert datas(b"data:  a \n\n") == [" a "]


def test_value_without_space_after_colon_is_kept_whole() -> None:
    assert datas(b"data:a\n\n") == ["a"]


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    assert datas(b"data\n\n") == [""]
    assert parsed(feed([b"event\ndata: a\n\n"])[0]) == [("message", "a", "", None)]


def test_field_names_are_case_sensitive() -> None:
    assert datas(b"Data: a\nDATA: b\n\n") == []
    assert parsed(feed([b"Event: x\ndata: a\n\n"])[0]) == [("message", "a", "", None)]


def test_unknown_fields_are_ignored() -> None:
    assert datas(b"foo: bar\ndata: a\njustsometext\n\n") == ["a"]


def test_space_before_colon_is_part_of_the_name() -> None:
    assert datas(b"data : a\n\n") == []


# --- event, data, dispatch -----------------------------------------------------------------------


def test_event_type_defaults_to_message() -> None:
    assert feed([b"data: a\n\n"])[0][0].event == "message"


def test_event_field_sets_the_type() -> None:
    assert feed([b"event: delta\ndata: a\n\n"])[0][0].event == "delta"


def test_empty_event_field_means_message() -> None:
    assert feed([b"event:\ndata: a\n\n"])[0][0].event == "message"


def test_event_type_is_reset_after_dispatch() -> None:
    events, _, _ = feed([b"event: x\ndata: a\n\ndata: b\n\n"])
    assert [e.event for e in events] == ["x", "message"]


def test_event_type_is_reset_by_a_blank_line_without_data() -> None:
    events, _, _ = feed([b"event: x\n\ndata: a\n\n"])
    assert [e.event for e in events] == ["message"]


def test_last_event_field_wins() -> None:
    assert feed([b"event: x\nevent: y\ndata: a\n\n"])[0][0].event == "y"


def test_data_lines_are_joined_with_lf() -> None:
    assert datas(b"data: a\ndata: b\ndata: c\n\n") == ["a\nb\nc"]


def test_only_one_trailing_lf_is_removed() -> None:
    assert datas(b"data: a\ndata:\n\n") == ["a\n"]
    assert datas(b"data\ndata\n\n") == ["\n"]


def test_empty_data_field_still_dispatches() -> None:
    assert datas(b"data:\n\n") == [""]


def test_event_without_data_is_not_dispatched() -> None:
    events, last_id, retry = feed([b"event: x\nid: 7\nretry: 5\n\n"])
    assert events == []
    assert (last_id, retry) == ("7", 5)


def test_several_events_in_one_chunk() -> None:
    assert datas(b"data: a\n\ndata: b\n\nevent: e\ndata: c\n\n") == ["a", "b", "c"]


def test_extra_blank_lines_dispatch_nothing() -> None:
    assert datas(b"\n\n\ndata: a\n\n\n\n") == ["a"]


def test_event_and_data_in_separate_chunks() -> None:
    events, _, _ = feed([b"event: x\n", b"data: a\n\n"])
    assert parsed(events) == [("x", "a", "", None)]


def test_event_line_split_across_many_chunks() -> None:
    line = b"data: " + b"y" * 10_000
    chunks = [line[i : i + 7] for i in range(0, len(line), 7)] + [b"\n\n"]
    assert [e.data for e in feed(chunks)[0]] == ["y" * 10_000]


# --- id -------------------------------------------------------------------------------------------


def test_id_sets_the_last_event_id() -> None:
    events, last_id, _ = feed([b"id: 42\ndata: a\n\n"])
    assert events[0].id == "42"
    assert last_id == "42"


def test_last_event_id_survives_across_events() -> None:
    events, _, _ = feed([b"id: 1\ndata: a\n\ndata: b\n\n"])
    assert [e.id for e in events] == ["1", "1"]


def test_empty_id_resets_the_last_event_id() -> None:
    events, last_id, _ = feed([b"id: 1\ndata: a\n\nid\ndata: b\n\n"])
    assert [e.id for e in events] == ["1", ""]
    assert last_id == ""


def test_id_after_data_in_the_same_block_applies_to_that_event() -> None:
    assert feed([b"data: a\nid: 7\n\n"])[0][0].id == "7"


def test_id_is_set_even_when_no_event_is_dispatched() -> None:
    events, last_id, _ = feed([b"id: 3\n\ndata: a\n\n"])
    assert events[0].id == "3"
    assert last_id == "3"


def test_an_id_takes_effect_at_the_blank_line_that_ends_its_event() -> None:
    decoder = SSEDecoder()
    decoder.decode(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert decoder.last_event_id == "1"  # spec: the "last event ID buffer" until dispatch
    assert [e.id for e in decoder.decode(b"\n")] == ["2"]
    assert decoder.last_event_id == "2"


def test_an_id_in_an_event_never_dispatched_is_dropped_at_the_end() -> None:
    decoder = SSEDecoder()
    decoder.decode(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert decoder.flush() == []
    assert decoder.last_event_id == "1"  # what a reconnection sends as Last-Event-ID
    assert [e.id for e in decoder.decode(b"data: c\n\n")] == ["1"]


def test_id_with_nul_keeps_the_previous_id() -> None:
    _, last_id, _ = feed([b"id: 1\n\nid: 2\x00x\n\n"])
    assert last_id == "1"


# --- retry ----------------------------------------------------------------------------------------


def test_retry_sets_the_reconnection_time() -> None:
    events, _, retry = feed([b"retry: 1500\ndata: a\n\n"])
    assert retry == 1500
    assert events[0].retry == 1500


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b" ",
        b"1000 ",
        b"-5",
        b"+5",
        b"1e3",
        b"1.5",
        b"12a",
        "\u0661\u0662".encode(),
        "\uff11\uff12".encode(),
    ],
)
def test_retry_that_is_not_only_ascii_digits_is_ignored(value: bytes) -> None:
    _, _, retry = feed([b"retry: 100\n\nretry:" + value + b"\n\n"])
    assert retry == 100


def test_retry_with_too_many_digits_is_ignored_without_raising() -> None:
    _, _, retry = feed([b"retry: 7\n\nretry: " + b"9" * 5000 + b"\n\n"])
    assert retry == 7


def test_event_retry_is_only_the_value_given_in_its_own_block() -> None:
    events, _, retry = feed([b"retry: 10\ndata: a\n\ndata: b\n\n"])
    assert [e.retry for e in events] == [10, None]
    assert retry == 10


def test_retry_zero_in_a_block_reaches_the_next_event() -> None:
    events, _, _ = feed([b"retry: 0\n", b"data: a\n\n"])
    assert [e.retry for e in events] == [0]


# --- end of stream ---------------------------------------------------------------------------


def test_incomplete_event_at_end_of_stream_is_discarded() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: a\n\ndata: b\n") != []
    assert decoder.flush() == []


def test_unterminated_last_line_is_never_processed() -> None:
    _, last_id, _ = feed([b"data: a\n\nid: 9\n\nid: 10"])
    assert last_id == "9"
    _, _, retry = feed([b"retry: 5\n\nretry: 6"])
    assert retry == 5


def test_flush_makes_the_decoder_ready_for_a_new_stream() -> None:
    decoder = SSEDecoder()
    decoder.decode(b"id: 4\nretry: 20\ndata: a\n\nevent: x\ndata: partial")
    assert decoder.flush() == []
    events = decoder.decode(b"\xef\xbb\xbfdata: b\n\n")
    assert parsed(events) == [("message", "b", "4", None)]
    assert (decoder.last_event_id, decoder.retry) == ("4", 20)


def test_flush_twice_is_harmless() -> None:
    decoder = SSEDecoder()
    decoder.decode(b"data: a")
    assert decoder.flush() == decoder.flush() == []


def test_empty_chunks_are_harmless() -> None:
    events, _, _ = feed([b"", b"data: a\n", b"", b"\n", b""])
    assert [e.data for e in events] == ["a"]


# --- keep_raw ---------------------------------------------------------------------------------


def test_raw_is_empty_without_keep_raw() -> None:
    assert [e.raw for e in feed([b": c\n\ndata: a\n\n"])[0]] == [b""]


def test_raw_of_a_one_event_chunk_is_that_chunk_itself() -> None:
    decoder = SSEDecoder(keep_raw=True)
    decoder.decode(b"data: warm-up\n\n")
    chunk = b'data: {"a": 1}\n\n'
    (event,) = decoder.decode(chunk)
    assert event.raw is chunk


def test_raw_includes_comments_before_the_event() -> None:
    events, _, _ = feed([b": ping\n\n", b"event: x\ndata: a\n\n"], keep_raw=True)
    assert [e.raw for e in events] == [b": ping\n\nevent: x\ndata: a\n\n"]


def test_raw_of_several_events_in_one_chunk_are_their_frames() -> None:
    stream = b"\xef\xbb\xbfdata: a\r\n\r\n: c\rid: 1\rdata: b\r\rdata: tail"
    events, _, _ = feed([stream], keep_raw=True)
    assert [e.raw for e in events] == [
        b"\xef\xbb\xbfdata: a\r\n\r\n",
        b": c\rid: 1\rdata: b\r\r",
    ]


def test_raw_of_an_event_spread_over_chunks_is_joined() -> None:
    events, _, _ = feed([b"data: a", b"bc\n", b"\ndata: d\n\n"], keep_raw=True)
    assert [e.raw for e in events] == [b"data: abc\n\n", b"data: d\n\n"]


def test_raw_crlf_split_across_chunks_leaves_the_lf_to_the_next_event() -> None:
    # The event is dispatched at the CR (the spec ends the line there); the LF comes later.
    events, _, _ = feed([b"data: a\r\n\r", b"\ndata: b\r\n\r\n"], keep_raw=True)
    assert [e.raw for e in events] == [b"data: a\r\n\r", b"\ndata: b\r\n\r\n"]


# --- encoder ----------------------------------------------------------------------------------


def test_encode_event_with_data_only() -> None:
    assert encode_event('{"a":1}') == b'data: {"a":1}\n\n'


def test_encode_event_accepts_bytes_data() -> None:
    assert encode_event(b'{"a":1}', event="x") == b'event: x\ndata: {"a":1}\n\n'


def test_encode_event_with_all_fields() -> None:
    assert encode_event("a", event="delta", id="7", retry=3000) == (
        b"event: delta\nid: 7\nretry: 3000\ndata: a\n\n"
    )


def test_encode_event_splits_data_at_crlf_cr_and_lf() -> None:
    assert encode_event("a\r\nb\rc\nd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_encode_event_keeps_empty_lines_of_data() -> None:
    assert encode_event("") == b"data: \n\n"
    assert encode_event("a\n") == b"data: a\ndata: \n\n"


def test_encode_event_writes_an_empty_id_and_skips_an_empty_event() -> None:
    assert encode_event("a", event="", id="") == b"id: \ndata: a\n\n"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\n"])
def test_encode_event_rejects_line_breaks_in_event(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_event("x", event=bad)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_encode_event_rejects_line_breaks_or_nul_in_id(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_event("x", id=bad)


def test_encode_event_rejects_negative_retry() -> None:
    with pytest.raises(ValueError):
        encode_event("x", retry=-1)


def test_encode_comment() -> None:
    assert encode_comment("ping") == b": ping\n\n"
    assert encode_comment() == b": \n\n"
    assert encode_comment("a\r\nb\rc") == b": a\n: b\n: c\n\n"


def test_encoded_comment_is_ignored_by_the_decoder() -> None:
    assert datas(encode_comment("a\nb") + encode_event("x")) == ["x"]


def test_encode_event_round_trips_through_the_decoder() -> None:
    stream = encode_event("a\r\nb", event="e", id="1", retry=5) + encode_event(" lead", id="")
    assert parsed(feed([stream])[0]) == [("e", "a\nb", "1", 5), ("message", " lead", "", None)]


# --- property-based ---------------------------------------------------------------------------

FAST = settings(max_examples=100, deadline=None)
_text = st.text(
    alphabet=st.one_of(st.sampled_from("aZ :é€😀\0\r\n\ufeff"), st.characters(codec="utf-8")),
    max_size=12,
)
_single_line = _text.map(lambda s: re.sub("[\r\n]", "", s))


@st.composite
def frames(draw: st.DrawFn) -> tuple[bytes, Parsed]:
    """One encoded event (maybe preceded by a comment) and what decoding it must give."""
    data = draw(_text)
    event = draw(st.none() | _single_line)
    event_id = draw(st.none() | _single_line.map(lambda s: s.replace("\0", "")))
    retry = draw(st.none() | st.integers(min_value=0, max_value=10**12))
    comment = draw(st.none() | _text)
    frame = encode_event(data, event=event, id=event_id, retry=retry)
    if comment is not None:
        frame = encode_comment(comment) + frame
    expected_data = data.replace("\r\n", "\n").replace("\r", "\n")
    return frame, (event or "message", expected_data, event_id or "", retry)


@st.composite
def encoded_streams(draw: st.DrawFn) -> tuple[bytes, list[Parsed]]:
    stream, expected, last_id = b"", [], ""
    for frame, (event, data, event_id, retry) in draw(st.lists(frames(), max_size=5)):
        stream += frame
        last_id = event_id if "id: " in frame.decode() else last_id
        expected.append((event, data, last_id, retry))
    return stream, expected


_LINE_ENDS = st.sampled_from([b"\n", b"\r", b"\r\n"])
_NAMES = st.sampled_from(["data", "event", "id", "retry", "Data", "", "x", "\ufeffdata"])
_VALUES = st.one_of(
    st.text(alphabet=st.sampled_from("ab :é€😀\0"), max_size=6),
    st.sampled_from(["0", "3000", "12x", " 7"]),
)


@st.composite
def line_streams(draw: st.DrawFn) -> bytes:
    """Field, comment and blank lines with mixed CR/LF/CRLF ends and multi-byte UTF-8."""
    parts = [draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))]
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["field", "field", "bare", "comment", "blank"]))
        if kind == "field":
            sep = draw(st.sampled_from([":", ": ", ":  "]))
            line = draw(_NAMES) + sep + draw(_VALUES)
        elif kind == "bare":
            line = draw(_NAMES)
        elif kind == "comment":
            line = ":" + draw(_VALUES)
        else:
            line = ""
        parts.append(line.encode() + draw(_LINE_ENDS))
    parts.append(draw(st.sampled_from([b"", b"data: unterminated", b"\xc3"])))
    return b"".join(parts)


def cuts_in(stream: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=8)


@FAST
@given(encoded_streams())
def test_property_encoded_events_decode_back_at_every_single_boundary(
    case: tuple[bytes, list[Parsed]],
) -> None:
    stream, expected = case
    assert decode_whole(stream)[0] == expected
    for cut in range(len(stream) + 1):
        assert parsed(feed(split_at(stream, [cut]))[0]) == expected, cut


@FAST
@given(st.data())
def test_property_encoded_events_decode_back_at_random_boundaries(data: st.DataObject) -> None:
    stream, expected = data.draw(encoded_streams())
    cuts = data.draw(cuts_in(stream))
    assert parsed(feed(split_at(stream, cuts))[0]) == expected


@FAST
@given(st.data())
def test_property_mixed_line_ends_and_utf8_match_the_spec_model_at_any_chunking(
    data: st.DataObject,
) -> None:
    stream = data.draw(line_streams())
    whole = decode_whole(stream)
    assert whole == reference_parse(stream)
    for cut in range(len(stream) + 1):
        events, last_id, retry = feed(split_at(stream, [cut]))
        assert (parsed(events), last_id, retry) == whole, cut
    events, last_id, retry = feed(split_at(stream, data.draw(cuts_in(stream))))
    assert (parsed(events), last_id, retry) == whole


@FAST
@given(st.data())
def test_property_each_event_is_dispatched_by_the_chunk_holding_its_blank_line(
    data: st.DataObject,
) -> None:
    stream = data.draw(line_streams())
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    consumed = 0
    for chunk in split_at(stream, data.draw(cuts_in(stream))):
        events.extend(decoder.decode(chunk))
        consumed += len(chunk)
        assert parsed(events) == reference_parse(stream[:consumed])[0], consumed


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_property_conformance_vectors_match_at_random_boundaries(data: st.DataObject) -> None:
    stream = VECTORS[data.draw(st.sampled_from(sorted(VECTORS)))]
    events, last_id, retry = feed(split_at(stream, data.draw(cuts_in(stream))))
    assert (parsed(events), last_id, retry) == decode_whole(stream)


def assert_raw_accounts_for_the_input(stream: bytes, chunks: list[bytes]) -> None:
    events, _, _ = feed(chunks, keep_raw=True)
    assert parsed(events) == decode_whole(stream)[0]
    consumed = b"".join(e.raw for e in events)
    assert stream.startswith(consumed)
    # Each raw, fed in turn to one decoder, gives back exactly its own event ...
    replay = SSEDecoder()
    for event in events:
        assert parsed(replay.decode(event.raw)) == parsed([event])
    # ... and what follows the last raw dispatches nothing.
    assert replay.decode(stream[len(consumed) :]) == []


@FAST
@given(st.data())
def test_property_keep_raw_concatenation_is_the_consumed_input(data: st.DataObject) -> None:
    stream = data.draw(st.one_of(line_streams(), encoded_streams().map(lambda c: c[0])))
    assert_raw_accounts_for_the_input(stream, [stream])
    assert_raw_accounts_for_the_input(stream, split_at(stream, data.draw(cuts_in(stream))))


@pytest.mark.parametrize("name", list(VECTORS))
def test_keep_raw_concatenation_is_the_consumed_input_for_vectors(name: str) -> None:
    stream = VECTORS[name]
    assert_raw_accounts_for_the_input(stream, [stream])
    assert_raw_accounts_for_the_input(stream, [stream[i : i + 1] for i in range(len(stream))])


_FRAGMENTS = st.sampled_from(
    [
        *(b"data", b"event", b"id", b"retry", b":", b" ", b"\r", b"\n", b"\r\n"),
        *(b"\xef\xbb\xbf", b"\xef", b"\xbb", b"\xc3", b"\xa9", b"\xf0\x9f", b"\0", b"123", b"x"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.binary(max_size=300), st.lists(_FRAGMENTS, max_size=60).map(b"".join)),
    st.lists(st.integers(min_value=0, max_value=300), max_size=10),
    st.booleans(),
)
def test_property_arbitrary_bytes_never_raise_or_hang(
    stream: bytes, cuts: list[int], keep_raw: bool
) -> None:
    chunks = split_at(stream, [min(c, len(stream)) for c in cuts])
    with time_limit(10):
        events, last_id, retry = feed(chunks, keep_raw=keep_raw)
    assert (parsed(events), last_id, retry) == reference_parse(stream)


# -- bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_raw", [False, True])
def test_a_line_that_never_ends_is_refused_at_the_line_bound(keep_raw: bool) -> None:
    """Held up to the bound, never joined: the error comes before the decoder holds more."""
    decoder = SSEDecoder(keep_raw=keep_raw, max_line=4096, max_event=8192)
    decoder.decode(b"data: ")
    with pytest.raises(FrameTooLarge, match="line"):
        for _ in range(100):
            decoder.decode(b"x" * 1000)
    assert decoder._tail_len <= 4096 + 1000


@pytest.mark.parametrize("keep_raw", [False, True])
def test_an_event_of_many_lines_is_refused_at_the_event_bound(keep_raw: bool) -> None:
    decoder = SSEDecoder(keep_raw=keep_raw, max_line=4096, max_event=8192)
    with pytest.raises(FrameTooLarge, match="event"):
        for _ in range(1000):
            decoder.decode(b"data: " + b"y" * 90 + b"\n")


def test_events_within_the_bounds_decode_as_without_them() -> None:
    stream = b"".join(b"data: %s\n\n" % (b"z" * n) for n in range(0, 3000, 7))
    bounded = SSEDecoder(keep_raw=True, max_line=4096, max_event=4096)
    plain = SSEDecoder(keep_raw=True)
    for start in range(0, len(stream), 1000):
        piece = stream[start : start + 1000]
        assert bounded.decode(piece) == plain.decode(piece)


def test_comments_alone_count_against_the_event_bound_only_when_kept_raw() -> None:
    """A passthrough decoder keeps every byte since the last event (comments too) for the
    client: they are bounded. A translating one drops comments: nothing grows."""
    comment = b": keep-alive " + b"c" * 100 + b"\n"
    dropping = SSEDecoder(max_line=4096, max_event=8192)
    for _ in range(1000):
        dropping.decode(comment)
    keeping = SSEDecoder(keep_raw=True, max_line=4096, max_event=8192)
    with pytest.raises(FrameTooLarge, match="event"):
        for _ in range(1000):
            keeping.decode(comment)
