"""What a PromQL expression names, read without a full parser: the series it selects (with
their label matchers) and the labels it groups or matches on, each grouping with the series
of the expression it applies to; and an exposition's series, by family, with their labels.

Enough for the expressions of deploy/ (aggregations, ``rate``/``increase``,
``histogram_quantile``, vector matching, comparisons); ``promtool`` checks their syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

#: keywords that may stand where a series name could
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
GROUPING = ("by", "without", "on", "ignoring", "group_left", "group_right")

_RANGE = re.compile(r"\[[^\]]*\]")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_TOKEN = re.compile(
    r'(?P<name>[a-zA-Z_:][\w:]*)|(?P<braces>\{[^}]*\})|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<open>\()|(?P<close>\))|(?P<other>\S)"
)
_NUMBER_BEFORE = re.compile(r"[\d.]$")


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Selector:
    name: str
    matchers: tuple[Matcher, ...]


@dataclass(slots=True)
class Grouping:
    """``by (…)`` and the like: its labels and the series of what it applies to."""

    keyword: str
    labels: tuple[str, ...]
    series: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Query:
    selectors: list[Selector]
    groupings: list[Grouping]


def parse(expr: str) -> Query:
    """The selectors and groupings of ``expr`` (template variables already substituted)."""
    # Durations and subqueries in brackets name nothing; strings are kept for the matchers.
    text = _RANGE.sub("", expr)
    tokens: list[tuple[str, str, int]] = []  # (kind, text, depth)
    depth = 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        value = match.group(0)
        if kind == "open":
            depth += 1
            tokens.append((kind, value, depth))
        elif kind == "close":
            tokens.append((kind, value, depth))
            depth -= 1
        elif kind == "name" and _NUMBER_BEFORE.search(text[: match.start()]):
            continue  # the exponent of a number such as 1e3
        else:
            tokens.append((kind, value, depth))
    assert depth == 0, f"unbalanced parentheses: {expr}"

    selectors: list[Selector] = []
    # each selector with the token index it stands at, to assign it to groupings
    placed: list[tuple[int, str]] = []
    groupings: list[tuple[int, int, Grouping]] = []  # (start, end) token span it applies to
    i = 0
    while i < len(tokens):
        kind, value, _depth = tokens[i]
        if kind == "name" and value in GROUPING:
            labels: list[str] = []
            j = i + 1
            if j < len(tokens) and tokens[j][0] == "open":
                j += 1
                while tokens[j][0] != "close":
                    if tokens[j][0] == "name":
                        labels.append(tokens[j][1])
                    j += 1
            grouping = Grouping(value, tuple(labels))
            span = _applies_to(tokens, i, j)
            groupings.append((*span, grouping))
            i = j + 1 if labels or (j < len(tokens) and tokens[j][0] == "close") else i + 1
            continue
        if kind == "name":
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if following is not None and (
                following[0] == "open" or following[1] in ("by", "without")
            ):
                i += 1  # a function, or an aggregation: sum (…), sum by (…) (…)
                continue
            if value.lower() in KEYWORDS:
                i += 1
                continue
            matchers: tuple[Matcher, ...] = ()
            if following is not None and following[0] == "braces":
                matchers = tuple(Matcher(*m) for m in _MATCHER.findall(following[1]))
                i += 1
            selectors.append(Selector(value, matchers))
            placed.append((i, value))
        i += 1
    for start, end, grouping in groupings:
        grouping.series = {name for index, name in placed if start <= index <= end}
    return Query(selectors, [g for _, _, g in groupings])


def _applies_to(tokens: list[tuple[str, str, int]], at: int, labels_end: int) -> tuple[int, int]:
    """The token span a grouping's labels are about: an aggregation's argument (before or
    after the clause), or, for vector matching, the whole expression around it."""
    keyword = tokens[at][1]
    if keyword in ("by", "without"):
        after = labels_end + 1
        if after < len(tokens) and tokens[after][0] == "open":  # sum by (x) (…)
            return after, _closing(tokens, after)
        # sum (…) by (x): the group that ends just before the keyword
        end = at - 1
        return _opening(tokens, end), end
    return 0, len(tokens) - 1


def _closing(tokens: list[tuple[str, str, int]], opening: int) -> int:
    level = tokens[opening][2]
    for index in range(opening + 1, len(tokens)):
        if tokens[index][0] == "close" and tokens[index][2] == level:
            return index
    raise AssertionError("unbalanced parentheses")


def _opening(tokens: list[tuple[str, str, int]], closing: int) -> int:
    level = tokens[closing][2]
    for index in range(closing - 1, -1, -1):
        if tokens[index][0] == "open" and tokens[index][2] == level:
            return index
    raise AssertionError("unbalanced parentheses")


# -- an exposition -----------------------------------------------------------------------------

#: the series each family type exposes, by suffix
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
}


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str


@dataclass(slots=True)
class Exposition:
    """The series of one scrape: each with its family, its label names and their values."""

    families: dict[str, Family]
    #: series name -> label -> values seen
    series: dict[str, dict[str, set[str]]]

    def hint(self, series: str) -> str | None:
        """For a series name no family has: the family it was likely meant for, and the
        names that family's series have (a histogram named without ``_bucket``, a counter
        without ``_total``)."""
        for family in self.families.values():
            if family.type in ("counter", "histogram") and (
                series == family.name or series.startswith(family.name + "_")
            ):
                names = ", ".join(family.name + s for s in SUFFIXES[family.type])
                return f"family {family.name} is a {family.type}: its series are {names}"
        return None


def read_exposition(text: str) -> Exposition:
    families: dict[str, Family] = {}
    series: dict[str, dict[str, set[str]]] = {}
    for metric in text_string_to_metric_families(text):
        families[metric.name] = Family(metric.name, metric.type)
        for sample in metric.samples:
            labels = series.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return Exposition(families, series)
