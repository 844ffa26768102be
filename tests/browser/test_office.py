"""The portal as a prescriber's office works in it, in Chromium: the patient
and the prescriber named (and checked) before the form opens, the birth
date answering the form's birth-date question, a draft saved on the server
and taken up again after a reload, one determination however often Submit
is pressed, the result at the top in plain words with its notice inline,
the missing questions highlighted, the history, the printed page, a phone's
360 px screen, and another policy chosen while a form is open."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from review.request import NPI_SYSTEM
from scoring.fill import fill
from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import ROOT, VIEWPORT, Problems, Service, Sessions, watched
from tests.browser.test_lforms_e2e import (
    PATIENT,
    SCREENSHOTS_ENV,
    Patient,
    Portal,
    answered,
    identify,
    load_form,
    scoring_cases,
    sel,
    settled,
    us_date,
)
from tests.support.cases import base_answers, bundled_catalog, package_for

QID = "eocco329-initial"
COMPLETE = scoring_cases()["eocco329", "every initial criterion met"]["answers"]
# answered before the draft is saved; the rest after it is taken up again
FIRST = ("prescriber_oncologist", "combination_therapy", "diagnosis")


def a_patient(**changes: Any) -> Patient:
    """A member of its own, so the history and counts are this test's."""
    member = f"m-{uuid.uuid4().hex[:10]}"
    return replace(PATIENT, member_id=member, birth_date=str(COMPLETE["birth_date"]), **changes)


def fetched(page: Page, path: str) -> Any:
    """A GET made by the page itself, with its session."""
    return page.evaluate(
        "(path) => fetch(path, {headers: {Accept: 'application/json'}}).then((r) => r.json())",
        path,
    )


def submissions_of(page: Page, patient: Patient) -> list[dict[str, Any]]:
    every = fetched(page, "/submissions")["submissions"]
    return [s for s in every if s["memberId"] == patient.member_id]


def lists_ready(page: Page) -> None:
    deadline = 100
    while page.evaluate("window.listsStatus") != "ready" and deadline:
        page.wait_for_timeout(50)
        deadline -= 1
    assert page.evaluate("window.listsStatus") == "ready"


def no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.body.scrollWidth]"
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[1], widths


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True, animations="disabled")


