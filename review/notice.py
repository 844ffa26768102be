"""The determination notice a member and a prescriber's office read, in HTML,
plain text and PDF, rendered from jinja2 templates (HTML autoescaped).

A notice says, in plain words: who and what the request is (member,
prescriber, drug and quantity, the reference number, the dates), the
decision and who made it (the scorer, or a pharmacist with their reasons),
each reason with the policy's text and the answers it rests on, what to send
when the request is pended, and — from the payer's configuration
(``policies/payers/*.yaml``), never from a template — the decision deadline,
the appeal rights and how to reach the payer. Every time is given in the
payer's zone with its abbreviation (``time_zone``; UTC without a payer file).

An approval for less than was requested (a quantity cut to the policy's
limit, by the scorer or a pharmacist) is an adverse determination, and its
notice is one: it says so, cites the limit's section (``QL``) with the
policy's text and how the plan reads it, gives the quantity approved against
the quantity requested, says what can be done next, and gives the appeal
rights as a denial's notice does.

:func:`render_notice` needs only the :class:`Determination` (the CLI's
``dtr score --format text|html``); a :class:`NoticeContext` adds what the
stored record knows (:func:`notice_context` builds one). Without a payer
configuration the deadline, appeal and contact sections are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cql_like.engine import CompiledRequest
from policies.generated import REQUESTED_QUANTITY
from review.config import Deadline, PayerConfig
from review.request import RequestFacts, facts
from scoring.determination import Determination
from scoring.outcome import InvalidInput
from scoring.response import check_answers

HEADLINES = {
    "approved": "Approved",
    "modified": "Approved — for less than was requested",
    "denied": "Denied — criteria not met",
    "investigational": "Denied — investigational use",
    "pended": "Pended — information missing",
    "review": "Pended — referred to a pharmacist for review",
    "awaiting-review": "Pended — a pharmacist is reviewing this request",
    "reviewed-pend": "Pended — the pharmacist needs more information",
}
QL_SECTION = "QL"  # the quantity-limit criterion generated from quantity_limits

_ENV = Environment(
    loader=PackageLoader("review", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class NoticeReply:
    """The office's reply to a pend, which the notice after it answers."""

    received: str  # ISO instant: the decision deadline runs from it
    asked: str | None  # what the pharmacist asked for (None: missing answers)
    asked_at: str | None  # when the request was pended


@dataclass(frozen=True)
class NoticeContext:
    """What the stored record adds to a determination for its notice."""

    # the short reference read out on the phone (review/reference.py), or the
    # record id where a record has none
    reference: str | None = None
    record_id: str | None = None  # the record id: the ClaimResponse's id and preAuthRef
    received: str | None = None  # ISO instant
    decided: str | None = None  # ISO instant; None while no decision is made
    facts: RequestFacts | None = None
    answers: dict[str, list[Any]] = field(default_factory=dict)  # by linkId
    payer: PayerConfig | None = None
    section_questions: dict[str, list[str]] = field(default_factory=dict)  # section → linkIds
    quantity_question: str | None = None  # linkId of the requested quantity, when asked
    limit_ruling: str | None = None  # the policy's ruling on its quantity limit
    reply: NoticeReply | None = None  # the office's last reply to a pend of this request
    # where the office replies to a pend of this request (the portal's reply view)
    reply_url: str | None = None


def section_questions(package: CompiledRequest) -> dict[str, list[str]]:
    """Section id → the linkIds of the questions it rests on: those whose
    answers its definition reads, and those it asks (in the policy's order)."""
    out: dict[str, list[str]] = {}
    for info in package.index.questions.values():
        for section in dict.fromkeys((info.section, *info.sections)):
            out.setdefault(section, []).append(info.link_id)
    return out


