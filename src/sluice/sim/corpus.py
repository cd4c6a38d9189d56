"""The words a simulated model says (support answers, reasoning, tool calls), cut into tokens.

A token is one streamed piece: a word with the whitespace that follows it, so that joining the
pieces gives the text back exactly (markdown, code fences and newlines intact). The answer is
one reply from a small support-desk corpus: the topic whose keywords the prompt names most
(ties and prompts that name none are settled by a digest of model and prompt), so the same
request always gets the same words and a question gets the answer about it. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import cycle, islice
from random import Random


@dataclass(frozen=True, slots=True)
class Topic:
    """One support answer: a heading, then a body of paragraphs, lists and code."""

    name: str
    keywords: frozenset[str]
    heading: str
    body: str

    @property
    def text(self) -> str:
        return self.heading + self.body


def keywords(words: str) -> frozenset[str]:
    return frozenset(words.split())


TOPICS: tuple[Topic, ...] = (
    Topic(
        "deploy-permissions",
        keywords(
            "deploy deploys deployment release releases pipeline permission permissions denied "
            "ci build"
        ),
        "## Fixing `permission denied` on the release step\n\n",
        """Thanks for the detailed report! When a nightly deploy fails on the release step with \
`permission denied`, the build itself is fine: the account that runs the pipeline is not \
allowed to write where the release goes. In most teams it comes down to one of three causes.

1. **An expired or rotated deploy token.** Tokens made for CI often expire after 90 days, and \
the pipeline keeps using the old one until someone updates the secret.
2. **A role that lost a permission.** A recent change to the project's roles may have removed \
*write* access to the release bucket or registry from the service account.
3. **A protected branch or environment.** If the nightly job runs from a branch that is not \
allowed to deploy to production, the release step is refused on purpose.

First, find out which identity the step runs as and what it is allowed to do. Add these two \
lines just before the release command and run the job once by hand:

```bash
example-cli whoami
example-cli permissions check --resource releases --action write
```

If `whoami` prints an unexpected account, the pipeline is reading an old secret: create a new \
deploy token under *Settings → Deploy tokens*, store it as the CI secret the job reads, and run \
the job again. If the account is right but the check says `denied`, ask an owner of the project \
to give that account the **Releaser** role, which includes write access to releases and \
nothing more.

For a protected environment, open *Settings → Environments → production* and add the nightly \
branch to the list of branches allowed to deploy. Keep that list short: every branch on it can \
publish a release.

Once the job passes, it is worth making the next failure easier to read. Set the token to \
expire on a date someone will notice, put a reminder in the team calendar a week before, and \
let the pipeline print the account it uses at the start of every run. Then a `permission \
denied` points straight at the account and the resource.

If none of this helps, reply with the job's log from the release step and the output of the \
two commands above, and we will look at the audit log for your project. We usually answer \
within one business day.
""",
    ),
    Topic(
        "api-keys",
        keywords(
            "key keys apikey 401 unauthorized unauthorised authentication auth token tokens "
            "revoked credentials"
        ),
        "## Resetting your API key\n\n",
        """Thanks for reaching out! If your requests started failing with `401 Unauthorized`, the \
most likely cause is a key that was rotated or revoked. First, check the key from a terminal \
by asking for the account it belongs to:

```bash
curl -s https://api.example.com/v1/account \\
  -H "Authorization: Bearer $EXAMPLE_API_KEY" | jq .status
```

If this prints `"active"`, the key is fine and the problem is elsewhere: reply with the full \
error and we will look. If it answers `401`, here is how to get back on track:

1. Open the **Dashboard** and go to *Settings → API keys*.
2. Click **Create key**, give it a name you will recognise later, and copy it right away.
3. Replace the old key wherever it is stored: environment files, CI secrets, the vault.
4. Revoke the old key once traffic has moved over.

Nothing is wrong with your code, and no requests were billed while they failed. If the new \
key still gets `401`, the variable probably holds the old value: print its first few \
characters and compare them with the prefix shown on the keys page.

A few habits keep this from happening again. Give every service its own key, so that revoking \
one does not stop the others. Keep keys in a secret store rather than in code, chat or email, \
because a key that leaks is revoked by our scanner within minutes. And rotate keys on a \
schedule you choose, rather than when one stops working.

Keys are shown only once. If you lose one, there is no way to read it again: create a new key \
and revoke the lost one. If you think a key was used by someone else, revoke it first and then \
reply to this message with the time of the first unexpected request, and we will go through \
the usage logs with you.

