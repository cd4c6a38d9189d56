"""Types of the C module ``_scan.c``: the commonest upstream frame, recognised in one pass."""

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

def chat_delta(
    chunk: bytes,
    text_cls: Callable[[str], T],
    reasoning_cls: Callable[[str], R],
    keys: tuple[bytes, ...] = ...,
    /,
) -> T | R | None: ...
def messages_delta(
    chunk: bytes,
    text_cls: Callable[[str, int], T],
    reasoning_cls: Callable[[str, int], R],
    keys: tuple[bytes, ...] = ...,
    /,
) -> T | R | None: ...
def responses_delta(
    chunk: bytes,
    text_cls: Callable[[str, int], T],
    reasoning_cls: Callable[[str, int], R],
    keys: tuple[bytes, ...] = ...,
    /,
) -> T | R | None: ...
