"""Other people's renderer, unchanged: CSIRO Smart Forms
(``@aehrc/smart-forms-renderer``, the version pinned in
tests/browser/smartforms/package-lock.json, bundled by
scripts/install-smart-forms) renders each current form from the
``$questionnaire-package`` Bundle alone, in headless Chromium, and an
approvable EOCCO329 initial request it exports is approved.

The page (tests/browser/smartforms/page.jsx) wires the renderer as its
documentation does (``buildForm`` and ``BaseRenderer`` in its providers) and
hands it nothing but the package's Questionnaire: no terminology server of
ours, so the answer lists load from the server the Questionnaire names
(``preferredTerminologyServer``; the service's ``ValueSet/$expand``, open
without a token). The test checks each such expansion was asked of that
server and that each coded question shows every option of it.

The request is filled as a prescriber fills it (the policy's worked example
``initial_met``), the report attached through the renderer's own file input;
the response is the renderer's own final one (``getResponse``, then its
``removeEmptyAnswersFromResponse`` and ``removeInternalIdsFromResponse``),
with the attachment as Smart Forms sends it, ``data:application/pdf;base64,…``.
The service strips that prefix (``scoring.response.unpack_data_urls``) and
says so in the determination.

The page is given the service's origin (Playwright answers for it from
tests/browser/smartforms/; nothing is added to the service): the service sends
no CORS headers, so a page on another origin could not expand an answer list.
Nothing leaves the machine: a request elsewhere is refused and named.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import Any

import pytest
from playwright.sync_api import Browser, FilePayload, Locator, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError

from qpackage.catalog import score_json
from tests.browser.conftest import ROOT, Problems, Service, new_context, watched
from tests.browser.test_lforms_e2e import EVALUATE, Form, Item, catalog, walk, wanted_by
from tests.support.cases import base_answers
from tests.support.dtr_requests import EOCCO, MN_DHS, PACKAGE, WHA, canonical, package_request

HERE = ROOT / "tests" / "browser" / "smartforms"
BUNDLE = HERE / "dist"
PAGE = "/smart-forms/"  # answered by Playwright, on the service's origin
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
}
TERMINOLOGY = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-preferredTerminologyServer"
)
# the bundled payers, by the policy id's beginning (policies/payers/*.yaml)
PAYERS = {"eocco": EOCCO, "mn-dhs": MN_DHS, "wha": WHA}
FORMS = sorted(p.questionnaire["id"] for p in catalog().current.values())
FORM = "eocco329-initial"
# the smallest PDF a reader opens: a header and an empty trailer
PDF = b"%PDF-1.4\n%%EOF\n"
# where the report lives in the prescriber's record
REPORT_URL = "https://ehr.example.org/fhir/Binary/kras-report"


# --- the page -----------------------------------------------------------------------


def answer_page(route: Route) -> None:
    """index.html and the esbuild bundle, from tests/browser/smartforms/."""
    name = route.request.url.split(PAGE, 1)[1].split("?", 1)[0] or "index.html"
    path = HERE / name if name == "index.html" else BUNDLE / name
    if path.parent not in (HERE, BUNDLE) or not path.is_file():
        route.fulfill(status=404, body="")
        return
    route.fulfill(status=200, body=path.read_bytes(), content_type=TYPES.get(path.suffix, ""))


def refuse(seen: list[str]) -> Callable[[Route], None]:
    def handler(route: Route) -> None:
        seen.append(route.request.url)
        route.abort()

    return handler


def meeting(condition: dict[str, Any]) -> Any:
    """An answer that meets the condition."""
    value, op = wanted_by(condition), condition["operator"]
    if op in ("=", ">=", "<="):
        return value
    if op in (">", "<") and isinstance(value, int | float) and not isinstance(value, bool):
        return value + (1 if op == ">" else -1)
    raise NotImplementedError(f"no answer chosen to meet {condition}")


class SmartForm:
    """The renderer on a page, with one Questionnaire: answered by clicking
    and typing, as a person would, by linkId."""

    def __init__(self, page: Page, form: Form) -> None:
        self.page = page
        self.form = form
        self.values: dict[str, Any] = {}

    def box(self, link_id: str) -> Locator:
        return self.page.locator(f'[data-linkid="{link_id}"]').first

    def answer(self, link_id: str, value: Any) -> None:
        """Answer one question, then wait until the renderer holds the answer."""
        item = self.form.items[link_id]
        expect(self.box(link_id), f"{link_id} is not shown").to_be_visible()
        page = self.page
        if item.type in ("boolean", "choice"):
            code = ("true" if value else "false") if item.type == "boolean" else str(value)
            self.select(page.locator(f'[id="{item.type}-{link_id}"] input[value="{code}"]'))
        elif item.type in ("integer", "decimal", "string", "text"):
            field = page.locator(f'[id="{item.type}-{link_id}"]')
            field.fill(str(value))
            expect(field).to_have_value(str(value))
        elif item.type == "date":
            day = date.fromisoformat(str(value))
            field = page.locator(f'[id="date-{link_id}"]')
            field.fill(day.strftime("%d/%m/%Y"))
            expect(field).to_have_value(day.strftime("%d/%m/%Y"))
        elif item.type == "attachment":
            # Smart Forms makes an attachment only of a file and a URL
            # together (createAttachmentAnswer): the file, then where the
            # report lives in the prescriber's record, then its name
            box = self.box(link_id)
            report: FilePayload = {
                "name": value["title"],
                "mimeType": value["contentType"],
                "buffer": PDF,
            }
            box.locator("input[type=file]").set_input_files(files=[report])
            box.locator("[data-test=q-item-attachment-url]").fill(REPORT_URL)
            box.locator("[data-test=q-item-attachment-file-name]").fill(value["title"])
            page.wait_for_function(
                "([link, title]) => window.smartForms.answers(link)"
                ".some(a => a.valueAttachment && a.valueAttachment.title === title)",
                arg=[link_id, value["title"]],
            )
        else:
            raise NotImplementedError(f"no way to answer a {item.type} item ({link_id})")
        try:
            page.wait_for_function("link => window.smartForms.answers(link).length", arg=link_id)
        except PlaywrightError as error:
            raise AssertionError(f"{link_id}: the renderer did not take {value!r}") from error
        self.follow(link_id, str(value) if item.type == "choice" else value)

    def select(self, radio: Locator) -> None:
        """Click a radio until it shows checked: a click that lands while the
        form re-renders after the previous answer can be lost."""
        for _ in range(3):
            radio.click()
            try:
                expect(radio).to_be_checked(timeout=2000)
                return
            except AssertionError:
                continue
        expect(radio).to_be_checked()

    def follow(self, link_id: str, value: Any) -> None:
        """Check what the answer shows or hides, as the Questionnaire says."""
        before = self.form.enabled(self.values)
        self.values[link_id] = value
        after = self.form.enabled(self.values)
        for changed in (i for i in after if after[i] != before[i]):
            if after[changed]:
                expect(self.box(changed), f"{changed} not shown").to_be_visible()
            else:
                expect(self.box(changed), f"{changed} still shown").to_have_count(0)

    def enable(self, link_id: str) -> None:
        """Answer what it takes for an item (and its groups) to be shown."""
        for item in [*self.form.ancestors(link_id), self.form.items[link_id]]:
            for condition in item.enable_when:
                self.enable(condition["question"])
                self.answer(condition["question"], meeting(condition))

    def lists_every_option(self, item: Item) -> None:
        """One radio per option of the service's expansion, labelled with its display."""
        group = self.page.locator(f'[id="choice-{item.link_id}"]')
        expect(group.locator("input[type=radio]"), item.link_id).to_have_count(len(item.options))
        for option in item.options:
            radio = group.get_by_role("radio", name=option["display"], exact=True)
            expect(radio, f"{item.link_id}: {option['display']}").to_have_count(1)
            expect(radio).to_have_attribute("value", option["code"])

    def fill(self, answers: Mapping[str, Any]) -> None:
        """Answer by question name, in the Questionnaire's order (so each
        enableWhen source is answered before the questions it shows)."""
        wanted = {self.form.link_id(k): v for k, v in answers.items()}
        for item in self.form.questions():
            if item.link_id in wanted:
                self.answer(item.link_id, wanted[item.link_id])

    def response(self) -> dict[str, Any]:
        """The renderer's own final response (page.jsx: its cleanup functions)."""
        exported = self.page.evaluate("window.smartForms.response()")
        assert isinstance(exported, dict), exported
        return exported