If you manage keys for a team, the *Members* page shows who created each key and when it was \
last used. A key that has not been used for a month is a good candidate to revoke: if \
something still needed it, its owner will notice quickly and can create a fresh one.
""",
    ),
    Topic(
        "delayed-order",
        keywords(
            "order orders parcel package delivery deliver delivered shipping shipped tracking "
            "delayed late carrier arrived"
        ),
        "## Tracking a delayed order\n\n",
        """I'm sorry your order is taking longer than expected. Most delays come from one of \
three places:

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

If the status says *held for address*, check the address on the order page and confirm it; \
the carrier releases the parcel the next business day. If it says *in transit* but the \
tracking page has not changed for a while, the parcel is most likely waiting in a sorting \
centre, and it usually moves again within two days.

For international orders in customs, the carrier may send you a message asking for an \
import fee or an identity number. Those messages come from the carrier, never from us, and \
they always name your tracking number. If you are not sure a message is genuine, forward it \
to us before you pay anything.

If the status has not changed for more than *five business days*, reply to this message with \
the order number and we will open an investigation with the carrier. Investigations take up \
to three business days. If the parcel turns out to be lost, we send a replacement at no cost, \
or refund the order if you prefer.

If you would like to follow the investigation, the order page shows its status as well, and \
we email you as soon as the carrier answers. You do not need to do anything else in the \
meantime, and you will not be charged twice if the original parcel turns up after a \
replacement was sent: simply keep it, or send it back with the free return label.

Thanks for your patience while we sort this out.
""",
    ),
    Topic(
        "rate-limits",
        keywords("429 rate limit limits limited throttled throttling quota"),
        "## Fixing `429 Too Many Requests`\n\n",
        """A `429` means the account went over its rate limit for a short window. Nothing is \
broken, and no requests were billed. Limits are counted per minute, both in requests and in \
tokens, and the response headers say how much of each is left. A few habits keep it from \
happening:

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

Watch the `x-ratelimit-remaining-requests` and `x-ratelimit-remaining-tokens` headers as well. \
When either gets close to zero, slow down before the limit is reached rather than after. A \
shared queue in front of your workers does this well, because it sees every request at once.

If many of your requests are the same question, cache the answers for a few minutes. A cache \
hit costs nothing and counts against no limit.

Limits grow on their own as an account's usage and payment history grow. If you need a higher \
limit sooner, for a launch or a migration, reply with the expected peak requests and tokens \
per minute and the date you need it by, and we will review it within one business day.

Finally, if you run several environments from one account, give each its own project. Limits \
apply per project, so a load test in staging can no longer slow down production, and the \
usage page shows at a glance which environment is close to its limit. Moving keys between \
projects takes a minute and needs no change to your code.
""",
    ),
    Topic(
        "billing",
        keywords(
            "invoice invoices billing bill billed charge charged charges refund payment card "
            "subscription plan"
        ),
        "## A charge you did not expect\n\n",
        """Thanks for flagging this, and sorry for the surprise. An unexpected charge is almost \
always one of these:

- **Usage billed at the end of the month:** requests made during the month are billed \
together on the first day of the next one.
- **A plan that renewed:** yearly plans renew on the date they started, with a reminder sent \
two weeks before to the billing contact.
- **A pending authorisation:** when a card is added, your bank may show a small temporary \
charge that disappears within a few days.

You can see every line of an invoice under *Settings → Billing → Invoices*. Each line names \
the project and the model, so usage from a forgotten test project stands out quickly. To \
check the current month so far, run:

```bash
example-cli billing usage --month current --group-by project
```

If a project should not have been running, revoke its keys and the usage stops at once. To \
avoid another surprise, set a monthly budget under *Settings → Billing → Limits*: we email \
the billing contact at half and at the full amount, and you can choose to stop requests when \
the budget is reached.

If the charge is for something you did not use, reply with the invoice number and the lines \
you question. Refunds for billing mistakes go back to the card that paid, and usually reach \
your account within five to ten business days. We answer billing questions within one \
business day.

