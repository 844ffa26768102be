"""The notice a member and a prescriber's office read (review/notice.py), in
plain text, HTML and PDF: who and what, the decision and who made it, each
reason with the policy's words and the answers given, what to send, and —
only from the payer's configuration (policies/payers) — the decision
deadline, the appeal rights and the contact.

The expected wording of the policies (section texts, questions, limits) is
written here from the policy files; the payer's is read from its
configuration, since the point is that the notice carries it and nothing
else."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from review.config import PayerConfig, load_payers
from review.decision import approved, denied, pended, under_review
from review.notice import NoticeContext, notice_context, render_notice, render_notice_pdf
from review.request import NPI_SYSTEM, PRIORITY_EXTENSION
from scoring import Determination, assess
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import AS_OF, base_answers, package_for
from tests.support.paths import PAYER_SETTINGS

RECEIVED = "2026-11-24T14:05:00+00:00"
REVIEWED = "2026-11-25T09:30:00+00:00"
# RECEIVED where each payer is (its file's time_zone)
RECEIVED_THERE = {
    "EOCCO": "November 24, 2026, 06:05 PST",
    "WHA": "November 24, 2026, 06:05 PST",
    "MN-DHS": "November 24, 2026, 08:05 CST",
}
PAYERS = load_payers(PAYER_SETTINGS)

QL_TEXT = (
    "avutometinib (Avmapki) and defactinib (Fakzynja) Co-Pack, 0.8 mg capsules/200 mg"
    " tablets: 66 capsules and tablets/28 days"
)
CO_PACK = "avutometinib 0.8 mg capsules and defactinib 200 mg tablets (Co-Pack)"
FORMATS: tuple[Literal["text", "html"], ...] = ("text", "html")
RATIONALE = "90 a month is above the labeled dose of 66 per 28 days."


def reviewed_denial(d: Determination) -> Determination:
    return denied(
        d, ["QL"], RATIONALE, "pharmacist-7", date(2026, 11, 25), statuses={"QL": "not-met"}
    )


def reviewed_cut(d: Determination) -> Determination:
    """A pharmacist approves the scorer's approval cut to the limit, as cut (the
    approval as of the decision: the same here)."""
    return approved(d, replace(d), "The labeled dose needs no more than 168.", "pharmacist-7")


def reviewed_pend(d: Determination) -> Determination:
    return pended(
        d, "The KRAS report signed by the lab", "The report sent is unreadable.", "pharmacist-7",
        date(2026, 11, 25),
    )  # fmt: skip


@dataclass(frozen=True)
class Case:
    policy: str
    base: str
    payer: str
    change: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    step: Callable[[Determination], Determination] | None = None  # a pharmacist's part
    decided: str | None = RECEIVED
    expedited: bool = False
    appeal: bool = False  # adverse: the appeal rights are given
    deadline: bool = False  # pended: the decision deadline is given
    says: tuple[str, ...] = ()  # in the plain-text notice
    never: tuple[str, ...] = ()


CASES = {
    "denied over the quantity limit": Case(
        "eocco329", "initial_met", "EOCCO", {"requested_quantity": 90}, appeal=True,
        says=(
            "DECISION: Denied — criteria not met",
            f"  - QL: {QL_TEXT}",
            f"      90 requested, limit 66 per 28 days (capsules and tablets: {CO_PACK})",
            "  Quantity requested: 90 capsules and tablets per 28 days",
            f"  Drug requested: avutometinib and defactinib (Avmapki Fakzynja Co-Pack) — {CO_PACK}",
        ),
        never=("Investigational", "Excluded", "pharmacist", "Authorized from"),
    ),
    "pended for information": Case(
        "eocco329", "initial_met", "EOCCO", {"prescriber_oncologist": False},
        unset=("birth_date",), deadline=True,
        says=(
            "DECISION: Pended — information missing",
            "WHAT TO SEND\nAnswer these questions on the form and send it again:\n"
            "  - Member's date of birth\n"
            "  - Is the medication prescribed in consultation with an oncologist?\n",
            "  Decided: Not yet",
            # by when (the payer's days from the notice), and what if nothing comes
            "Send what is asked by December 8, 2026.",
            PAYERS["EOCCO"].missing_information.if_nothing,  # type: ignore[union-attr]
        ),
        never=("I.A.birth_date", "I.B.oncologist_consulted", "Denied", "A decision is due by",
               "Send this document", "Send these documents"),
    ),
    # pended at 19:00 on November 24 in Oregon (03:00 on the 25th UTC): the
    # days to send it by count from the payer's day
    "pended in the payer's evening": Case(
        "eocco329", "initial_met", "EOCCO", {"prescriber_oncologist": False},
        decided="2026-11-25T03:00:00+00:00", deadline=True,
        says=("Send what is asked by December 8, 2026.",),
        never=("December 9",),
    ),
    # a document is asked for as a document, never as a question to answer
    "pended for a document": Case(
        "eocco329", "initial_met", "EOCCO", unset=("document_i_d_2",), deadline=True,
        says=(
            "DECISION: Pended — information missing",
            "WHAT TO SEND\nSend this document, attached to the form:\n"
            "  - KRAS mutation test report\n\n"
            "Send what is asked by December 8, 2026.\n",
            PAYERS["EOCCO"].missing_information.if_nothing,  # type: ignore[union-attr]
        ),
        never=("Answer these questions", "attach it: required for approval", "Denied"),
    ),
    # three alternatives of which one would do: one of them, not each of them
    "denied, no alternative met": Case(
        "wha-mektovi", "melanoma_step_met", "WHA",
        {"cotellic_history": "not-tried", "mekinist_history": "not-tried"}, appeal=True,
        says=(
            "DECISION: Denied — criteria not met",
            "Criteria not met: One of these is required (section Melanoma.4), and none was met.\n"
            "  - Melanoma.4.B: Continuation of prior therapy\n"
            "      Is this request a continuation of prior therapy (is the member already on"
            " Mektovi)? No\n"
            "  - Melanoma.4.A.1: Trial and failure, contraindication, or intolerance to"
            " Cotellic (cobimetinib)\n",
            "  - Melanoma.4.A.2: Trial and failure, contraindication, or intolerance to"
            " Mekinist (trametinib)\n",
        ),
        never=("requires each of these", "WHAT TO SEND", "Send what is asked"),
    ),
    # a criterion of the one alternative that applies (the melanoma branch) is required
    "denied within the alternative that applies": Case(
        "wha-mektovi", "melanoma_step_met", "WHA", {"melanoma_braf_v600ek": False},
        unset=("melanoma_braf_test",), appeal=True,
        says=("Criteria not met: The policy requires each of these, and the answers given do not"
              " meet it.\n  - Melanoma.2: ",),
        never=("One of these is required",),
    ),
    "excluded": Case(
        "mn-dhs-mekinist", "melanoma_met", "MN-DHS", {"prior_braf_inhibitor_progression": True},
        appeal=True,
        says=(
            "DECISION: Denied — criteria not met",
            "Excluded by the policy: The policy does not cover the drug in this situation.\n"
            "  - Exclusion.1: Melanoma patients who progressed on prior BRAF-inhibitor therapy\n"
            "      Has the member's melanoma progressed on prior BRAF-inhibitor therapy? Yes",
        ),
        never=("Criteria not met:", "Investigational use"),
    ),
    "investigational": Case(
        "eocco329", "not_lgsoc", "EOCCO", {"diagnosis": "II.C"}, appeal=True,
        says=(
            "DECISION: Denied — investigational use",
            "Investigational use (not covered): The policy treats this use of the drug as"
            " investigational",
            "  - II.C: Non-small cell lung cancer\n"
            "      Diagnosis for which the medication is prescribed: Non-small cell lung cancer",
        ),
        never=("Excluded by the policy",),
    ),
    "approved": Case(
        "mn-dhs-mekinist", "melanoma_met", "MN-DHS",
        says=(
            "DECISION: Approved",
            "Authorized from November 24, 2026 through November 23, 2027 (12 months).",
            "Quantity approved: 30 tablets per 30 days.",
            "  Quantity requested: 30 tablets per 30 days",
            "  Drug requested: Mekinist (trametinib) 2 mg tablets",
            "  Decided: November 24, 2026, 08:05 CST",  # Minnesota: Central time
        ),
        never=("WHY", "WHAT TO SEND", "pharmacist", "Not answered"),
    ),
    # a quantity cut to the limit is an adverse determination, automatic or a pharmacist's
    "approved for less than requested": Case(
        "wha-mektovi", "melanoma_step_met", "WHA", {"requested_quantity": 180}, appeal=True,
        says=(
            "DECISION: Approved — for less than was requested",
            "but for less than the quantity requested: 168 tablets per 28 days, not the 180"
            " tablets requested.",
            "This is an adverse determination: a decision against part of the request.",
            "Quantity approved: 168 tablets per 28 days.\n"
            "Quantity requested: 180 tablets per 28 days. The 12 tablets above the policy's limit"
            " are not approved.",
            "The quantity limit: The policy covers no more than its quantity limit",
            "      180 requested, limit 168 per 28 days (tablets: Mektovi (binimetinib) 15 mg"
            " tablets)",
            "WHAT YOU CAN DO\n  - The approved 168 tablets per 28 days can be filled now.",
            "the prescriber can send Western Health Advantage information that supports the"
            " higher quantity",
            "You, or your prescriber for you, can appeal this decision.",
        ),
        never=("This decision was made by a pharmacist's review", "Criteria not met", "Denied"),
    ),
    "approved for less than requested by a pharmacist": Case(
        "wha-mektovi", "melanoma_step_met", "WHA", {"requested_quantity": 180}, step=reviewed_cut,
        decided=REVIEWED, appeal=True,
        says=(
            "DECISION: Approved — for less than was requested",
            "This is an adverse determination",
            "This decision was made by a pharmacist's review.",
            "The pharmacist's reasons: The labeled dose needs no more than 168.",
            "Quantity requested: 180 tablets per 28 days. The 12 tablets above",
            "WHAT YOU CAN DO",
            "  Decided: November 25, 2026, 01:30 PST",
        ),
    ),
    "awaiting a pharmacist": Case(
        "eocco329", "initial_met", "EOCCO", {"requested_quantity": 90}, step=under_review,
        decided=None, deadline=True,
        says=(
            "DECISION: Pended — a pharmacist is reviewing this request",
            "No decision yet: this request is with a pharmacist, who will decide it.",
            "A decision is due by November 25, 2026, 06:05 PST",
            "What the pharmacist is reviewing:",
            "  Decided: Not yet",
        ),
        never=("This decision was made by a pharmacist's review", "Denied"),
    ),
    "awaiting a pharmacist, expedited": Case(
        "wha-mektovi", "melanoma_step_met", "WHA", {"melanoma_braf_v600ek": False},
        unset=("melanoma_braf_test",),
        step=under_review, decided=None, deadline=True, expedited=True,
        says=(
            "  Priority: Expedited",
            # WHA decides an expedited request within 24 hours, a standard one within 72
            "A decision is due by November 25, 2026, 06:05 PST",
            "(an expedited request)",
        ),
    ),
    "denied by a pharmacist": Case(
        "eocco329", "initial_met", "EOCCO", {"requested_quantity": 90}, step=reviewed_denial,
        decided=REVIEWED, appeal=True,
        says=(
            "DECISION: Denied — criteria not met",
            "This decision was made by a pharmacist's review.",
            f"The pharmacist's reasons: {RATIONALE}",
            "90 requested, limit 66 per 28 days",
            "  Decided: November 25, 2026, 01:30 PST",
        ),
    ),
    "pended by a pharmacist": Case(
        "eocco329", "initial_met", "EOCCO", step=reviewed_pend, decided=REVIEWED, deadline=True,
        says=(
            "DECISION: Pended — the pharmacist needs more information",
            # not yet a decision: the notice never says one was made
            "A pharmacist reviewed this request and needs more information before deciding.",
            "The pharmacist's reasons: The report sent is unreadable.",
            "WHAT TO SEND\nThe pharmacist asks for: The KRAS report signed by the lab",
            "  Decided: Not yet",
        ),
        never=("Answer these questions", "This decision was made"),
    ),
}  # fmt: skip


def request_response(package: Any, case: Case) -> dict[str, Any]:
    answers = {**base_answers(case.policy, case.base), **case.change}
    for name in case.unset:
        answers.pop(name)
    response = fill(package, answers)
    response["subject"] = {"display": "Jane Example", "identifier": {"value": "EX123456"}}
    response["author"] = {
        "display": "Dr. Sam Sample",
        "identifier": {"system": NPI_SYSTEM, "value": "1234567893"},
    }
    if case.expedited:
        response["extension"] = [{"url": PRIORITY_EXTENSION, "valueCode": "expedited"}]
    return response


def noticed(catalog: Catalog, case: Case) -> tuple[Determination, NoticeContext, Any]:
    package = package_for(catalog, case.policy, "initial")
    response = request_response(package, case)
    determination = assess(package, response, AS_OF)[0]
    if case.step is not None:
        determination = case.step(determination)
    context = notice_context(
        package,
        response,
        reference="ref-0042",
        received=RECEIVED,
        decided=case.decided,
        payer=PAYERS[case.payer],
    )
    return determination, context, package


def appeal_parts(payer: PayerConfig) -> list[str]:
    steps = payer.appeals.steps
    return [
        payer.appeals.summary,
        payer.appeals.expedited,
        *(s.title for s in steps),
        *(s.how for s in steps),
        *(s.deadline for s in steps),
        *(s.citation for s in steps),
        *(s.contact for s in steps if s.contact),
    ]


def contact_parts(payer: PayerConfig) -> list[str]:
    contact = payer.contact
    return [
        contact.department,
        contact.instructions,
        *([contact.website] if contact.website else []),
    ]


def deadline_parts(payer: PayerConfig, expedited: bool) -> list[str]:
    deadline = payer.deadlines.expedited if expedited else payer.deadlines.standard
    return [deadline.text, deadline.citation]


def visible(page: str) -> str:
    """An HTML notice's text as read: tags out, entities decoded, spaces folded."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


