"""The words a simulated model says (support answers, reasoning, tool calls), cut into tokens.

A token is one streamed piece: a word with the whitespace that follows it, so that joining the
pieces gives the text back exactly (markdown, code fences and newlines intact). Which answer a
request gets is chosen from a digest of its model and prompt, so the same request always gets
the same words. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from itertools import cycle, islice
from random import Random

ANSWERS: tuple[str, ...] = (
    """## Resetting your API key

Thanks for reaching out! If your requests started failing with `401 Unauthorized`, the most \
likely cause is a key that was rotated or revoked. Here is how to get back on track:

1. Open the **Dashboard** and go to *Settings → API keys*.
2. Click **Create key**, give it a name you will recognise later, and copy it right away.
3. Replace the old key wherever it is stored (environment files, CI secrets, the vault).
4. Revoke the old key once traffic has moved over.

To check the new key from a terminal:

```bash
curl -s https://api.example.com/v1/account \\
  -H "Authorization: Bearer $EXAMPLE_API_KEY" | jq .status
```

If this prints `"active"`, you are all set. Keys are shown only once, so keep them in a \
password manager rather than in chat or email.

""",
    """## Tracking a delayed order

I'm sorry your order is taking longer than expected. Most delays come from one of three places:

- **Carrier backlog:** the parcel left our warehouse but the carrier has not scanned it yet.
- **Address check:** an incomplete address puts the parcel on hold until it is confirmed.
- **Customs:** international parcels can wait two to five business days for clearance.

You can look up the live status yourself with the order number from your confirmation email:

```python
from example_shop import Client

client = Client(api_key="...")
order = client.orders.get("A-1042")
print(order.status, order.carrier, order.tracking_url)
```

If the status has not changed for more than *five business days*, reply to this message with \
the order number and we will open an investigation with the carrier and send a replacement if \
the parcel is lost.

""",
    """## Fixing `429 Too Many Requests`

A `429` means the account went over its rate limit for a short window. Nothing is broken, and \
no requests were billed. A few habits keep it from happening:

1. Retry with **exponential backoff** and honour the `retry-after` header.
2. Spread batch jobs over time instead of starting them all at once.
3. Stream long answers so that one slow request does not hold a slot for minutes.

A small retry loop looks like this:

```python
import time

def call_with_retry(send, attempts=5):
    for attempt in range(attempts):
        response = send()
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("retry-after", 2 ** attempt)))
    return response
```

If you need a higher limit for a launch or a migration, tell us the expected peak requests per \
minute and we will review it within one business day.

""",
)

REASONING = """The customer is asking for help, so first I should work out which product area \
this touches. The wording suggests an account or order problem rather than a billing dispute. \
I should check whether there is a known incident, then recall the usual causes, order them by \
likelihood, and give concrete steps with a short example they can run. It is worth mentioning \
how to verify the fix, and what to do if the steps do not help, without promising anything the \
team cannot deliver. Keep the tone friendly and the answer skimmable: a heading, a short list, \
and one code block. """

TOOL_PREAMBLE = "Let me look up order A-1042 for you.\n\n"

#: The tool calls the ``tools`` and ``parallel-tools`` scenarios make: (name, JSON arguments).
LOOKUP_ORDER = ("lookup_order", '{"order_id": "A-1042", "include_history": true}')
LIST_OPEN_TICKETS = ("list_open_tickets", "{}")

_PIECE = re.compile(r"\s*\S+\s*")


def split_pieces(text: str) -> list[str]:
    """Cut ``text`` into tokens: each non-blank run with the whitespace after it.

    Leading whitespace sticks to the first piece, so ``"".join(split_pieces(t)) == t`` for any
    text that contains a non-blank character.
    """
    return _PIECE.findall(text)


@cache
def _answer_pieces(variant: int) -> tuple[str, ...]:
    return tuple(split_pieces(ANSWERS[variant]))


@cache
def _reasoning_pieces() -> tuple[str, ...]:
    return tuple(split_pieces(REASONING))


def answer(digest: bytes, tokens: int) -> Iterator[str]:
    """The first ``tokens`` pieces of the answer chosen by ``digest``.

    Answers longer than one variant go on with the next variants, round and round.
    """
    first = digest[0] % len(ANSWERS)
    order = [(first + i) % len(ANSWERS) for i in range(len(ANSWERS))]
    pieces = (piece for variant in cycle(order) for piece in _answer_pieces(variant))
    return islice(pieces, tokens)


def reasoning(tokens: int) -> Iterator[str]:
    """``tokens`` pieces of reasoning text, repeated as needed."""
    return islice(cycle(_reasoning_pieces()), tokens)


def preamble() -> list[str]:
    """The short text said before a tool call."""
    return split_pieces(TOOL_PREAMBLE)


def cut_fragments(text: str, rng: Random, longest: int = 8) -> list[str]:
    """Cut ``text`` at arbitrary points into fragments of 1 to ``longest`` characters."""
    fragments: list[str] = []
    at = 0
    while at < len(text):
        size = rng.randint(1, longest)
        fragments.append(text[at : at + size])
        at += size
    return fragments
