"""Secrets that come back from upstreams: the configured provider keys, and anything shaped
like a known provider's token, found and replaced by a fixed marker. No I/O.

A misconfigured upstream or a proxy may echo the key it was sent, in an error body or in the
stream itself; what the gateway relays, logs, stores or shows goes through a
:class:`Redactor` first (see docs/security.md). A secret is replaced by ``[redacted]``; a
token of a known shape keeps its provider's public prefix (``sk-ant-[redacted]``,
``AKIA[redacted]``, ``Bearer [redacted]``), so that a reader can tell whose key it was.

The cheap first look (:meth:`Redactor.seen`) is the C module ``sluice._redact`` (the rules of
``_tokens.h``, which this module's expressions follow: the look may say yes where they then
find nothing, never no where they would find something); without it, the expressions
themselves.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable
from typing import Any

MARKER = "[redacted]"

#: A configured key shorter than this is not treated as a secret: such a value ("bench",
#: "test") is no credential worth the name, and replacing it everywhere would garble text.
MIN_KEY_LENGTH = 8

#: The characters provider keys are made of; a token is a maximal run of them.
TOKEN_CHARS = "A-Za-z0-9_-"

#: Known providers' token prefixes, and the fewest token characters after each (keep in step
#: with ``_tokens.h``). The characters after the prefix must also hold a digit or a capital: a
#: random key does, an identifier such as ``hf_hub_download_with_progress_bar`` does not.
SHAPES: tuple[tuple[str, int], ...] = (
    ("sk-", 20),  # OpenAI (sk-proj-, sk-svcacct-, sk-admin-), Anthropic (sk-ant-), Sluice
    ("AIza", 30),  # Google
    ("xai-", 20),  # xAI
    ("gsk_", 20),  # Groq
    ("hf_", 20),  # Hugging Face
    ("AKIA", 16),  # AWS access key ids
    ("ASIA", 16),
    ("ghp_", 30),  # GitHub
    ("gho_", 30),
    ("ghu_", 30),
    ("ghs_", 30),
    ("ghr_", 30),
    ("github_pat_", 20),
)

#: The longer public prefixes kept in front of the marker, tried before the shapes' own.
_KEPT_PREFIXES = ("sk-ant-", "sk-proj-", "sk-svcacct-", "sk-admin-", "sk-sluice-")

_RUN_START = f"(?<![{TOKEN_CHARS}])"
_TOKEN_PATTERN = (
    _RUN_START
    + "(?:"
    + "|".join(
        f"{re.escape(prefix)}(?=[a-z_-]*[A-Z0-9])[{TOKEN_CHARS}]{{{rest},}}"
        for prefix, rest in SHAPES
    )
    + ")"
)
#: RFC 6750's b64token after the word ``Bearer`` (any case) and its space.
_BEARER_PATTERN = _RUN_START + r"((?i:bearer)[ \t]+)[A-Za-z0-9._~+/-]{16,}=*"
_PATTERN = f"(?P<bearer>{_BEARER_PATTERN})|(?P<token>{_TOKEN_PATTERN})"

_TOKENS = re.compile(_PATTERN)
_TOKENS_BYTES = re.compile(_PATTERN.encode())

#: The beginning of a secret at the very end of a text that was cut short: a run that starts
#: with a known prefix, however short, or a bearer token's first characters.
_TAIL = re.compile(
    _RUN_START
    + "(?:(?:"
    + "|".join(re.escape(prefix) for prefix, _rest in SHAPES)
    + rf")[{TOKEN_CHARS}]*|((?i:bearer)[ \t]+)[A-Za-z0-9._~+/-]+=*)\Z"
)

#: The fewest characters of a configured key's beginning that ``Redactor.tail`` replaces.
MIN_KEY_TAIL = 4


def _replace_token(match: re.Match[str]) -> str:
    """``Bearer `` and a token's public prefix are kept, the rest is the marker."""
    token = match.group(0)
    bearer = match.group(2) or ""
    return bearer + _kept_prefix(token[len(bearer) :]) + MARKER


def _replace_token_bytes(match: re.Match[bytes]) -> bytes:
    token = match.group(0).decode("ascii")
    bearer = (match.group(2) or b"").decode("ascii")
    return (bearer + _kept_prefix(token[len(bearer) :]) + MARKER).encode()


def _kept_prefix(token: str) -> str:
    for prefix in _KEPT_PREFIXES:
        if token.startswith(prefix):
            return prefix
    for prefix, _rest in SHAPES:
        if token.startswith(prefix):
            return prefix
    return ""