@pytest.mark.parametrize("name", CASES)
def test_the_notice_says_what_and_why(catalog: Catalog, name: str) -> None:
    case = CASES[name]
    determination, context, package = noticed(catalog, case)
    text = render_notice(determination, "text", context)
    page = visible(render_notice(determination, "html", context))
    for line in case.says:
        assert line in text, line
    for words in case.never:
        assert words not in text, words
    # who and what, in both formats
    for words in ("Jane Example (member ID EX123456)", "Dr. Sam Sample (NPI 1234567893)",
                  "ref-0042", "Received", RECEIVED_THERE[case.payer]):  # fmt: skip
        assert words in text and words in page, words
    # questions by their text, never by their linkId
    for link_id in package.link_of.values():
        assert link_id not in text and link_id not in page, link_id
    # every reason the determination cites, with the policy's words
    for section in [*determination.unmet, *determination.excluded,
                    *determination.investigational, *determination.review]:  # fmt: skip
        assert f"{section}: {determination.section_text[section]}" in text
        assert f"Section {section}: {determination.section_text[section]}" in page


@pytest.mark.parametrize("name", CASES)
def test_appeal_deadline_and_contact_come_from_the_payer(catalog: Catalog, name: str) -> None:
    case = CASES[name]
    determination, context, _ = noticed(catalog, case)
    payer = PAYERS[case.payer]
    for fmt in FORMATS:
        rendered = render_notice(determination, fmt, context)
        shown = visible(rendered) if fmt == "html" else rendered
        for words in contact_parts(payer):
            assert words in shown, (fmt, words)
        for words in appeal_parts(payer):
            assert (words in shown) == case.appeal, (fmt, words)
        for words in deadline_parts(payer, case.expedited):
            assert (words in shown) == case.deadline, (fmt, words)
        # without the payer's configuration, none of it: nothing is made up
        bare = render_notice(determination, fmt, replace(context, payer=None))
        bare_shown = visible(bare) if fmt == "html" else bare
        for words in [*appeal_parts(payer), *contact_parts(payer), *deadline_parts(payer, False),
                      *deadline_parts(payer, True)]:  # fmt: skip
            assert words not in bare_shown, (fmt, words)
        assert "appeal" not in bare_shown.lower()
        assert "A decision is due" not in bare_shown