# --- the package --------------------------------------------------------------------


def package_questionnaire(service: Service, qid: str) -> dict[str, Any]:
    """``$questionnaire-package`` for the form's canonical, asked as the
    member's payer: the one Questionnaire of the Bundle."""
    (package,) = [p for p in catalog().current.values() if p.questionnaire["id"] == qid]
    found = package.questionnaire
    payer = next(v for k, v in PAYERS.items() if package.policy.id.startswith(k))
    wanted = canonical(f"{found['url']}|{found['version']}")
    status, body = service.post_fhir(PACKAGE, package_request(wanted, payor=payer))
    assert status == 200, body
    (bundle,) = [p["resource"] for p in body["parameter"] if p["name"] == "packagebundle"]
    (questionnaire,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Questionnaire"
    ]
    assert (questionnaire["id"], questionnaire["version"]) == (qid, found["version"])
    return dict(questionnaire)


def expanded(service: Service, questionnaire: dict[str, Any]) -> Form:
    """The Questionnaire with its answer lists as the service expands them."""
    lists = {}
    for raw in walk(questionnaire["item"]):
        if "answerValueSet" in raw:
            url, _, version = raw["answerValueSet"].partition("|")
            reply = service.get_json(f"/ValueSet/$expand?url={url}&version={version}")
            lists[raw["answerValueSet"]] = reply["expansion"]["contains"]
    return Form(questionnaire, lists)