def notice_context(
    package: CompiledRequest,
    response: Mapping[str, Any],
    *,
    reference: str | None = None,
    record_id: str | None = None,
    received: str | None = None,
    decided: str | None = None,
    payer: PayerConfig | None = None,
    answers: dict[str, list[Any]] | None = None,
    reply: NoticeReply | None = None,
    reply_url: str | None = None,
) -> NoticeContext:
    """The context of a stored request: its facts and answers (each coded
    answer with its display, as the Questionnaire offers it), the questions
    of each section, and the payer's configuration."""
    if answers is None:
        try:
            answers = check_answers(package, response).by_link
        except InvalidInput:  # a record the package no longer reads: no answers shown
            answers = {}
    try:
        request_facts: RequestFacts | None = facts(response)
    except InvalidInput:
        request_facts = None
    return NoticeContext(
        reference=reference,
        record_id=record_id,
        received=received,
        decided=decided,
        facts=request_facts,
        answers={link: _displayed(package, link, values) for link, values in answers.items()},
        payer=payer,
        section_questions=section_questions(package),
        quantity_question=package.link_of.get(REQUESTED_QUANTITY),
        limit_ruling=limits.ruling if (limits := package.policy.quantity_limits) else None,
        reply=reply,
        reply_url=reply_url,
    )


def _displayed(package: CompiledRequest, link_id: str, values: list[Any]) -> list[Any]:
    offered = package.codings.get(link_id, [])
    out = []
    for value in values:
        if isinstance(value, dict) and "code" in value and not value.get("display"):
            match = next(
                (
                    c
                    for c in offered
                    if c.get("code") == value.get("code") and c.get("system") == value.get("system")
                ),
                None,
            )
            if match and match.get("display"):
                value = {**value, "display": match["display"]}
        out.append(value)
    return out


# --- plain words ------------------------------------------------------------

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_MONTH = re.compile(r"^\d{4}-\d{2}$")


def day(value: date) -> str:
    return f"{value:%B} {value.day}, {value.year}"


def _moment(value: str | datetime, zone: tzinfo) -> datetime:
    """An instant (ISO text or datetime; without a zone: UTC) in ``zone``."""
    moment = (
        datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone)


def instant(value: str | datetime, zone: tzinfo = UTC) -> str:
    """An instant as a person reads it, in ``zone`` (the payer's) with its
    abbreviation: "November 25, 2026, 06:05 PST"."""
    moment = _moment(value, zone)
    return f"{day(moment.date())}, {moment:%H:%M} {moment:%Z}"


def zone_of(payer: PayerConfig | None) -> tzinfo:
    """The zone a payer's people read times in (UTC without a payer file)."""
    return payer.zone if payer is not None else UTC