@pytest.mark.parametrize(
    "name", ["approved for less than requested", "approved for less than requested by a pharmacist"]
)
def test_a_cut_cites_the_limit_and_its_basis(catalog: Catalog, name: str) -> None:
    """The notice of a quantity cut, in both formats: the limit's section with
    the policy's words and the plan's reading of them (read from the policy,
    whatever its current wording), approved against requested with unit and
    period, what to do next; and, without the payer's configuration, the
    same cut with no appeal rights made up."""
    determination, context, package = noticed(catalog, CASES[name])
    limits = package.policy.quantity_limits
    assert determination.quantity is not None and determination.quantity.modified
    assert limits is not None and limits.ruling
    for fmt in FORMATS:
        rendered = render_notice(determination, fmt, context)
        shown = visible(rendered) if fmt == "html" else rendered
        section = f"Section QL: {limits.text}" if fmt == "html" else f"  - QL: {limits.text}"
        for words in (
            section,
            f"How the plan reads it: {limits.ruling}",
            "168 tablets per 28 days, not the 180 tablets requested",
            "This is an adverse determination",
            "Quantity approved: 168 tablets per 28 days.",
            "Quantity requested: 180 tablets per 28 days.",
            "180 requested, limit 168 per 28 days",
            "information that supports the higher quantity",
            *(s.deadline for s in PAYERS["WHA"].appeals.steps),
        ):
            assert words in shown, (fmt, words)
        bare = render_notice(determination, fmt, replace(context, payer=None))
        bare_shown = visible(bare) if fmt == "html" else bare
        assert "This is an adverse determination" in bare_shown
        assert "information that supports the higher quantity" in bare_shown
        assert "appeal" not in bare_shown.lower()
    page = render_notice(determination, "html", context)
    assert 'class="decision approved modified"' in page
    assert '<h2 id="next">What you can do</h2>' in page


