"""The office replies to a pharmacist's pend in Chromium, and the same case
comes back to the pharmacist: the office submits from the portal, the
pharmacist pends it asking for a document, the office opens the reply view
from its history (what was asked, a file input, a note), attaches the
document and sends the reply; the pharmacist's queue holds the same case,
whose page lists the document and the reply in its trail."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, FilePayload, Page, expect

from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import (
    VIEWPORT,
    Problems,
    Service,
    Sessions,
    submit_sign_in,
    watched,
)
from tests.browser.test_lforms_e2e import Portal, load_form, settled
from tests.browser.test_office import COMPLETE, QID, a_patient, lists_ready, submissions_of
from tests.browser.test_review_e2e import pharmacist
from tests.support.callers import PASSWORD

ASKED = "The oncology consult note."
CONSULT = b"%PDF-1.4\n% the oncology consult note\n%%EOF\n"


def test_the_office_replies_to_a_pend_and_the_case_returns_to_the_queue(
    page: Page, browser: Browser, service: Service, page_problems: Problems
) -> None:
    pharmacist(service)
    patient = a_patient()
    form = load_form(service, QID)
    portal = Portal(page, service, form).open(patient)
    portal.fill({**COMPLETE, "requested_quantity": 90})  # above the limit: a pharmacist's
    first = portal.submit()
    rid = first["id"]
    assert (first["outcome"], first["review"]["state"]) == ("pended", "awaiting-review")

    # the pharmacist pends it, asking for the consult note
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    try:
        review = watched(context, page_problems)
        review.goto(f"{service.url}/review/{rid}")
        submit_sign_in(review, "pharmacist", PASSWORD)
        expect(review).to_have_url(f"{service.url}/review/{rid}")
        review.get_by_label("Pend: ask the office for something").check()
        review.fill("#request", ASKED)
        review.fill("#rationale", "The chart must show the dose escalation.")
        review.click("#decide button[type=submit]")
        expect(review.locator("#decided")).to_contain_text("pended")

        # the office: its history offers a reply to the pend
        page.goto(f"{service.url}/")
        lists_ready(page)
        entry = page.locator(f'#history-list [data-submission="{rid}"]')
        expect(entry).to_contain_text(f"the pharmacist asks for {ASKED}")
        entry.get_by_role("link", name="Reply").click()
        Portal(page, service, form).ready()
        expect(page.locator("#reply")).to_be_visible()
        expect(page.locator("#reply-asked")).to_have_text(f"The pharmacist asks for: {ASKED}")
        expect(page.locator("#submit")).to_have_text("Send reply")
        consult: FilePayload = {
            "name": "consult.pdf", "mimeType": "application/pdf", "buffer": CONSULT,
        }  # fmt: skip
        page.set_input_files("#reply-documents", files=[consult])
        page.fill("#reply-note", "The consult note is attached.")
        page.click("#submit")
        assert settled(page, {"scored", "refused", "error"}) == "scored", page.locator(
            "#error"
        ).text_content()
        answered = page.evaluate("window.lastDetermination")
        assert answered["id"] == rid  # the same case, no new request
        assert answered["review"]["state"] == "awaiting-review"
        assert answered["reply"]["answers"] == ASKED
        expect(page.locator("#outcome")).to_have_text(re.compile("a pharmacist is reviewing"))

        # the pharmacist's queue holds the same case again, with the document
        review.goto(f"{service.url}/review")
        review.locator(f'a[href="/review/{rid}"]').first.click()
        expect(review).to_have_url(f"{service.url}/review/{rid}")
        expect(review.locator("#attachments")).to_contain_text("consult.pdf")
        expect(review.locator("#trail")).to_contain_text(f"answers “{ASKED}”")
        opened = context.request.get(
            f"{service.url}"
            + str(review.get_by_role("link", name="consult.pdf").get_attribute("href"))
        )
        assert opened.status == 200 and opened.body() == CONSULT
    finally:
        context.close()
    # one request in the office's history
    assert [s["id"] for s in submissions_of(page, patient)] == [rid]


def test_an_incomplete_form_asks_before_it_is_pended(
    browser: Browser, sessions: Sessions, service: Service, page_problems: Problems
) -> None:
    """Submit on a form that would pend for a missing answer lists the
    question and asks first; nothing is sent until the office submits
    anyway; the pended request reopens as a reply with the question still
    highlighted. The question asked and the reply view pass axe-core (this
    context bypasses the page's CSP to inject it)."""
    context = browser.new_context(
        viewport=VIEWPORT, storage_state=sessions.state(service), bypass_csp=True
    )
    context.set_default_timeout(10_000)
    try:
        page = watched(context, page_problems)
        check_unanswered(page, service)
    finally:
        context.close()
    assert not page_problems.errors, page_problems.errors


def check_unanswered(page: Page, service: Service) -> None:
    patient = a_patient()
    form = load_form(service, QID)
    portal = Portal(page, service, form).open(patient)
    missing = form.link_id("combination_therapy")
    portal.fill({k: v for k, v in COMPLETE.items() if k != "combination_therapy"})

    page.click("#submit")
    assert settled(page, {"scored", "refused", "error", "confirm"}) == "confirm"
    ask = page.locator("#unanswered")
    expect(ask).to_be_visible()
    expect(ask).to_contain_text("These questions are unanswered — submit anyway?")
    expect(page.locator("#unanswered-list li")).to_have_text([form.items[missing].text])
    assert_accessible(page, "the question whether to submit anyway")
    expect(portal.item(missing)).to_have_class(re.compile(r"\bmissing-question\b"))
    assert submissions_of(page, patient) == []  # nothing sent

    # answer them first: the question to answer has the focus
    page.click("#answer-first")
    expect(ask).to_be_hidden()
    assert page.evaluate("window.portalStatus") == "ready"
    assert submissions_of(page, patient) == []

    # submitted anyway: pended for that question
    page.click("#submit")
    assert settled(page, {"scored", "refused", "error", "confirm"}) == "confirm"
    page.click("#submit-anyway")
    assert settled(page, {"scored", "refused", "error"}) == "scored"
    pended = page.evaluate("window.lastDetermination")
    assert (pended["outcome"], pended["missingQuestions"]) == ("pended", [missing])
    assert len(submissions_of(page, patient)) == 1

    # reopened to answer it: the question is still highlighted
    page.click("#complete-later")
    Portal(page, service, form).ready()
    expect(page.locator("#reply")).to_be_visible()
    expect(portal.item(missing)).to_have_class(re.compile(r"\bmissing-question\b"))
    assert_accessible(page, "the reply view")