def test_the_form_opens_only_for_a_named_patient_and_a_valid_npi(
    page: Page, service: Service
) -> None:
    page.goto(f"{service.url}/?q={QID}")
    expect(page.locator("#questionnaire")).to_have_value(QID)
    page.click("#load")
    for field in ("patient-name", "member-id", "birth-date", "prescriber-name", "npi"):
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
        expect(page.locator(f"#{field}-problem")).not_to_be_empty()
    expect(page.locator("#formContainer lhc-item")).to_have_count(0)
    expect(page.locator("#submit")).to_be_disabled()

    # ten digits, but the check digit is wrong
    identify(page, replace(PATIENT, npi="1234567890"))
    page.click("#load")
    expect(page.locator("#npi-problem")).to_contain_text("check digit")
    expect(page.locator("#formContainer lhc-item")).to_have_count(0)
    for field in ("patient-name", "member-id", "birth-date", "prescriber-name"):
        expect(page.locator(f"#{field}")).not_to_have_attribute("aria-invalid", "true")

    page.fill("#npi", PATIENT.npi)
    page.click("#load")
    assert settled(page, {"ready", "error"}) == "ready"
    expect(page.locator("#npi")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#submit")).to_be_enabled()


def test_the_birth_date_answers_the_forms_birth_date_question(page: Page, service: Service) -> None:
    patient = a_patient()
    portal = Portal(page, service, load_form(service, QID)).open(patient)
    item = portal.form.items["I.A.birth_date"]
    field = page.locator(sel(item.element_id) + " input")
    # one source: read-only in the form, the patient's birth date
    expect(field).to_be_disabled()
    expect(field).to_have_value(us_date(patient.birth_date))
    page.fill("#birth-date", "1970-02-03")
    page.locator("#birth-date").press("Tab")
    expect(field).to_have_value(us_date("1970-02-03"))
    assert settled(page, {"ready", "error"}) == "ready"
    exported = portal.export()
    assert answered(exported)[("I", "I.A", "I.A.birth_date")] == [{"valueDate": "1970-02-03"}]


def test_a_draft_is_kept_taken_up_after_a_reload_and_submitted_once(
    page: Page, service: Service, tmp_path: Path
) -> None:
    patient = a_patient(expedited=True)
    form = load_form(service, QID)
    portal = Portal(page, service, form).open(patient)
    portal.fill({k: COMPLETE[k] for k in FIRST})
    before = answered(portal.export())

    page.click("#save-draft")
    deadline = 100
    while page.evaluate("window.draftStatus") != "saved" and deadline:
        page.wait_for_timeout(50)
        deadline -= 1
    assert page.evaluate("window.draftStatus") == "saved"
    expect(page).to_have_url(re.compile(r"/\?draft=[0-9a-f]{32}$"))
    draft_id = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["draft"][0]
    entry = page.locator(f'#drafts-list [data-draft="{draft_id}"]')
    expect(entry).to_contain_text(patient.name)

    # a reload, a fresh page: the draft is on the server, in the list
    page.goto(f"{service.url}/")
    lists_ready(page)
    expect(page.locator("#formContainer lhc-item")).to_have_count(0)
    page.click(f'#drafts-list [data-draft="{draft_id}"] a.open-draft')
    reopened = Portal(page, service, form).ready()
    for field, value in (
        ("#patient-name", patient.name),
        ("#member-id", patient.member_id),
        ("#birth-date", patient.birth_date),
        ("#prescriber-name", patient.prescriber),
        ("#npi", patient.npi),
    ):
        expect(page.locator(field)).to_have_value(value)
    expect(page.locator("#expedited")).to_be_checked()
    assert answered(reopened.export()) == before  # every answer kept

    # the reload of the draft's own address opens it too
    page.reload()
    reopened = Portal(page, service, form).ready()
    assert answered(reopened.export()) == before
    reopened.values = {form.link_id(k): COMPLETE[k] for k in FIRST}
    reopened.fill({k: v for k, v in COMPLETE.items() if k not in FIRST})

    page.dblclick("#submit")
    assert settled(page, {"scored", "refused", "error"}) == "scored"
    determination = page.evaluate("window.lastDetermination")
    assert determination["outcome"] == "approved"
    # pressed twice: one determination
    assert len(submissions_of(page, patient)) == 1
    # and pressed again on the same answers: the same one
    page.click("#submit")
    assert settled(page, {"scored", "refused", "error"}) == "scored"
    assert page.evaluate("window.lastDetermination")["id"] == determination["id"]
    (submitted,) = submissions_of(page, patient)
    assert submitted["id"] == determination["id"]
    assert submitted["priority"] == "expedited"
    response = page.evaluate("window.lastResponse")
    assert response["subject"] == patient.subject()
    assert response["author"] == {
        "display": patient.prescriber,
        "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": patient.npi},
    }
    assert {"url": "https://pa-dtr.example.org/fhir/StructureDefinition/request-priority",
            "valueCode": "expedited"} in response["extension"]  # fmt: skip
    # submitted: the draft is gone
    assert draft_id not in [d["id"] for d in fetched(page, "/drafts")["drafts"]]
    expect(page.locator(f'#drafts-list [data-draft="{draft_id}"]')).to_have_count(0)

    # the result at the top, in plain words, with the notice in the page
    result = page.locator("#result")
    expect(result).to_be_visible()
    expect(result).to_be_focused()
    assert page.evaluate("document.getElementById('result').getBoundingClientRect().top") < 100
    expect(page.locator("#outcome")).to_have_text(
        re.compile(r"^Approved through \d{4}-\d{2}-\d{2}: \d+ capsules and tablets per 28 days$")
    )
    assert determination["authorization"]["end"] in page.locator("#outcome").inner_text()
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Prior authorization decision")
    expect(notice).to_contain_text(patient.name)
    box = notice.bounding_box()
    assert box is not None and box["height"] > 600  # all of it, not a frame
    expect(page.locator("#result iframe, #result pre")).to_have_count(0)
    assert '"outcome"' not in result.inner_text()  # no determination JSON
    expect(page.locator("#link-claim")).to_have_attribute(
        "href", f"/ClaimResponse/{determination['id']}"
    )
    screenshot(page, tmp_path, "office-result")

    # the history lists it, linking to its notice
    row = page.locator(f'#history-list [data-submission="{determination["id"]}"]')
    expect(row).to_contain_text(patient.name)
    expect(row).to_contain_text("Approved through")
    expect(row.get_by_role("link", name="Notice")).to_have_attribute(
        "href", f"/determinations/{determination['id']}/notice"
    )
    page.goto(f"{service.url}/?view=history")
    expect(page.locator("#history")).to_be_focused()
    expect(row).to_be_visible()