@pytest.mark.parametrize(
    ("name", "payer", "received", "shown"),
    [
        ("approved", "MN-DHS", "2026-11-24T14:05:00Z", "November 24, 2026, 08:05 CST"),
        # daylight time in summer
        ("approved", "MN-DHS", "2026-07-01T14:05:00Z", "July 1, 2026, 09:05 CDT"),
        ("awaiting a pharmacist", "EOCCO", "2026-07-01T02:30:00Z", "June 30, 2026, 19:30 PDT"),
        # a payer without a file: UTC, said so
        ("approved", None, "2026-11-24T14:05:00Z", "November 24, 2026, 14:05 UTC"),
    ],
)
def test_times_are_in_the_payers_zone(
    catalog: Catalog, name: str, payer: str | None, received: str, shown: str
) -> None:
    case = CASES[name]
    determination, context, _ = noticed(catalog, case)
    decided = received if case.decided else None
    context = replace(context, received=received, decided=decided,
                      payer=PAYERS[payer] if payer else None)  # fmt: skip
    text = render_notice(determination, "text", context)
    page = visible(render_notice(determination, "html", context))
    assert f"  Received: {shown}\n" in text and shown in page
    if decided:
        assert f"  Decided: {shown}\n" in text


def test_a_notice_without_context_still_renders(catalog: Catalog) -> None:
    """The CLI's `dtr score --format text|html`: the determination alone."""
    case = CASES["denied over the quantity limit"]
    determination, _, _ = noticed(catalog, case)
    text = render_notice(determination)
    assert "DECISION: Denied — criteria not met" in text
    assert f"      Limit 66 per 28 days (capsules and tablets: {CO_PACK})" in text
    assert "Reference number" not in text and "appeal" not in text.lower()
    assert "<h1>" in render_notice(determination, "html")


