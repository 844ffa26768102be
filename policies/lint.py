"""`dtr lint`: a policy's data checked against the policy's own words.

A policy file names a plain-text copy of the policy it encodes
(``source_text.file``, beside it) and the part of that text which holds the
criteria (``criteria_start`` … ``criteria_end``). Each criterion, and each
part of the data that copies a number from the text (quantity limits,
lengths of authorization, investigational uses), carries a ``source_quote``:
an excerpt of that text. Section ids cannot link the two — most payers'
texts number nothing — so the words do. Three things are reported:

1. a quote not found in the text;
2. a bullet or sentence of the criteria part that no quote overlaps, unless
   the data acknowledges it with a reason (``source_text.acknowledged``):
   a criterion the author forgot;
3. a number with a unit inside a quote (18 years, 6 months, 66 tablets,
   45 mg twice daily) that the quoting part's data does not hold with the
   same value and unit: ``18 months`` written for 18 years.

Text is compared after normalising what is layout, not words: whitespace,
list markers at the start of a line, markup (``**bold**``, ``<i>…</i>``,
``== heading ==``), typographic quotes and dashes, and case. Everything here
is pure: the caller reads the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from policies.model import (
    REQUEST_KINDS,
    AuthorizationTerm,
    Condition,
    Criterion,
    Policy,
    QuantityLimit,
    Question,
    expression_variables,
    walk,
)

# -- normalising --------------------------------------------------------------

_TYPOGRAPHIC = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
    }
)
# markup that is not words: HTML tags, Markdown emphasis, `== heading ==` rules
_MARKUP = re.compile(r"<[^>\n]+>|\*+|={2,}")
# a list marker at the start of a line: -, *, •, 1. 1) A. a) I. iv.
_MARKER = re.compile(r"^(?:[-*\u2022]|\(?(?:[0-9]+|[A-Za-z]|[IVXivx]+)[.)])\s+")


def normalise(text: str) -> str:
    """Text as compared: layout and markup dropped, words kept (case is
    ignored by the comparison itself, so offsets stay the text's own)."""
    lines = []
    for line in text.translate(_TYPOGRAPHIC).splitlines():
        line = _MARKER.sub("", line.strip())
        lines.append(_MARKUP.sub("", line))
    return re.sub(r"\s+", " ", " ".join(lines).replace("--", "-")).strip()


# -- the source text's units -------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A bullet (with the lines it wraps onto) or a sentence of the text."""

    line: int  # 1-based, the line it starts on
    start: int  # its span in the normalised text
    end: int
    text: str


@dataclass
class Source:
    """A source text normalised once: the whole text and its units."""

    text: str
    units: list[Unit] = field(default_factory=list)

    def find(self, excerpt: str) -> list[tuple[int, int]]:
        """Every span where an excerpt occurs (normalised, case ignored)."""
        wanted = normalise(excerpt)
        if not wanted:
            return []
        return [
            (m.start(), m.end()) for m in re.finditer(re.escape(wanted), self.text, re.IGNORECASE)
        ]


_HEADING_RULE = re.compile(r"^\s*={2,}(.*?)={2,}(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _is_title(line: str) -> bool:
    """A title line: at most eight words, no sentence punctuation at the end."""
    words = normalise(line)
    return len(words.split()) <= 8 and not words.endswith((".", ";", ":", "?", "!"))


@dataclass
class _Block:
    kind: Literal["bullet", "paragraph", "line"]
    line: int
    indent: int
    spans: list[tuple[int, int]]


def read_source(text: str) -> Source:
    """The units of a text: each bullet with its continuation lines (indented
    deeper) is one; other lines form paragraphs, split into sentences. A
    heading (``== … ==``, or a title line of at most eight words without
    final punctuation) is no unit: it
    names a part, it states no criterion (what follows a ``== … ==`` heading
    on its line is one)."""
    parts: list[str] = []
    offset = 0

    def add(piece: str) -> tuple[int, int]:
        nonlocal offset
        normal = normalise(piece)
        if not normal:
            return offset, offset
        if parts:
            offset += 1  # the space that joins it
        start = offset
        parts.append(normal)
        offset += len(normal)
        return start, offset

    blocks: list[_Block] = []
    current: _Block | None = None
    for number, raw in enumerate(text.translate(_TYPOGRAPHIC).splitlines(), start=1):
        if not raw.strip():
            current = None
            continue
        indent = len(raw) - len(raw.lstrip())
        rule = _HEADING_RULE.match(raw)
        if rule:
            add(rule.group(1))
            blocks.append(_Block("line", number, indent, [add(rule.group(2))]))
            current = None
        elif _MARKER.match(raw.strip()):
            current = _Block("bullet", number, indent, [add(raw)])
            blocks.append(current)
        elif current is not None and (current.kind == "paragraph" or indent > current.indent):
            current.spans.append(add(raw))  # a paragraph goes on, or a bullet wraps
        elif _is_title(raw):
            add(raw)
            current = None
        else:
            current = _Block("paragraph", number, indent, [add(raw)])
            blocks.append(current)

    source = Source(" ".join(parts))
    for block in blocks:
        spans = [s for s in block.spans if s[1] > s[0]]
        if not spans:
            continue
        start, end = spans[0][0], spans[-1][1]
        pieces = (
            _sentences(source.text, start, end) if block.kind == "paragraph" else [(start, end)]
        )
        for first, last in pieces:
            source.units.append(Unit(block.line, first, last, source.text[first:last]))
    return source


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    at = start
    for match in _SENTENCE_END.finditer(text, start, end):
        yield at, match.start()
        at = match.end()
    if at < end:
        yield at, end


# -- numbers with a unit ------------------------------------------------------

_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
# spelling → (unit, factor): a length in years is one in months (12 to the
# year), in weeks one in days, as the data writes them; other units as written
_UNITS: dict[str, tuple[str, float]] = {
    "capsules and tablets": ("capsules and tablets", 1),
    "years": ("months", 12),
    "year": ("months", 12),
    "months": ("months", 1),
    "month": ("months", 1),
    "weeks": ("days", 7),
    "week": ("days", 7),
    "days": ("days", 1),
    "day": ("days", 1),
    "renewals": ("renewals", 1),
    "renewal": ("renewals", 1),
    "tablets": ("tablets", 1),
    "tablet": ("tablets", 1),
    "capsules": ("capsules", 1),
    "capsule": ("capsules", 1),
    "mcg": ("mcg", 1),
    "µg": ("mcg", 1),
    "mg": ("mg", 1),
    "g": ("g", 1),
    "ml": ("mL", 1),
    "%": ("%", 1),
}
_FREQUENCY = {"once": 1, "twice": 2, "three times": 3, "four times": 4}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<value>[0-9]+(?:\.[0-9]+)?|" + "|".join(_WORDS) + r")"
    r"\s*-?\s*(?P<unit>"
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    # a dose then how often a day: 45 mg (by mouth) twice daily
    + r")(?![A-Za-z])(?:(?:\s+(?:by mouth|orally))?\s+(?P<often>"
    + "|".join(_FREQUENCY)
    + r")\s+(?:daily|a day|per day))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Amount:
    value: float
    unit: str
    said: str  # as the text says it

    def same(self, other: Amount) -> bool:
        return self.unit == other.unit and abs(self.value - other.value) < 1e-9

    def __str__(self) -> str:
        value = f"{self.value:g}"
        return (
            self.said
            if self.said == f"{value} {self.unit}"
            else f"{self.said} ({value} {self.unit})"
        )


def amounts(text: str) -> list[Amount]:
    """The numbers with a unit a text states, each in the data's unit."""
    found = []
    for match in _NUMBER.finditer(normalise(text)):
        raw = match.group("value").lower()
        value = float(_WORDS[raw]) if raw in _WORDS else float(raw)
        unit, factor = _UNITS[match.group("unit").lower()]
        value *= factor
        if match.group("often"):
            value *= _FREQUENCY[match.group("often").lower()]
            unit += "/day"
        found.append(Amount(value, unit, match.group(0)))
    return found


def _stated(value: float, unit: str) -> list[Amount]:
    return amounts(f"{value:g} {unit}") or [Amount(value, unit, f"{value:g} {unit}")]


# -- what a part's data states -----------------------------------------------


def _questions(policy: Policy) -> dict[str, Question]:
    out: dict[str, Question] = {}
    for kind in REQUEST_KINDS:
        for criterion in walk(policy.request(kind).criteria):
            for question in criterion.questions:
                out.setdefault(question.name, question)
    return out


_COMPARED = re.compile(r"%([a-z][a-z0-9_]*)\s*(?:<=|>=|!=|<|>|=|~)\s*([0-9]+(?:\.[0-9]+)?)")


def _criterion_data(policy: Policy, criterion: Criterion) -> list[Amount]:
    """The numbers a criterion's data states: in its questions (and those
    its definition reads), their answer options and units, its definition,
    the derived values it reads, its conditions and its document."""
    questions = _questions(policy)
    derived = {d.name: d for d in policy.derived}
    texts: list[str] = []
    expressions = [criterion.met or ""]
    read = expression_variables(criterion.met or "")
    for name in sorted(read & derived.keys()):
        texts.append(derived[name].text)
        expressions.append(derived[name].expression)
        read |= expression_variables(derived[name].expression)
    asked = {q.name: q for q in criterion.questions}
    asked.update({n: questions[n] for n in read if n in questions})
    conditions: list[Condition] = [*criterion.enable_when, *criterion.children_enable_when]
    for question in asked.values():
        texts += [question.text, question.help or "", *(o.display for o in question.options)]
        conditions += question.enable_when
    if criterion.documentation:
        texts.append(criterion.documentation.document)
    found = [a for text in [*texts, *expressions] for a in amounts(text)]
    units = {q.name: q.unit for q in questions.values() if q.unit}
    for expression in expressions:
        for name, number in _COMPARED.findall(expression):
            if name in units:
                found += _stated(float(number), units[name])
    for condition in conditions:
        if condition.question in units and isinstance(condition.answer, int | float):
            found += _stated(float(condition.answer), units[condition.question])
    return found


def _limit_data(limit: QuantityLimit) -> list[Amount]:
    found = amounts(limit.product) + (amounts(limit.code.display or "") if limit.code else [])
    found += _stated(limit.period_days, "days")
    if limit.quantity is not None:
        found.append(Amount(limit.quantity, _unit(limit.unit), f"{limit.quantity} {limit.unit}"))
    if limit.per_day is not None:
        found.append(Amount(limit.per_day, f"{_unit(limit.unit)}/day", f"{limit.per_day:g}"))
    if limit.daily_dose is not None:
        dose = limit.daily_dose
        found.append(Amount(dose.amount, f"{_unit(dose.unit)}/day", f"{dose.amount:g} {dose.unit}"))
        found += _stated(dose.strength, dose.unit)
    return found


def _unit(spelling: str) -> str:
    return _UNITS.get(spelling.lower(), (spelling, 1))[0]


def _term_data(term: AuthorizationTerm) -> list[Amount]:
    found = _stated(term.months, "months")
    if term.max_total_months is not None:
        found += _stated(term.max_total_months, "months")
    if term.max_renewals is not None:
        found += _stated(term.max_renewals, "renewals")
    return found


# -- the lint -----------------------------------------------------------------


@dataclass(frozen=True)
class Quoted:
    """One quote of the data: where it is written, and what its part states."""

    where: str  # section and field, e.g. "I.A: source_quote"
    quote: str | None
    data: list[Amount]
    unquoted: str | None = None  # why the text states nothing it could quote


def quoted_parts(policy: Policy) -> list[Quoted]:
    """Every part of the data that quotes, or must quote, the source text:
    each criterion and investigational use must (a renewal's ``include:
    initial`` quotes nothing twice); the lengths of authorization, their
    branches and caps, and the quantity limits may."""
    parts = []
    for kind in REQUEST_KINDS:
        term = policy.authorization.term(kind)
        if term.source_quote:
            parts.append(
                Quoted(f"authorization.{kind}: source_quote", term.source_quote, _term_data(term))
            )
        for cap in term.branch_caps:
            if cap.source_quote:
                data = _stated(cap.max_total_months, "months") if cap.max_total_months else []
                if cap.max_renewals is not None:
                    data += _stated(cap.max_renewals, "renewals")
                parts.append(
                    Quoted(
                        f"authorization.{kind}: branch_caps: {cap.section}: source_quote",
                        cap.source_quote,
                        data,
                    )
                )
        for branch in term.branches:
            if branch.source_quote:
                parts.append(
                    Quoted(
                        f"authorization.{kind}: branches: {branch.section}: source_quote",
                        branch.source_quote,
                        _stated(branch.months, "months"),
                    )
                )
    if policy.quantity_limits is not None:
        limits = policy.quantity_limits
        everything = [a for limit in limits.limits for a in _limit_data(limit)]
        if limits.source_quote:
            parts.append(Quoted("QL: source_quote", limits.source_quote, everything))
        for index, limit in enumerate(limits.limits):
            if limit.source_quote:
                parts.append(
                    Quoted(
                        f"QL: limits[{index}]: source_quote", limit.source_quote, _limit_data(limit)
                    )
                )
    for kind in REQUEST_KINDS:
        for criterion in walk(policy.request(kind).criteria):
            parts.append(
                Quoted(
                    f"{kind}: {criterion.id}: source_quote",
                    criterion.source_quote,
                    _criterion_data(policy, criterion),
                    criterion.unquoted,
                )
            )
    if policy.investigational is not None:
        listing = policy.investigational
        parts.append(Quoted(f"{listing.id}: source_quote", listing.source_quote, []))
        for condition in listing.all_conditions():
            data = amounts(condition.applies or "") + amounts(condition.display or "")
            parts.append(
                Quoted(
                    f"{listing.id}: {condition.id}: source_quote"
                    if condition is not listing.other
                    else f"{listing.id}: other: source_quote",
                    condition.source_quote,
                    data,
                )
            )
    return parts


@dataclass
class Report:
    """What `dtr lint` found for one policy."""

    findings: list[str] = field(default_factory=list)
    quotes: int = 0
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (text, reason)


def lint(policy: Policy, text: str, source_name: str) -> Report:
    """The findings of a policy against its source text (``source_name``
    names the text in them)."""
    report = Report()
    settings = policy.source_text
    if settings is None:
        report.findings.append(
            "source_text: none named: a policy names the plain-text copy of its policy"
            " (`source_text.file`) for `dtr lint` to check it against"
        )
        return report
    source = read_source(text)
    covered: list[tuple[int, int]] = []
    for part in quoted_parts(policy):
        if not part.quote and part.unquoted:
            where = part.where.removesuffix(": source_quote")
            report.acknowledged.append((f"{where} (quotes nothing)", part.unquoted))
            continue
        if not part.quote:
            report.findings.append(
                f"{part.where}: missing: every criterion and investigational use quotes the"
                " text it rests on"
            )
            continue
        report.quotes += 1
        spans = source.find(part.quote)
        if not spans:
            report.findings.append(
                f"{part.where}: not found in {source_name}: {normalise(part.quote)!r}"
            )
            continue
        covered += spans
        for amount in amounts(part.quote):
            if not any(amount.same(held) for held in part.data):
                held = ", ".join(sorted({str(a) for a in part.data})) or "no number with a unit"
                report.findings.append(
                    f"{part.where}: {amount} is not in its data (which states: {held})"
                )
    start = source.find(settings.criteria_start)
    if not start:
        report.findings.append(
            f"source_text.criteria_start: not found in {source_name}:"
            f" {normalise(settings.criteria_start)!r}"
        )
        return report
    begin = start[0][0]
    end = len(source.text)
    if settings.criteria_end is not None:
        after = [s for s in source.find(settings.criteria_end) if s[0] > begin]
        if not after:
            report.findings.append(
                f"source_text.criteria_end: not found after criteria_start in {source_name}:"
                f" {normalise(settings.criteria_end)!r}"
            )
            return report
        end = after[0][0]
    units = [u for u in source.units if begin <= u.start < end]
    acknowledged: list[tuple[int, int]] = []
    for index, entry in enumerate(settings.acknowledged):
        spans = [s for s in source.find(entry.text) if any(_overlap(s, u) for u in units)]
        if not spans:
            report.findings.append(
                f"source_text.acknowledged[{index}]: not found in the criteria part of"
                f" {source_name}: {normalise(entry.text)!r}"
            )
            continue
        acknowledged += spans
        report.acknowledged.append((entry.text, entry.reason))
    for unit in units:
        if any(_overlap(span, unit) for span in covered):
            continue
        if any(_overlap(span, unit) for span in acknowledged):
            continue
        report.findings.append(
            f"{source_name} line {unit.line}: no part of the policy quotes {unit.text!r}"
            " (quote it, or acknowledge it in source_text.acknowledged with a reason)"
        )
    return report


def _overlap(span: tuple[int, int], unit: Unit) -> bool:
    return span[0] < unit.end and unit.start < span[1]