@pytest.fixture
def rendered(service: Service, browser: Browser) -> Iterator[Callable[[str], SmartForm]]:
    """A page on the service's origin with Smart Forms; ``rendered(qid)``
    renders that form's package Questionnaire on it. After the test: no
    console or page error, nothing asked of another host, and every answer
    list expanded at the terminology server the Questionnaire names."""
    if not (BUNDLE / "page.js").exists():
        pytest.fail(
            f"Smart Forms is not bundled ({BUNDLE / 'page.js'} is missing):"
            " run scripts/install-smart-forms",
            pytrace=False,
        )
    problems = Problems()
    elsewhere: list[str] = []
    asked: list[str] = []
    context = new_context(browser)
    context.route(service.url + PAGE + "**", answer_page)
    context.route(re.compile(r"^(?!http://127\.0\.0\.1[:/])"), refuse(elsewhere))
    page = watched(context, problems)
    page.on("request", lambda request: asked.append(request.url))
    page.goto(service.url + PAGE)
    shown: list[dict[str, Any]] = []

    def render(qid: str) -> SmartForm:
        questionnaire = package_questionnaire(service, qid)
        shown.append(questionnaire)
        page.evaluate("questionnaire => window.smartForms.render(questionnaire)", questionnaire)
        form = expanded(service, questionnaire)
        expect(page.locator("[data-linkid]").first).to_be_visible()
        return SmartForm(page, form)

    try:
        yield render
    finally:
        context.close()
    assert problems.errors == [], problems.errors
    assert elsewhere == [], elsewhere
    for questionnaire in shown:
        servers = [e["valueUrl"] for e in questionnaire["extension"] if e["url"] == TERMINOLOGY]
        for raw in walk(questionnaire["item"]):
            if "answerValueSet" in raw:
                (server,) = servers
                url, _, version = raw["answerValueSet"].partition("|")
                expansion = f"{server}/ValueSet/$expand?url={url}&version={version}"
                assert expansion in asked, (expansion, asked)