def test_the_html_notice_is_self_contained_and_printable(catalog: Catalog) -> None:
    determination, context, _ = noticed(catalog, CASES["denied by a pharmacist"])
    page = render_notice(determination, "html", context)
    assert page.count("<h1>") == 1 and "<h2" in page and "<h3>" in page
    # nothing loaded from elsewhere (the content security policy allows none);
    # the one link is the empty icon, so the browser asks for no favicon
    assert page.count("<link") == 1 and '<link rel="icon" href="data:,">' in page
    for loads in ("<script", "<img", "src=", "@import", "url("):
        assert loads not in page, loads
    assert 'name="viewport"' in page and "@media print" in page and "@page" in page
    assert "@media (max-width: 30rem)" in page  # one column on a 360 px screen


def test_answers_are_escaped_in_html(catalog: Catalog) -> None:
    determination, context, _ = noticed(catalog, CASES["denied by a pharmacist"])
    determination = replace(determination, rationale="<script>alert(1)</script>")
    page = render_notice(determination, "html", context)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_pdf_notice(catalog: Catalog) -> None:
    determination, context, _ = noticed(catalog, CASES["denied by a pharmacist"])
    pdf = render_notice_pdf(determination, context)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1024


def test_the_service_serves_the_notice_in_three_formats(catalog: Catalog, tmp_path: Path) -> None:
    """The stored record gives the context: reference, dates, member,
    prescriber, the answers, and the payer's configuration."""
    app = create_app(
        Settings(database=str(tmp_path / "notices.sqlite3")), catalog=catalog, clock=lambda: AS_OF
    )
    client = authorize(TestClient(app))
    package = package_for(catalog, "eocco329", "initial")
    sent = {}
    for name in ("approved", "over"):
        case = CASES["denied over the quantity limit"]
        if name == "approved":
            case = replace(case, change={})
        reply = client.post(
            "/QuestionnaireResponse/$evaluate",
            content=json.dumps(request_response(package, case)),
            headers={"content-type": "application/fhir+json"},
        )
        assert reply.status_code == 201, reply.text
        sent[name] = reply.json()["id"]

    rid = sent["approved"]
    page = client.get(f"/determinations/{rid}/notice")
    assert page.headers["content-type"].startswith("text/html")
    shown = visible(page.text)
    # the short reference read out on the phone, the record's id beside it
    reference = client.get(f"/determinations/{rid}").json()["reference"]
    for words in ("Jane Example (member ID EX123456)", f"Reference number {reference}",
                  f"Record {rid}", f"Give the reference number {reference} when you call",
                  "Authorized from November 24, 2026 through May 23, 2027 (6 months).",
                  PAYERS["EOCCO"].contact.instructions):  # fmt: skip
        assert words in shown, words
    pdf = client.get(f"/determinations/{rid}/notice", params={"format": "pdf"})
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == f'inline; filename="notice-{rid}.pdf"'
    assert pdf.content.startswith(b"%PDF") and len(pdf.content) > 1024

    # EOCCO's pharmacists decide its denials: with one while it waits, due
    # 24 hours after receipt
    text = client.get(f"/determinations/{sent['over']}/notice", params={"format": "text"}).text
    assert "DECISION: Pended — a pharmacist is reviewing this request" in text
    assert "A decision is due by" in text and PAYERS["EOCCO"].deadlines.standard.citation in text
    assert "90 requested, limit 66 per 28 days" in text
    # in Oregon's time (EOCCO's time_zone), Pacific standard or daylight
    assert re.search(r"A decision is due by \w+ \d{1,2}, \d{4}, \d\d:\d\d P[SD]T", text), text
    assert re.search(r"Received: \w+ \d{1,2}, \d{4}, \d\d:\d\d P[SD]T\n", text), text
    assert " UTC" not in text