If several people in your company pay for separate accounts, you can also merge them into one \
organisation with a single invoice. Usage stays visible per project, and one budget can cover \
all of them, which makes the monthly total much easier to predict and to explain. \
Ask us and we will set it up for you.
""",
    ),
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
_WORD = re.compile(r"[a-z0-9]+")
#: what may close a sentence after its full stop: markup, a bracket, a quote
_CLOSERS = "*_)\"'"


def split_pieces(text: str) -> list[str]:
    """Cut ``text`` into tokens: each non-blank run with the whitespace after it.

    Leading whitespace sticks to the first piece, so ``"".join(split_pieces(t)) == t`` for any
    text that contains a non-blank character.
    """
    return _PIECE.findall(text)


def sentence_ends(pieces: list[str]) -> list[bool]:
    """For each piece, whether a sentence of prose ends with it (never inside a code fence)."""
    ends: list[bool] = []
    fenced = False
    for piece in pieces:
        word = piece.strip()
        if "```" in word:
            fenced = not fenced
            ends.append(False)
            continue
        ends.append(not fenced and word.rstrip(_CLOSERS)[-1:] in (".", "!", "?"))
    return ends


def topic_for(prompt: str, digest: bytes) -> Topic:
    """The topic whose keywords the prompt names most; the digest settles ties and silence."""
    words = set(_WORD.findall(prompt.lower()))
    first = digest[0] % len(TOPICS)
    order = [TOPICS[(first + i) % len(TOPICS)] for i in range(len(TOPICS))]
    return max(order, key=lambda topic: len(topic.keywords & words))


#: Closing sentences by their length in pieces: an answer that reaches its length inside a
#: sentence leaves that sentence out and closes with some of these, as many pieces as it left.
SIGN_OFFS: dict[int, str] = {
    1: "Thanks!",
    2: "Thanks again!",
    3: "Hope this helps.",
    4: "I hope this helps.",
    5: "Tell us how it goes.",
    6: "Let us know how it goes.",
    7: "Reply here if you need anything else.",
    8: "We are happy to look into it further.",
    9: "If anything is unclear, just reply to this message.",
    10: "Thanks for your patience, and for the very clear description.",
    11: "We will keep this ticket open for now, just in case.",
    12: "If these steps do not work for you, please let us know.",
}


@cache
def _pieces(topic: Topic) -> tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]]:
    """The answer's pieces, each with whether a sentence ends with it; then the same for its
    body said again after a blank line. The last piece of each ends a sentence."""
    parts = []
    for text in (topic.text, "\n" + topic.body):
        pieces = split_pieces(text)
        ends = sentence_ends(pieces)
        ends[-1] = True
        parts.append(tuple(zip(pieces, ends, strict=True)))
    return parts[0], parts[1]


def _flow(topic: Topic) -> Iterator[tuple[str, bool]]:
    """The topic's answer, then its body again and again, piece by piece."""
    answer, body = _pieces(topic)
    yield from answer
    while True:
        yield from body


def sign_off(count: int) -> list[str]:
    """``count`` pieces of closing sentences, longest first, each used once while they last."""
    pieces: list[str] = []
    unused = sorted(SIGN_OFFS, reverse=True)
    while count > 0:
        if not unused:
            unused = sorted(SIGN_OFFS, reverse=True)
        size = next(n for n in unused if n <= count)
        unused.remove(size)
        pieces += split_pieces(SIGN_OFFS[size] + " ")
        count -= size
    pieces[-1] = pieces[-1].rstrip() + "\n"
    return pieces


def answer(prompt: str, digest: bytes, tokens: int) -> Iterator[str]:
    """The answer to ``prompt``, exactly ``tokens`` pieces long, ending with a whole sentence.

    The answer is said sentence by sentence; a sentence that would not end within ``tokens``
    pieces is left out, and closing sentences of as many pieces as it left take its place
    (``sign_off``). An answer asked to run longer than its topic's text goes on with the body
    again, after a blank line, as often as needed. Lazy: the pieces held back at any time are
    one sentence at most.
    """
    held: list[str] = []  # the pieces of the sentence being said, since the last end
    left = tokens
    last = ""
    for piece, ends in _flow(topic_for(prompt, digest)):
        held.append(piece)
        if ends:
            yield from held
            left -= len(held)
            last, held = piece, []
            if left == 0:
                return
        elif len(held) == left:
            break
    closing = sign_off(left)
    if last.endswith("\n") and not last.endswith("\n\n"):
        closing[0] = "\n" + closing[0]  # after a list item: a paragraph of its own
    yield from closing


def reasoning(tokens: int) -> Iterator[str]:
    """``tokens`` pieces of reasoning text, repeated as needed."""
    return islice(cycle(_reasoning_pieces()), tokens)


@cache
def _reasoning_pieces() -> tuple[str, ...]:
    return tuple(split_pieces(REASONING))


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