# --- the tests ----------------------------------------------------------------------


@pytest.mark.parametrize("qid", FORMS)
def test_every_current_form_renders_from_the_package_alone(
    rendered: Callable[[str], SmartForm], qid: str
) -> None:
    smart = rendered(qid)
    form = smart.form
    shown = form.enabled({})
    for item in form.items.values():
        if shown[item.link_id]:
            expect(smart.box(item.link_id), f"{item.link_id} not shown").to_be_visible()
        else:
            expect(smart.box(item.link_id), f"{item.link_id} shown").to_have_count(0)
    # every coded question, brought up by answering what shows it, lists every option
    coded = [i for i in form.questions() if i.type == "choice"]
    for item in coded:
        assert item.options, f"{item.link_id}: the service expanded no options"
        smart.enable(item.link_id)
        smart.lists_every_option(item)
    assert len(coded) == len(form.answer_lists), [i.link_id for i in coded]


def test_an_approvable_eocco329_request_it_exports_is_approved(
    rendered: Callable[[str], SmartForm], service: Service
) -> None:
    smart = rendered(FORM)
    form = smart.form
    # the prescriber first says they are no oncologist and consulted one,
    # then corrects it: the consultation question is hidden again, its answer
    # still held by the renderer until its cleanup
    consulted = form.link_id("oncologist_consulted")
    smart.answer(form.link_id("prescriber_oncologist"), False)
    smart.answer(consulted, True)
    answers = base_answers("eocco329", "initial_met")
    smart.fill(answers)
    assert smart.page.evaluate("link => window.smartForms.answers(link)", consulted)
    response = smart.response()

    # the renderer's own cleanup: only what is enabled and answered
    shown = form.enabled(smart.values)
    sent = {i["linkId"]: i["answer"] for i in walk(response["item"]) if i.get("answer")}
    assert set(sent) == {form.link_id(k) for k in answers if shown[form.link_id(k)]}
    assert consulted not in sent
    (attachment,) = [a["valueAttachment"] for a in sent[form.link_id("document_i_d_2")]]
    assert attachment == {
        "contentType": "application/pdf",
        "data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
        "size": len(PDF),
        "url": REPORT_URL,
        "title": answers["document_i_d_2"]["title"],
    }

    # what a client adds to the renderer's response before sending it
    response |= {"status": "completed", "subject": {"reference": "Patient/p1"}}
    status, body = service.post_fhir(EVALUATE, response)
    assert status in (200, 201), body
    determination = service.get_json(f"/determinations/{body['id']}")
    assert determination["outcome"] == "approved", determination
    scored = score_json(catalog(), response, date.fromisoformat(determination["evaluatedAt"]))
    assert scored.outcome == "approved", scored
    (note,) = determination["normalised"]
    assert form.link_id("document_i_d_2") in note and "data:application/pdf;base64" in note


def test_a_data_url_of_another_type_than_the_attachments_is_refused(
    rendered: Callable[[str], SmartForm], service: Service
) -> None:
    """The deliberately wrong case: the same export with its contentType
    changed is refused, naming the item (the leniency is for one type only)."""
    smart = rendered(FORM)
    form = smart.form
    smart.fill(base_answers("eocco329", "initial_met"))
    response = smart.response() | {"status": "completed", "subject": {"reference": "Patient/p1"}}
    link = form.link_id("document_i_d_2")
    for item in walk(response["item"]):
        if item["linkId"] == link:
            item["answer"][0]["valueAttachment"]["contentType"] = "image/png"
    status, body = service.post_fhir(EVALUATE, response)
    assert status == 422, body
    assert link in str(body), body