def sent_from_the_portal(page: Page, member: str, name: str, rid: str) -> dict[str, Any]:
    """A request the office sends from the portal's page (its session and
    CSRF token), for a member of the test's own: its id and reference."""
    catalog = bundled_catalog()
    answers = base_answers("eocco329", "initial_met")
    response = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    response["subject"] = {"reference": f"Patient/{member}", "display": name,
                           "identifier": {"value": member}}  # fmt: skip
    response["author"] = {"display": "Dr. Sam Sample",
                          "identifier": {"system": NPI_SYSTEM, "value": PATIENT.npi}}  # fmt: skip
    sent = page.evaluate(
        """async (body) => {
          const token = document.querySelector('meta[name="csrf-token"]').content;
          const reply = await fetch("/QuestionnaireResponse/$evaluate", {
            method: "POST", body,
            headers: {"Content-Type": "application/fhir+json", "X-CSRF-Token": token},
          });
          return {status: reply.status, body: await reply.json()};
        }""",
        json.dumps(response),
    )
    assert sent["status"] == 201, sent
    determination = fetched(page, f"/determinations/{sent['body']['id']}")
    return {"id": sent["body"]["id"], "reference": determination["reference"]}


def test_the_history_is_searched_by_member_id_and_by_reference(
    browser: Browser, sessions: Sessions, service: Service, page_problems: Problems
) -> None:
    """The office finds a request in its history by the member id and by
    the short reference number, typed as someone reads it out; a mistyped
    reference is refused by its check character. (axe is injected: this
    context bypasses the page's CSP.)"""
    context = browser.new_context(
        viewport=VIEWPORT, storage_state=sessions.state(service), bypass_csp=True
    )
    context.set_default_timeout(10_000)
    try:
        page = watched(context, page_problems)
        page.goto(f"{service.url}/")
        tag = uuid.uuid4().hex[:8].upper()
        ada = sent_from_the_portal(page, f"H-ADA-{tag}", "Ada Historical", f"history-ada-{tag}")
        bob = sent_from_the_portal(page, f"H-BOB-{tag}", "Bob Historical", f"history-bob-{tag}")
        page.goto(f"{service.url}/?view=history")
        lists_ready(page)
        entries = page.locator("#history-list li")
        search = page.locator("#history-search")

        page.fill("#h-member", f"h-ada-{tag.lower()}")  # typed in any case
        search.get_by_role("button", name="Search").click()
        expect(entries).to_have_count(1)
        expect(entries.first).to_have_attribute("data-submission", ada["id"])
        expect(entries.first).to_contain_text("Ada Historical")
        expect(entries.first).to_contain_text(ada["reference"])
        # received, in EOCCO's zone (Pacific) as the notices say it
        expect(entries.first).to_contain_text(re.compile(r"\w+ \d{1,2}, \d{4}, \d\d:\d\d P[SD]T"))
        expect(page.locator("#history-count")).to_have_text("1\u20131 of 1 matching the search")
        assert_accessible(page, "the history searched", every_impact=True)

        # the reference as someone reads it out: small letters, no hyphen
        search.get_by_role("button", name="Clear").click()
        page.fill("#h-reference", bob["reference"].replace("-", "").lower())
        search.get_by_role("button", name="Search").click()
        expect(entries).to_have_count(1)
        expect(entries.first).to_have_attribute("data-submission", bob["id"])
        expect(entries.first).to_contain_text("Bob Historical")

        # one character wrong: the check character refuses it
        wrong = "Z" if bob["reference"][0] != "Z" else "Y"
        page.fill("#h-reference", wrong + bob["reference"][1:])
        search.get_by_role("button", name="Search").click()
        expect(page.locator("#history-count")).to_contain_text("not a reference number")
        assert_accessible(page, "the history with a refused search", every_impact=True)
    finally:
        context.close()
    # the browser logs the refusal's 400 as it logs any: that one is expected
    refused = f"status of 400 (Bad Request) ({service.url}/submissions?reference={wrong}"
    assert [e for e in page_problems.errors if refused not in e] == [], page_problems.errors