def slow_scan(data: str | bytes, keys: tuple[bytes, ...]) -> bool:
    """The first look by the expressions, where the C module is not built. (The C scan also
    answers yes for the word "bearer" and a space with no token after them.)"""
    if isinstance(data, str):
        if _TOKENS.search(data):
            return True
        data = data.encode()
    elif _TOKENS_BYTES.search(data):
        return True
    return any(key in data for key in keys)


Scan = Callable[[str | bytes, tuple[bytes, ...]], bool]

try:
    from sluice._redact import scan as _c_scan
except ImportError:  # installed without a C compiler
    scan: Scan = slow_scan
else:
    scan = _c_scan


def marker_for(secret: str) -> str:
    """What ``secret`` is replaced with: the marker, after its public prefix if it has a known
    token's shape."""
    match = _TOKENS.fullmatch(secret)
    return _replace_token(match) if match is not None else MARKER


class Redactor:
    """Finds and replaces the given keys and every token-shaped secret.

    ``seen`` is the cheap first look, for the hot path (a few instructions a byte in C);
    ``text``, ``bytes`` and ``value`` replace, and return their argument itself when there is
    nothing to replace. Keys are replaced before shapes, longest first.
    """

    __slots__ = ("_key_bytes", "_key_text", "_markers", "keys")

    def __init__(self, keys: Iterable[str | None] = ()) -> None:
        chosen = sorted(
            {k for k in keys if k is not None and len(k) >= MIN_KEY_LENGTH}, key=len, reverse=True
        )
        #: the keys as the C scan takes them (UTF-8 bytes, longest first)
        self.keys: tuple[builtins.bytes, ...] = tuple(k.encode() for k in chosen)
        self._markers = {k: marker_for(k) for k in chosen}
        alternatives = "|".join(re.escape(k) for k in chosen)
        self._key_text = re.compile(alternatives) if chosen else None
        self._key_bytes = re.compile(alternatives.encode()) if chosen else None

    def seen(self, data: str | builtins.bytes) -> bool:
        """Whether ``data`` may hold a secret (a yes may be wrong; a no is not)."""
        return scan(data, self.keys)

    def text(self, text: str) -> str:
        if not text or not self.seen(text):
            return text
        if self._key_text is not None:
            markers = self._markers
            text = self._key_text.sub(lambda m: markers[m.group(0)], text)
        return _TOKENS.sub(_replace_token, text)

    def bytes(self, data: builtins.bytes) -> builtins.bytes:
        if not data or not self.seen(data):
            return data
        if self._key_bytes is not None:
            markers = self._markers
            data = self._key_bytes.sub(lambda m: markers[m.group(0).decode()].encode(), data)
        return _TOKENS_BYTES.sub(_replace_token_bytes, data)

    def tail(self, text: str) -> str:
        """``text`` redacted, when it may have been cut short (an error body's first bytes):
        a secret's beginning at its very end, too short to be known by its shape, or the
        first characters of a configured key, is replaced as well."""
        text = self.text(text)
        match = _TAIL.search(text)
        if match is not None:
            bearer = match.group(1) or ""
            rest = match.group(0)[len(bearer) :]
            return text[: match.start()] + bearer + _kept_prefix(rest) + MARKER
        for key in self._markers:
            for n in range(min(len(key) - 1, len(text)), MIN_KEY_TAIL - 1, -1):
                if text.endswith(key[:n]):
                    return text[:-n] + MARKER
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) with its strings redacted; the
        same object when there was nothing to replace."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out = {k: self.value(v) for k, v in value.items()}
            return value if all(out[k] is value[k] for k in value) else out
        if isinstance(value, list):
            items = [self.value(v) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value


#: Token shapes only: for what is not tied to the configured keys.
TOKENS_ONLY = Redactor()


class ProviderKeys:
    """The redactor for the keys as they are now: ``values`` is called on each ``current()``
    (keys rotate without a restart), and the redactor is rebuilt only when they changed."""

    __slots__ = ("_redactor", "_seen", "_values")

    def __init__(self, values: Callable[[], Iterable[str | None]] = tuple) -> None:
        self._values = values
        self._seen: tuple[str | None, ...] = ()
        self._redactor = TOKENS_ONLY

    def current(self) -> Redactor:
        values = tuple(self._values())
        if values != self._seen:
            self._redactor = Redactor(values)
            self._seen = values
        return self._redactor

    def latest(self) -> Redactor:
        """The redactor of the last ``current()``, without reading the keys again: for the
        log, whose lines would otherwise read the environment each. A key rotated since is
        in no request yet, so nothing can echo it."""
        return self._redactor
