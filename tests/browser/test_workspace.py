"""The pharmacist's workspace in Chromium: the queue searched by member id
and by the short reference number, the navigation between the queue, my
pends, decided and the metrics, every review page free of axe-core
violations of any impact, and the case and metrics pages at 360 px wide
without sideways scrolling."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import VIEWPORT, Problems, Service, submit_sign_in, watched
from tests.browser.test_review_e2e import over_the_limit, pharmacist
from tests.support.callers import PASSWORD
from tests.support.cases import bundled_catalog

NARROW: ViewportSize = {"width": 360, "height": 740}


def request_for(service: Service, member: str, name: str, rid: str) -> dict[str, Any]:
    """A request a pharmacist decides, for a member of the test's own."""
    response = over_the_limit(bundled_catalog(), rid)
    response["subject"] = {"reference": f"Patient/{member}", "display": name,
                           "identifier": {"value": member}}  # fmt: skip
    status, claim = service.post_fhir("/QuestionnaireResponse/$evaluate", response)
    assert status == 201, claim
    determination = service.get_json(f"/determinations/{claim['id']}")
    return {"id": claim["id"], "reference": determination["reference"]}


def sideways(page: Page) -> dict[str, int]:
    return dict(
        page.evaluate(
            "() => ({scroll: document.scrollingElement.scrollWidth,"
            " client: document.scrollingElement.clientWidth})"
        )
    )


def test_the_queue_is_searched_by_member_id_and_by_reference(
    browser: Browser, service: Service, page_problems: Problems
) -> None:
    pharmacist(service)
    ada = request_for(service, "WS-ADA-1", "Ada Searchable", "workspace-ada")
    bob = request_for(service, "WS-BOB-2", "Bob Searchable", "workspace-bob")
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    context.set_default_timeout(10_000)
    try:
        page = watched(context, page_problems)
        page.goto(f"{service.url}/review")
        submit_sign_in(page, "pharmacist", PASSWORD)
        expect(page.locator("#review-nav a[aria-current=page]")).to_have_text("Queue")

        page.get_by_label("Member id").fill("ws-ada-1")
        page.get_by_role("button", name="Search").click()
        rows = page.locator("#queue tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Ada Searchable")
        expect(rows.first).to_contain_text(ada["reference"])
        expect(page.locator("#queue caption")).to_contain_text("1 of 1 request matching")
        assert_accessible(page, "the queue searched", every_impact=True)

        # the reference as someone reads it out: small letters, no hyphen
        page.get_by_role("link", name="Clear").click()
        page.get_by_label("Reference").fill(bob["reference"].replace("-", "").lower())
        page.get_by_role("button", name="Search").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Bob Searchable")

        # one character wrong: the check character refuses it
        wrong = "Z" if bob["reference"][0] != "Z" else "Y"
        page.get_by_label("Reference").fill(wrong + bob["reference"][1:])
        page.get_by_role("button", name="Search").click()
        expect(page.locator("#problem")).to_contain_text("not a reference number")
        assert_accessible(page, "the queue with a refused search", every_impact=True)

        # the case, by its short reference, with the navigation
        page.goto(f"{service.url}/review/{ada['id']}")
        expect(page.locator("#reference")).to_have_text(ada["reference"])
        expect(page.locator("main")).to_have_count(1)
        assert_accessible(page, "a case", every_impact=True)

        # pended by this pharmacist: in my pends and decided, not in the queue
        page.get_by_label("Pend: ask the office for something").check()
        page.fill("#request", "the chart note on the dose")
        page.fill("#rationale", "The dose needs the chart note.")
        page.click("#decide button[type=submit]")
        expect(page.locator("#decided")).to_contain_text("pended")
        expect(page.locator("#reviewer")).to_have_text("Pharmacist")  # the name, not the user
        assert_accessible(page, "a decided case", every_impact=True)
        page.get_by_role("link", name="My pends").click()
        expect(page.locator("#queue tbody tr", has_text="Ada Searchable")).to_have_count(1)
        assert_accessible(page, "my pends", every_impact=True)
        page.get_by_role("link", name="Decided").click()
        expect(page.locator("#queue tbody tr", has_text="Ada Searchable")).to_have_count(1)
        assert_accessible(page, "decided", every_impact=True)
        page.get_by_role("link", name="Queue").click()
        expect(page.locator("#queue tbody tr", has_text="Ada Searchable")).to_have_count(0)
        page.get_by_role("link", name="Metrics").click()
        expect(page.locator("#review-nav a[aria-current=page]")).to_have_text("Metrics")
        assert_accessible(page, "the metrics page", every_impact=True)
    finally:
        context.close()
    assert not page_problems.errors, page_problems.errors


def test_the_case_and_metrics_pages_fit_360_px(
    browser: Browser, service: Service, page_problems: Problems
) -> None:
    pharmacist(service)
    case = request_for(service, "WS-NARROW-WITH-A-LONG-MEMBER-ID-0001", "Narrow Screen", "narrow")
    context = browser.new_context(viewport=NARROW, is_mobile=True, bypass_csp=True)
    context.set_default_timeout(10_000)
    try:
        page = watched(context, page_problems)
        page.goto(f"{service.url}/review/{case['id']}")
        submit_sign_in(page, "pharmacist", PASSWORD)
        expect(page.locator("#reference")).to_have_text(case["reference"])
        for path in (f"/review/{case['id']}", "/metrics/chart", "/review", "/review?view=decided"):
            page.goto(f"{service.url}{path}")
            page.wait_for_load_state("load")
            width = sideways(page)
            assert width["client"] <= NARROW["width"], (path, width)  # laid out at 360 px
            assert width["scroll"] <= width["client"], (path, width)
    finally:
        context.close()
    assert not page_problems.errors, page_problems.errors