def test_printing_shows_the_result_and_its_notice_without_the_controls(
    page: Page, service: Service, tmp_path: Path
) -> None:
    portal = opened_for(page, service, a_patient())
    portal.fill(COMPLETE)
    portal.submit()
    expect(page.locator("#print")).to_be_visible()
    page.emulate_media(media="print")
    try:
        for control in ("#print", "#submit", "#save-draft", "#picker", "#patient-fields",
                        "#signout", "#drafts", "#history", "#formContainer"):  # fmt: skip
            expect(page.locator(control)).to_be_hidden()
        expect(page.locator("#outcome")).to_be_visible()
        expect(page.locator("#notice")).to_contain_text("Prior authorization decision")
        expect(page.locator("#notice")).to_be_visible()
        screenshot(page, tmp_path, "office-print")
    finally:
        page.emulate_media(media="screen")
    expect(page.locator("#submit")).to_be_visible()


def opened_for(page: Page, service: Service, patient: Patient, qid: str = QID) -> Portal:
    return Portal(page, service, load_form(service, qid)).open(patient)


def test_the_missing_questions_are_highlighted_in_the_form(page: Page, service: Service) -> None:
    portal = opened_for(page, service, a_patient())
    portal.fill({k: v for k, v in COMPLETE.items() if k != "combination_therapy"})
    determination = portal.submit()
    assert determination["missingQuestions"] == ["I.C.combination_therapy"]
    expect(page.locator("#outcome")).to_have_text("Pended: answer the highlighted questions")
    item = portal.item("I.C.combination_therapy")
    expect(item).to_have_class(re.compile(r"\bmissing-question\b"))
    expect(page.locator("#formContainer .missing-question")).to_have_count(1)
    text = portal.form.items["I.C.combination_therapy"].text
    expect(page.locator("#missing-list")).to_contain_text(text[:40])
    expect(page.locator("#complete-later")).to_be_visible()
    # the note beside the question jumps to it
    page.locator("#missing-list a").first.click()
    expect(item).to_be_in_viewport()


def test_a_phone_screen_needs_no_sideways_scrolling(
    page: Page, service: Service, tmp_path: Path
) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{service.url}/?q={QID}")
    no_horizontal_scroll(page)
    portal = Portal(page, service, load_form(service, QID)).start(a_patient())
    no_horizontal_scroll(page)
    portal.fill({"diagnosis": "I.D"})
    no_horizontal_scroll(page)
    portal.submit()
    expect(page.locator("#notice")).to_contain_text("Prior authorization decision")
    no_horizontal_scroll(page)
    screenshot(page, tmp_path, "office-360")