NOT_EACH = "The policy requires each of these"


@pytest.mark.parametrize(
    ("name", "shown", "never"),
    [
        (
            "denied, no alternative met",
            [
                "Criteria not met",
                "One of these is required (section Melanoma.4), and none was met.",
                "Section Melanoma.4.B: Continuation of prior therapy",
                "Section Melanoma.4.A.2: Trial and failure",
            ],
            [NOT_EACH, "What to send"],
        ),
        (
            "pended for a document",
            [
                "What to send Send this document, attached to the form: KRAS mutation test report",
                "Send what is asked by December 8, 2026",
                PAYERS["EOCCO"].missing_information.if_nothing,  # type: ignore[union-attr]
            ],
            ["Answer these questions", "attach it"],
        ),
    ],
)
def test_what_a_member_reads_in_html_and_pdf(
    catalog: Catalog, name: str, shown: list[str], never: list[str]
) -> None:
    """The words of the text notice, in the HTML page (and so the PDF
    printed from it): alternatives of which one was needed, a document asked
    for as a document with the date to send it by and what if it does not
    come."""
    determination, context, _ = noticed(catalog, CASES[name])
    page = visible(render_notice(determination, "html", context))
    for words in shown:
        assert words in page, words
    for words in never:
        assert words not in page, words
    assert render_notice_pdf(determination, context).startswith(b"%PDF")


def test_a_pend_without_the_payers_days_says_what_the_pend_means(catalog: Catalog) -> None:
    """Without the payer's configuration (``dtr score --format text``) no date
    is made up: the notice says what waiting means."""
    determination, context, _ = noticed(catalog, CASES["pended for a document"])
    for fmt in FORMATS:
        rendered = render_notice(determination, fmt, replace(context, payer=None))
        shown = visible(rendered) if fmt == "html" else rendered
        assert "Until it comes, the request stays pended: nothing is decided" in shown
        assert "Send what is asked by" not in shown
        assert "KRAS mutation test report" in shown