def answer_text(value: Any) -> str:
    """An answer in plain words: yes/no, a date, an option's display, an
    attachment's title."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        if _ISO_DAY.match(value):
            try:
                return day(date.fromisoformat(value))
            except ValueError:
                return value
        if _ISO_MONTH.match(value) and 1 <= int(value[5:]) <= 12:
            return f"{date(int(value[:4]), int(value[5:]), 1):%B %Y}"
        return value
    if isinstance(value, dict):
        if "code" in value:
            return str(value.get("display") or value["code"])
        if "data" in value or "url" in value:
            title = value.get("title")
            return f"attached ({title})" if title else "a document is attached"
    return str(value)


# --- what the templates lay out --------------------------------------------


@dataclass(frozen=True)
class Reason:
    section: str
    text: str  # the policy's text of the section
    limits: list[tuple[str, str]]  # the quantity limit against the quantity requested (QL)
    answers: list[tuple[str, str]]  # (the question, as "text:" or "text?"; the answer given)
    basis: str | None = None  # how the plan reads the section (the QL ruling)
    # in a one-of group, an alternative of several sections: the first says
    # so (``lead``), and each is shown within it (``nested``)
    lead: str | None = None
    nested: bool = False


@dataclass(frozen=True)
class ReasonGroup:
    kind: str
    title: str
    intro: str
    reasons: list[Reason]


@dataclass(frozen=True)
class DecisionDeadline:
    text: str
    citation: str
    due: str | None  # the instant it falls on, when the clock runs from receipt
    expedited: bool


def _kind(d: Determination) -> str:
    if d.review_state == "awaiting-review":
        return "awaiting-review"
    if d.outcome == "pended" and d.review_state == "reviewed" and d.requested:
        return "reviewed-pend"
    if d.outcome == "pended" and d.pend_reason == "review":
        return "review"
    if d.outcome == "approved" and d.quantity is not None and d.quantity.modified:
        return "modified"
    return d.outcome


def _requested_quantity(d: Determination, context: NoticeContext) -> int | None:
    if d.quantity is not None:
        return d.quantity.requested
    values = context.answers.get(context.quantity_question or "", [])
    value = values[0] if values else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _limit_lines(d: Determination, requested: int | None) -> list[tuple[str, str]]:
    """Each limit against the quantity requested: ("90 requested, limit 66
    per 28 days", "(capsules and tablets: the product)")."""
    lines = []
    for limit in d.quantity_limits:
        per = f"{limit.max_units} per {limit.period_days} days"
        lines.append(
            (
                f"{requested} requested, limit {per}" if requested is not None else f"Limit {per}",
                f"({limit.unit}: {limit.product})",
            )
        )
    return lines


def _reason(d: Determination, context: NoticeContext, section: str) -> Reason:
    requested = _requested_quantity(d, context)
    skip = {context.quantity_question} if section == QL_SECTION else set()
    answers = []
    for link in context.section_questions.get(section, []):
        values = context.answers.get(link, [])
        question = d.question_text.get(link)
        if link in skip or not values or not question:
            continue
        label = question if question.rstrip().endswith("?") else f"{question}:"
        answers.append((label, "; ".join(answer_text(v) for v in values)))
    quantity = section == QL_SECTION
    return Reason(
        section=section,
        text=d.section_text.get(section, ""),
        limits=_limit_lines(d, requested) if quantity else [],
        answers=answers,
        basis=context.limit_ruling if quantity else None,
    )


ONE_OF_INTRO = "One of these is required, and none was met."
EACH_INTRO = "The policy requires each of these, and the answers given do not meet it."


def _one_of_groups(d: Determination, context: NoticeContext) -> tuple[list[str], list[ReasonGroup]]:
    """The unmet sections the policy requires each of, and the groups of
    them of which one would have been enough: a part of the policy that any
    one alternative meets, where the denial cites two or more of its
    alternatives (each alternative one section, or several needed together)."""
    each = list(d.unmet)
    groups = []
    for part in d.one_of:
        cited = [[s for s in each if s in alternative] for alternative in part.alternatives]
        cited = [sections for sections in cited if sections]
        if len(cited) < 2:
            continue  # one alternative applies: each of its sections is required
        reasons = []
        for sections in cited:
            for index, section in enumerate(sections):
                together = len(sections) > 1
                reasons.append(
                    replace(
                        _reason(d, context, section),
                        lead="All of these together:" if together and index == 0 else None,
                        nested=together,
                    )
                )
            each = [s for s in each if s not in sections]
        intro = (
            f"One of these is required (section {part.section}), and none was met."
            if part.section
            else ONE_OF_INTRO
        )
        groups.append(ReasonGroup("unmet one-of", "Criteria not met", intro, reasons))
    return each, groups


def _groups(d: Determination, context: NoticeContext, kind: str) -> list[ReasonGroup]:
    review_title, review_intro = (
        (
            "What the pharmacist is reviewing",
            "A pharmacist is looking at these parts of the policy and the answers given"
            " before deciding.",
        )
        if kind == "awaiting-review"
        else (
            "Referred to a pharmacist",
            "The policy leaves these to a pharmacist's review; you will be told the decision.",
        )
    )
    each, one_of = _one_of_groups(d, context)
    groups = [
        (
            "investigational",
            "Investigational use (not covered)",
            "The policy treats this use of the drug as investigational: not proven to work,"
            " and not covered.",
            d.investigational,
        ),
        (
            "excluded",
            "Excluded by the policy",
            "The policy does not cover the drug in this situation.",
            d.excluded,
        ),
        ("unmet", "Criteria not met", EACH_INTRO, each),
        ("review", review_title, review_intro, d.review),
        (
            "override",
            "Also cited by the pharmacist",
            "The answers given meet these parts of the policy, or they do not apply to this"
            f" request; the pharmacist's decision rests on them as well, because: {d.override}",
            d.overridden,
        ),
        (
            "confirmed",
            "Confirmed by the pharmacist",
            "The policy lets a pharmacist approve a request when these parts of it are"
            " confirmed; the answers given did not show them, and the pharmacist confirmed"
            " them from what was sent.",
            d.confirmed,
        ),
        (
            "quantity",
            "The quantity limit",
            "The policy covers no more than its quantity limit; the quantity requested is above"
            " it, so the approval is for the limit.",
            [QL_SECTION] if kind == "modified" else [],
        ),
    ]
    found = []
    for kind, title, intro, sections in groups:
        if sections:
            found.append(
                ReasonGroup(kind, title, intro, [_reason(d, context, s) for s in sections])
            )
        if kind == "unmet":  # then the parts of which no alternative was met
            found += one_of
    return found


def _deadline(d: Determination, context: NoticeContext, kind: str) -> DecisionDeadline | None:
    """The payer's decision deadline, while the request is pended."""
    payer = context.payer
    if payer is None or d.outcome != "pended":
        return None
    expedited = context.facts is not None and context.facts.priority == "expedited"
    rule: Deadline = payer.deadlines.expedited if expedited else payer.deadlines.standard
    due = None
    # the clock runs from receipt, and again from the office's reply to a pend
    start = context.reply.received if context.reply is not None else context.received
    if kind in ("awaiting-review", "review") and start:
        received = datetime.fromisoformat(start.replace("Z", "+00:00"))
        due = instant(received + timedelta(hours=rule.hours), payer.zone)
    return DecisionDeadline(rule.text, rule.citation, due, expedited)


@dataclass(frozen=True)
class SendBy:
    """By when the office sends what a pend asks for, and what happens if
    nothing comes (the payer's; without its configuration, what the
    request's state means)."""

    day: str | None
    if_nothing: str
    citation: str | None = None


def _send_by(d: Determination, context: NoticeContext, kind: str) -> SendBy | None:
    """For a request waiting for the office (pended for its answers or
    documents, or for what a pharmacist asks)."""
    if kind not in ("pended", "reviewed-pend"):
        return None
    rule = context.payer.missing_information if context.payer else None
    if rule is None:
        return SendBy(
            None,
            "Until it comes, the request stays pended: nothing is decided, and the drug is not"
            " covered under it.",
        )
    since = context.decided or context.received
    # the day of the notice where the payer is
    noticed = _moment(since, zone_of(context.payer)).date() if since else None
    due = (noticed or d.evaluated_at) + timedelta(days=rule.days)
    return SendBy(day(due), rule.if_nothing, rule.citation)


def _reply_sentence(reply: NoticeReply | None, zone: tzinfo) -> str | None:
    """What a notice after the office's reply answers, in a sentence."""
    if reply is None:
        return None
    asked = f" of {instant(reply.asked_at, zone)}" if reply.asked_at else ""
    received = instant(reply.received, zone)
    if reply.asked:
        return (
            f"This notice answers your reply of {received} to the pharmacist's"
            f" request{asked} for: {reply.asked}"
        )
    return (
        f"This notice answers your reply of {received} to the questions"
        f" left unanswered when the request was pended{asked.replace(' of', ' on')}."
    )


def _named(name: str | None, label: str, identifier: str | None) -> str:
    if name and identifier:
        return f"{name} ({label} {identifier})"
    return name or f"{label} {identifier}"


def _facts_rows(d: Determination, context: NoticeContext) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if context.reference:
        rows.append(("Reference number", context.reference))
    if context.record_id and context.record_id != context.reference:
        rows.append(("Record", context.record_id))
    f = context.facts
    if f is not None and (f.member_name or f.member_id):
        rows.append(("Member", _named(f.member_name, "member ID", f.member_id)))
    if f is not None and (f.prescriber_name or f.prescriber_npi):
        rows.append(("Prescriber", _named(f.prescriber_name, "NPI", f.prescriber_npi)))
    drug = d.drug or d.policy_number
    if len(d.quantity_limits) == 1:  # the product requested, with its strength
        product = d.quantity_limits[0].product
        drug = product if drug in product else f"{drug} — {product}"
    rows.append(("Drug requested", drug))
    requested = _requested_quantity(d, context)
    if requested is not None:
        limits = d.quantity_limits
        per = (
            f" {limits[0].unit} per {limits[0].period_days} days"
            if limits and len({(lim.unit, lim.period_days) for lim in limits}) == 1
            else ""
        )
        rows.append(("Quantity requested", f"{requested}{per}"))
    rows.append(("Request", f"{d.request.capitalize()} request, policy {d.policy_number}"))
    if f is not None:
        rows.append(("Priority", "Expedited" if f.priority == "expedited" else "Standard"))
    zone = zone_of(context.payer)
    if context.received:
        rows.append(("Received", instant(context.received, zone)))
    if context.reply is not None:
        rows.append(("Reply received", instant(context.reply.received, zone)))
    if d.outcome == "pended":
        rows.append(("Decided", "Not yet"))
    else:
        decided = instant(context.decided, zone) if context.decided else day(d.evaluated_at)
        rows.append(("Decided", decided))
    return rows  # the authorization period is given with the decision


def _view(determination: Determination, context: NoticeContext | None) -> dict[str, Any]:
    d = determination
    context = context or NoticeContext()
    kind = _kind(d)
    payer = context.payer
    adverse = kind in ("denied", "investigational", "modified")
    to_send: list[str] = []  # questions to answer
    documents: list[str] = []  # documents to send, by what they are
    if d.outcome == "pended" and kind not in ("awaiting-review", "reviewed-pend"):
        documents = list(
            dict.fromkeys(d.documents[q] for q in d.missing_questions if q in d.documents)
        )
        to_send = [
            d.question_text[q]
            for q in d.missing_questions
            if q in d.question_text and q not in d.documents
        ]
    unanswered = []
    if d.outcome != "pended":
        unanswered = [d.question_text[q] for q in d.missing_questions if q in d.question_text]
    return {
        "d": d,
        "kind": kind,
        "headline": HEADLINES[kind],
        "payer_name": payer.name if payer else d.payer,
        "drug": d.drug or d.policy_number,
        "rows": _facts_rows(d, context),
        "groups": _groups(d, context, kind),
        "to_send": to_send,
        "documents": documents,
        "send_by": _send_by(d, context, kind),
        "unanswered": unanswered,
        "deadline": _deadline(d, context, kind),
        "payer": payer,
        "appeal": payer is not None and adverse,
        "reference": context.reference,
        "reply": _reply_sentence(context.reply, zone_of(payer)),
        # a pend the office answers: where it replies
        "reply_url": context.reply_url if kind in ("pended", "reviewed-pend") else None,
        "authorization": d.authorization,
        # an approval for less than was requested: the quantity approved and requested
        "cut": d.quantity if kind == "modified" else None,
        "day": day,
    }


def render_notice(
    determination: Determination,
    fmt: Literal["html", "text"] = "text",
    context: NoticeContext | None = None,
) -> str:
    template = _ENV.get_template("notice.html.j2" if fmt == "html" else "notice.txt.j2")
    return template.render(**_view(determination, context))


def render_notice_pdf(determination: Determination, context: NoticeContext | None = None) -> bytes:
    """The HTML notice printed to PDF by WeasyPrint (which needs Pango: see
    scripts/setup). It loads nothing: the notice carries its own style."""
    import weasyprint  # imported here: the service and CLI start without Pango

    html = render_notice(determination, "html", context)
    document = weasyprint.HTML(string=html, url_fetcher=_no_fetching(weasyprint))
    return bytes(document.write_pdf())


def _no_fetching(weasyprint: Any) -> Any:
    """A URL fetcher that refuses every URL (a notice has none to load)."""
    fetcher = getattr(weasyprint, "URLFetcher", None)
    if fetcher is not None:  # newer WeasyPrint: a fetcher class
        return fetcher(allowed_protocols=frozenset())

    def refuse(url: str, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"a notice loads nothing ({url})")

    return refuse  # older WeasyPrint: a function