def test_choosing_another_policy_opens_its_form(page: Page, service: Service) -> None:
    patient = a_patient()
    eocco = load_form(service, QID)
    Portal(page, service, eocco).open(patient)
    mekinist = load_form(service, "mn-dhs-mekinist-initial")
    page.select_option("#questionnaire", mekinist.id)
    portal = Portal(page, service, mekinist).ready()
    first = next(i for i in mekinist.questions() if not i.conditional)
    expect(portal.item(first.link_id)).to_be_visible()
    expect(page.locator(sel("item-" + eocco.items["I.D.diagnosis"].element_id))).to_have_count(0)
    portal.fill({"indication": "Melanoma"})
    determination = portal.submit()  # scored against the form on the page, not refused
    assert determination["questionnaire"].startswith(mekinist.questionnaire["url"] + "|")

    # the patient no longer named: the form is cleared, nothing to submit
    page.fill("#patient-name", "")
    page.select_option("#questionnaire", QID)
    expect(page.locator("#formContainer lhc-item")).to_have_count(0)
    expect(page.locator("#submit")).to_be_disabled()
    expect(page.locator("#status")).to_contain_text("open its form")


def test_the_office_pages_pass_the_accessibility_rules(
    browser: Browser, sessions: Sessions, service: Service, page_problems: Problems
) -> None:
    """axe-core, no serious or critical violation: the patient and prescriber
    fields, the form, a pended result with its highlighted questions, the
    history. (axe is injected: this context bypasses the page's CSP.)"""
    context = browser.new_context(
        viewport=VIEWPORT, storage_state=sessions.state(service), bypass_csp=True
    )
    context.set_default_timeout(10_000)
    try:
        page = watched(context, page_problems)
        page.goto(f"{service.url}/?q={QID}")
        assert_accessible(page, "the portal before a form is opened")
        page.click("#load")  # nothing named: every field says what it needs
        expect(page.locator("#npi-problem")).not_to_be_empty()
        assert_accessible(page, "the fields with their problems")
        portal = Portal(page, service, load_form(service, QID)).start(a_patient())
        assert_accessible(page, "the form")
        portal.fill({"diagnosis": "I.D"})
        portal.submit()
        expect(page.locator("#formContainer .missing-question").first).to_be_visible()
        assert_accessible(page, "a pended result")
    finally:
        context.close()
    assert not page_problems.errors, page_problems.errors


def test_a_lapsed_sign_in_loses_no_work(
    page: Page, service: Service, page_problems: Problems
) -> None:
    """The sign-in lapses while the office fills the form: Submit sends
    nothing and says so beside the buttons, with a way to sign in again;
    after signing in, the answers come back and the request is submitted
    once."""
    from tests.browser.conftest import USERNAME, submit_sign_in
    from tests.support.callers import PASSWORD

    patient = a_patient()
    form = load_form(service, QID)
    portal = Portal(page, service, form).open(patient)
    portal.fill(COMPLETE)
    before = answered(portal.export())
    kept = "sessionStorage.getItem('dtr.portal.unsent')"
    for _ in range(100):  # kept a moment after the last change
        if page.evaluate(kept) is not None:
            break
        page.wait_for_timeout(50)
    assert page.evaluate(kept) is not None

    page.context.clear_cookies()  # the session is gone, as after its time
    page.click("#submit")
    assert settled(page, {"signed-out", "scored", "refused", "error"}) == "signed-out"
    prompt = page.locator("#session-ended")
    expect(prompt).to_be_visible()
    expect(prompt).to_contain_text("nothing was sent")

    prompt.get_by_role("link", name="sign in again").click()
    submit_sign_in(page, USERNAME, PASSWORD)
    expect(page).to_have_url(re.compile(r"/(\?draft=[0-9a-f]{32})?$"))
    restored = Portal(page, service, form).ready()
    assert answered(restored.export()) == before  # every answer back
    expect(page.locator("#patient-name")).to_have_value(patient.name)
    expect(page.locator("#npi")).to_have_value(patient.npi)

    page.click("#submit")
    assert settled(page, {"scored", "refused", "error"}) == "scored"
    assert page.evaluate("window.lastDetermination")["outcome"] == "approved"
    assert len(submissions_of(page, patient)) == 1
    assert page.evaluate(kept) is None
    # the refused calls of the lapsed session are what the browser logs for a 401
    page_problems.errors[:] = [e for e in page_problems.errors if "401" not in e]
