"""The pharmacist's flow in Chromium: sign in, the queue, a case, the
decision, the notice — each page checked with axe-core — and the pictures
the README and docs/portal.md show (``DTR_SCREENSHOTS=docs/screenshots``);
a document attached to the request, opened from the case in Chromium's PDF
viewer under the document route's sandboxing CSP."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from playwright.sync_api import Browser, expect

from qpackage.catalog import Catalog
from review.request import NPI_SYSTEM
from scoring.fill import fill
from service.accounts import Accounts
from service.store import open_store
from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import ROOT, VIEWPORT, Problems, Service, submit_sign_in, watched
from tests.support.callers import PASSWORD, add_user
from tests.support.cases import base_answers, bundled_catalog, package_for


def over_the_limit(
    catalog: Catalog, rid: str, report: dict[str, str] | None = None
) -> dict[str, object]:
    answers = {**base_answers("eocco329", "initial_met"), "requested_quantity": 90}
    if report is not None:
        answers["document_i_d_2"] = report
    response = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    response["subject"] = {"reference": "Patient/EX123456", "display": "Jane Example",
                           "identifier": {"value": "EX123456"}}  # fmt: skip
    response["author"] = {"display": "Dr. Sam Sample",
                          "identifier": {"system": NPI_SYSTEM, "value": "1234567893"}}  # fmt: skip
    return response


def pharmacist(service: Service) -> None:
    """The payer's pharmacist, a user of the tests' shared service from the
    first test that needs one on."""
    store = open_store(str(service.log.parent / "audit.sqlite3"))
    try:
        if not any(u.username == "pharmacist" for u in Accounts(store).users()):
            add_user(store, "pharmacist", "pharmacist", None)
    finally:
        store.close()


def test_a_pharmacist_decides_a_recommended_denial(
    browser: Browser, service: Service, page_problems: Problems, tmp_path: Path
) -> None:
    pharmacist(service)
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


def test_the_pharmacist_opens_the_attached_pdf_from_the_case(
    browser: Browser, service: Service, page_problems: Problems
) -> None:
    import weasyprint

    pdf = weasyprint.HTML(string="<h1>KRAS G12C detected</h1>").write_pdf()
    report = {"contentType": "application/pdf", "title": "kras-report.pdf",
              "data": base64.b64encode(pdf).decode()}  # fmt: skip
    pharmacist(service)
    status, claim = service.post_fhir(
        "/QuestionnaireResponse/$evaluate",
        over_the_limit(bundled_catalog(), "browser-document", report),
    )
    assert status == 201, claim
    rid = claim["id"]

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    try:
        page = watched(context, page_problems)
        page.goto(f"{service.url}/review/{rid}")
        submit_sign_in(page, "pharmacist", PASSWORD)
        link = page.get_by_role("link", name="kras-report.pdf")
        expect(link).to_have_attribute("target", "_blank")
        expect(page.locator("#attachments")).to_contain_text(
            f"application/pdf, {len(pdf) / 1000:.1f} kB; opens in a new tab"
        )
        with (
            context.expect_page() as opened,
            context.expect_event("response", lambda r: "/documents/" in r.url) as served,
        ):
            link.click()
        document = opened.value
        reply = served.value
        assert reply.status == 200
        headers = reply.all_headers()
        assert headers["content-type"] == "application/pdf"
        assert headers["content-security-policy"] == "sandbox; default-src 'none'"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-disposition"].startswith('inline; filename="kras-report.pdf"')
        # shown in place by the browser's PDF viewer, under the sandbox: not a download
        viewer = None
        for _ in range(100):
            viewer = next(
                (f for f in document.frames if f.url.startswith("chrome-extension://")), None
            )
            if viewer is not None:
                break
            document.wait_for_timeout(100)
        assert viewer is not None, [f.url for f in document.frames]
        # the viewer read the PDF: its toolbar names the file and its one page
        expect(viewer.get_by_text("kras-report.pdf", exact=True).first).to_be_visible()
        expect(viewer.get_by_role("textbox", name="Page number")).to_have_value("1")
        expect(viewer.get_by_text("/ 1", exact=True).first).to_be_visible()
        # the bytes the viewer got (the page's own body is the viewer's wrapper)
        assert context.request.get(document.url).body() == pdf

        # the open is in the case's trail
        page.reload()
        expect(page.locator("#trail")).to_contain_text(f"cases/{rid}/documents/")
        expect(page.locator("#trail")).to_contain_text("(kras-report.pdf)")
    finally:
        context.close()
    assert not page_problems.errors, page_problems.errors
