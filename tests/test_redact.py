"""The redactor: which secrets it finds, what it leaves alone, and the C first look held to the
regular expressions that do the replacing."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice import redact
from sluice.events import ReasoningDelta, TextDelta
from sluice.logs import REDACTION, redact_logs
from sluice.redact import MARKER, ProviderKeys, Redactor, slow_scan
from sluice.wire._fold import Shortcut, chat_shortcut, messages_shortcut, responses_shortcut

OPENAI_KEY = "sk-proj-" + "fakeTestKeyNotReal2" * 4
ANTHROPIC_KEY = "sk-ant-api03-" + "fakeTestKeyNotReal3" * 4 + "-AAAA"

#: a secret of each known shape, and what it becomes
SHAPED = [
    (OPENAI_KEY, "sk-proj-" + MARKER),
    ("sk-" + "fakeTestKeyNotReal4" * 2 + "0" * 10, "sk-" + MARKER),
    ("sk-svcacct-" + "fakeTestKeyNotReal5" * 3 + "0" * 6, "sk-svcacct-" + MARKER),
    (ANTHROPIC_KEY, "sk-ant-" + MARKER),
    ("sk-sluice-" + "q" * 16 + "W_-" + "9" * 13, "sk-sluice-" + MARKER),
    ("AIza" + "FakeTestKeyNotReal-" * 2, "AIza" + MARKER),
    ("xai-" + "FakeTestKeyNotReal" * 4, "xai-" + MARKER),
    ("gsk_" + "FakeTestKeyNotReal" * 3, "gsk_" + MARKER),
    ("hf_" + "FakeTestTokenNotReal" + "0" * 14, "hf_" + MARKER),
    ("AKIA" + "FAKEKEY0EXAMPLE2", "AKIA" + MARKER),
    ("ASIA" + "FAKEKEY0EXAMPLE0", "ASIA" + MARKER),
    ("ghp_" + "FakeTestTokenNotReal" * 2, "ghp_" + MARKER),
    ("github_pat_" + "FakeTestTokenNotReal" * 4, "github_pat_" + MARKER),
]


def test_the_c_module_is_built() -> None:
    try:
        module = importlib.import_module("sluice._redact")
    except ImportError as exc:  # pragma: no cover - the message is the point
        pytest.fail(
            "the C module sluice._redact is not built, so every frame would be looked at by "
            f"regular expressions ({exc}); `make setup` builds it"
        )
    assert Path(module.__file__ or "").suffix == ".so"
    assert redact.scan is module.scan


@pytest.mark.parametrize(("secret", "replaced"), SHAPED)
def test_a_token_of_a_known_shape_keeps_only_its_public_prefix(secret: str, replaced: str) -> None:
    redactor = Redactor()
    text = f'{{"error": {{"message": "Incorrect API key provided: {secret}."}}}}'
    assert redactor.text(text) == text.replace(secret, replaced)
    assert redactor.bytes(text.encode()) == text.replace(secret, replaced).encode()
    assert secret not in redactor.text(f"key={secret}&x=1")


def test_a_bearer_token_is_redacted_after_its_scheme() -> None:
    redactor = Redactor()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "RmFrZVRlc3RTaWduYXR1cmU"
    for header in (f"Authorization: Bearer {jwt}", f"authorization: bearer {jwt}"):
        assert redactor.text(header) == header.replace(jwt, MARKER)
    shaped = f"Bearer {OPENAI_KEY}"
    assert redactor.text(shaped) == "Bearer sk-proj-" + MARKER


def test_a_configured_key_of_any_shape_is_redacted_wherever_it_is() -> None:
    odd = "proxy:7f3a9c1e:b04d"  # no known prefix, and not made of token characters only
    redactor = Redactor([odd, ANTHROPIC_KEY, None])
    text = f"upstream said: bad key {odd} (x-api-key {ANTHROPIC_KEY}){odd}"
    assert redactor.text(text) == (
        f"upstream said: bad key {MARKER} (x-api-key sk-ant-{MARKER}){MARKER}"
    )
    assert redactor.bytes(text.encode()) == redactor.text(text).encode()
    assert redactor.text("é " + odd) == "é " + MARKER  # in a string that is not ASCII


def test_a_value_too_short_to_be_a_key_is_left_alone() -> None:
    redactor = Redactor(["bench", "", "sk-1234"])
    assert redactor.keys == ()
    assert redactor.text("the bench sk-1234") == "the bench sk-1234"


@pytest.mark.parametrize(
    "text",
    [
        "Refunds take 5-10 business days; see the billing FAQ.",
        '{"id":"chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012","model":"gpt-4o-mini-2024-07-18"}',
        '{"type":"content_block_delta","system_fingerprint":"fp_0ba0d124f1"}',
        "see sk-learn-tutorials-for-beginners and hf_hub_download_with_progress_bar",
        "task-sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",  # inside a longer run: not a token's start
        "the Bearer of bad news",
        "AKIA" + "FAKEKEY0EXAMPLE",  # one short
    ],
)
def test_ordinary_text_is_left_as_it_is(text: str) -> None:
    redactor = Redactor([OPENAI_KEY])
    assert redactor.text(text) is text
    assert redactor.bytes(text.encode()) == text.encode()


def test_redacting_twice_changes_nothing_more() -> None:
    redactor = Redactor([OPENAI_KEY])
    once = redactor.text(" ".join(s for s, _ in SHAPED) + f" Bearer {'x' * 40}")
    assert redactor.text(once) == once
    assert all(secret not in once for secret, _ in SHAPED)


def test_a_value_is_walked_and_kept_when_clean() -> None:
    redactor = Redactor([OPENAI_KEY])
    clean = {"a": [1, "x", {"b": None}], "c": 2.5}
    assert redactor.value(clean) is clean
    dirty = {"error": {"message": f"bad {OPENAI_KEY}", "code": 401}, "list": ["ok", OPENAI_KEY]}
    assert redactor.value(dirty) == {
        "error": {"message": f"bad sk-proj-{MARKER}", "code": 401},
        "list": ["ok", f"sk-proj-{MARKER}"],
    }


def test_the_provider_keys_follow_rotation() -> None:
    current = ["sk-" + "a" * 40]
    ring = ProviderKeys(lambda: current)
    first = ring.current()
    assert ring.current() is first  # unchanged values: the same redactor
    current[0] = "sk-" + "b" * 40
    assert ring.latest() is first  # (the log's: the environment is not read again)
    rotated = ring.current()
    assert rotated is not first
    assert rotated.keys == (current[0].encode(),)
    assert ring.latest() is rotated


# -- the C first look against the expressions ------------------------------------------------

_PIECES = st.sampled_from(
    [
        "sk-",
        "sk-ant-",
        "AIza",
        "xai-",
        "gsk_",
        "hf_",
        "AKIA",
        "ASIA",
        "ghp_",
        "github_pat_",
        "Bearer ",
        "bearer\t",
        "a",
        "z",
        "Z",
        "7",
        "-",
        "_",
        "aB3dE6gH9j",
        " ",
        '"',
        ":",
        "=",
        ".",
        "é",
        "\n",
        "KEY-of-MINE:1",
    ]
)


_BEARER_WORD = re.compile(r"(?<![A-Za-z0-9_-])(?i:bearer)[ \t]")


def _says_bearer(text: str) -> bool:
    """Where the C look answers yes without a token: the word "bearer" and a space or tab."""
    return _BEARER_WORD.search(text) is not None


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_the_c_look_agrees_with_the_expressions(text: str) -> None:
    keys = (b"KEY-of-MINE:1",)
    expected = slow_scan(text, keys)
    for data in (text, text.encode()):
        found = redact.scan(data, keys)
        assert found == expected or (found and _says_bearer(text)), data
    assert redact.scan(text, ()) == redact.scan(text.encode(), ())


def test_the_c_look_refuses_what_it_cannot_read() -> None:
    with pytest.raises(TypeError):
        redact.scan(b"x", [b"k"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        redact.scan(b"x", ("k",))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        redact.scan(bytearray(b"x"), ())  # type: ignore[arg-type]


# -- the relay's shortcut ----------------------------------------------------------------------


def _chat(text: str) -> bytes:
    return (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,'
        b'"delta":{"content":"' + text.encode() + b'"},"finish_reason":null}]}\n\n'
    )


def _messages(text: str) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"' + text.encode() + b'"}}\n\n'
    )


def _responses(text: str) -> bytes:
    return (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"output_index":0,"content_index":0,"delta":"' + text.encode() + b'"}\n\n'
    )


@pytest.mark.parametrize(
    ("shortcut", "make"),
    [(chat_shortcut, _chat), (messages_shortcut, _messages), (responses_shortcut, _responses)],
)
def test_the_shortcut_leaves_a_delta_holding_a_secret_to_the_general_path(
    shortcut: Shortcut, make: Callable[[str], bytes]
) -> None:
    keys = (b"odd:configured:key",)
    plain = shortcut(make(" hello there"), TextDelta, ReasoningDelta, keys)
    assert isinstance(plain, TextDelta) and plain.text == " hello there"
    for secret in (
        "odd:configured:key",
        OPENAI_KEY,
        "AKIA" + "FAKEKEY0EXAMPLE3",
        "Bearer " + "z" * 20,
    ):
        assert shortcut(make(f"key: {secret}."), TextDelta, ReasoningDelta, keys) is None
    # without keys, only the shapes are refused
    short: Callable[..., object] = shortcut
    assert short(make("odd:configured:key"), TextDelta, ReasoningDelta) is not None
    assert short(make(OPENAI_KEY), TextDelta, ReasoningDelta) is None


# -- the log -----------------------------------------------------------------------------------


def test_log_lines_of_the_sluice_loggers_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    odd = "proxy:7f3a9c1e:b04d"
    stop = redact_logs(lambda: Redactor([odd]))
    logger = logging.getLogger("sluice.session")
    try:
        with caplog.at_level(logging.INFO, logger="sluice"):
            logger.warning("upstream said %s", f"bad key {odd} and {OPENAI_KEY}")
            try:
                raise RuntimeError(f"boom {odd}")
            except RuntimeError:
                logger.exception("failed")
    finally:
        stop()
    assert REDACTION.sources == []
    text = caplog.text
    assert "upstream said bad key [redacted] and sk-proj-[redacted]" in text
    assert "RuntimeError: boom [redacted]" in text
    assert odd not in text and OPENAI_KEY not in text


# -- a text cut short --------------------------------------------------------------------------


def test_the_beginning_of_a_secret_at_the_end_of_a_cut_text_is_redacted() -> None:
    odd = "proxy:7f3a9c1e5b2d:b04d9e8f"
    redactor = Redactor([odd, OPENAI_KEY])
    page = "<p>Denied. key="
    assert redactor.tail(page + OPENAI_KEY[:15]) == page + "sk-proj-" + MARKER
    assert redactor.tail(page + "hf_Ab") == page + "hf_" + MARKER
    assert redactor.tail(page + odd[:9]) == page + MARKER  # a configured key's first part
    assert redactor.tail("Authorization: Bearer eyJhbG") == "Authorization: Bearer " + MARKER
    assert redactor.tail(page + OPENAI_KEY + " end") == page + "sk-proj-" + MARKER + " end"
    for whole in ("no secret here", "ends with a word", page + odd[:3], "task-sk-abc"):
        assert redactor.tail(whole) == whole
