"""The pharmacist's flow in Chromium: sign in, the queue, a case, the
decision, the notice — each page checked with axe-core — and the pictures
the README and docs/portal.md show (``DTR_SCREENSHOTS=docs/screenshots``)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Browser, expect

from qpackage.catalog import Catalog
from review.request import NPI_SYSTEM
from scoring.fill import fill
from service.store import open_store
from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import ROOT, VIEWPORT, Problems, Service, submit_sign_in, watched
from tests.support.callers import PASSWORD, add_user
from tests.support.cases import base_answers, bundled_catalog, package_for


def over_the_limit(catalog: Catalog, rid: str) -> dict[str, object]:
    answers = {**base_answers("eocco329", "initial_met"), "requested_quantity": 90}
    response = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    response["subject"] = {"reference": "Patient/EX123456", "display": "Jane Example",
                           "identifier": {"value": "EX123456"}}  # fmt: skip
    response["author"] = {"display": "Dr. Sam Sample",
                          "identifier": {"system": NPI_SYSTEM, "value": "1234567893"}}  # fmt: skip
    return response


def test_a_pharmacist_decides_a_recommended_denial(
    browser: Browser, service: Service, page_problems: Problems, tmp_path: Path
) -> None:
    store = open_store(str(service.log.parent / "audit.sqlite3"))
    try:
        add_user(store, "pharmacist", "pharmacist", None)
    finally:
        store.close()
    status, claim = service.post_fhir(
        "/QuestionnaireResponse/$evaluate", over_the_limit(bundled_catalog(), "browser-review")
    )
    assert status == 201 and claim["outcome"] == "queued", claim
    rid = claim["id"]
    shots = Path(os.environ.get("DTR_SCREENSHOTS") or tmp_path)
    shots = shots if shots.is_absolute() else ROOT / shots
    shots.mkdir(parents=True, exist_ok=True)

    # axe is injected into the pages: this context bypasses their CSP
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    context.set_default_timeout(10_000)
    try:
        page = watched(context, page_problems)
        page.goto(f"{service.url}/review")
        assert_accessible(page, "the sign-in page")
        submit_sign_in(page, "pharmacist", PASSWORD)
        expect(page).to_have_url(f"{service.url}/review")
        row = page.locator("#queue tbody tr", has_text="Jane Example")
        expect(row).to_contain_text("denied")
        expect(row).to_contain_text("h")  # the time left
        assert_accessible(page, "the review queue")
        page.screenshot(path=str(shots / "review-queue.png"), full_page=True, animations="disabled")

        row.get_by_role("link", name="Open case").click()
        expect(page).to_have_url(f"{service.url}/review/{rid}")
        expect(page.locator("#recommended")).to_have_text("denied")
        expect(page.locator("#criteria tr.status-not-met")).to_contain_text("QL")
        expect(page.locator("#answers")).to_contain_text("90")
        assert_accessible(page, "a review case")
        page.screenshot(path=str(shots / "review-case.png"), full_page=True, animations="disabled")

        page.get_by_label("Deny, for the sections checked below").check()
        expect(page.locator("#reasons input[value=QL]")).to_be_checked()  # as recommended
        page.fill(
            "#rationale", "90 a month is above the labeled dose; the chart shows no escalation."
        )
        page.click("#decide button[type=submit]")
        expect(page.locator("#decided")).to_contain_text("denied")
        expect(page.locator("#trail")).to_contain_text("deny: pended → denied")

        page.click("#notice-link")
        expect(page.locator("body")).to_contain_text("90 a month is above the labeled dose")
        expect(page.locator("body")).to_contain_text("State fair hearing")
        assert_accessible(page, "the notice")
        page.screenshot(path=str(shots / "notice.png"), full_page=True, animations="disabled")

        # the plan's metrics: the decision just made is counted
        page.goto(f"{service.url}/metrics/chart")
        expect(page.locator("svg").first).to_be_visible()
        expect(page.locator("body")).to_contain_text("QL")  # a denial reason by section
        assert_accessible(page, "the metrics page")
    finally:
        context.close()
    assert not page_problems.errors, page_problems.errors
