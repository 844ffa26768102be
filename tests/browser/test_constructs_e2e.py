"""LHC-Forms on constructs no bundled policy uses, served from a payer's own
policy folder (tests/fixtures/policies/constructs): a multi-select question shown as
check boxes, and its export scored like a response built in Python."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Service
from tests.browser.test_lforms_e2e import opened, sel
from tests.support.cases import folder_catalog

QID = "fixture-class-alpha-initial"


def test_a_multi_select_is_check_boxes_and_its_answers_score(
    page: Page, fixture_service: Service
) -> None:
    portal = opened(page, fixture_service, QID)
    portal.fill({"setting": "Metastatic"})
    package = next(
        p
        for p in folder_catalog("fixtures/policies/constructs").current.values()
        if p.questionnaire["id"] == QID
    )
    link = package.link_of["sites"]
    item = portal.form.items[link]
    expect(portal.item(link)).to_be_visible()
    boxes = page.locator(sel("item-" + item.element_id)).locator("input[type=checkbox]")
    expect(boxes).to_have_count(3)
    for code in ("lung", "brain"):
        coding = item.coding(code)
        choice = sel(f"{item.element_id}|{coding.get('system', '')}|{coding['code']}")
        page.click(choice)
        expect(page.locator(choice + " input")).to_be_checked()
    exported = portal.export()
    answers = [
        a["valueCoding"]["code"]
        for group in exported["item"]
        for entry in _walk(group)
        if entry.get("linkId") == link
        for a in entry["answer"]
    ]
    assert sorted(answers) == ["brain", "lung"]
    # submitted as a provider would: brain metastases are excluded, and a
    # denial stands even with the other answers still missing
    determination = portal.submit()
    assert determination["outcome"] == "denied"
    assert determination["sections"]["unmet"] == ["Metastatic"]


def _walk(item: dict) -> list[dict]:  # type: ignore[type-arg]
    out = [item]
    for child in item.get("item", []):
        out.extend(_walk(child))
    return out
