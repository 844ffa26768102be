"""End to end in a real browser: the portal renders the generated Questionnaires
with LHC-Forms, their enableWhen logic behaves as the policy says when a
provider clicks through them, and what LHC-Forms exports scores exactly as the
same answers filled in Python.

Everything about the forms (linkIds, nesting, which items are conditional, the
answer options) is read from the Questionnaire the service serves; the answer
sets come from the policies' worked examples (policies/*.examples.yaml).
"""

from __future__ import annotations

import base64
import copy
import operator
import os
import re
import struct
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from policies.generated import DOCUMENT_PREFIX
from qpackage.catalog import Catalog, score_json
from review.config import PayerConfig, load_payers, needs_review
from scoring.fill import fill
from tests.browser.conftest import ROOT, VIEWPORT, Problems, Service
from tests.support.cases import bundled_catalog, load_scoring_cases, package_for

# Screenshots go to a temporary folder, so a test run leaves the checkout clean;
# DTR_SCREENSHOTS=docs/screenshots refreshes the ones the README and docs/portal.md show.
SCREENSHOTS_ENV = "DTR_SCREENSHOTS"
EVALUATE = "/QuestionnaireResponse/$evaluate"
# determination fields that differ between any two submissions by construction
# what the service adds to a stored determination of its own: the record's
# links and reference, and another approval of the member still running
PER_RECORD = {"id", "claimResponse", "notice", "context", "reference", "runningApprovals"}
QUESTION_TYPES_SKIPPED = {"group", "display"}
# how the portal's result begins, by outcome
IN_WORDS = {
    "approved": "Approved",
    "denied": "Denied",
    "investigational": "Not covered",
    "pended": "Pended",
}


# --- the Questionnaire, as data --------------------------------------------------


# enableWhen operators, as SDC defines them for the answer types the forms use
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def wanted_by(condition: dict[str, Any]) -> Any:
    """The value an enableWhen compares with (a coding by its code)."""
    (key,) = [k for k in condition if k.startswith("answer")]
    value = condition[key]
    return value["code"] if key == "answerCoding" else value


@dataclass(frozen=True)
class Item:
    link_id: str
    type: str
    text: str
    depth: int  # 1 at the top level
    parent: str | None
    enable_when: tuple[dict[str, Any], ...]  # its own conditions
    enable_behavior: str  # 'all' or 'any'
    conditional: bool  # an enableWhen on itself or on an ancestor group
    options: tuple[dict[str, Any], ...]  # the codings of its answerValueSet

    @property
    def element_id(self) -> str:
        """LHC-Forms' id: the linkId then one '/1' per nesting level."""
        return self.link_id + "/1" * self.depth

    @property
    def is_question(self) -> bool:
        return self.type not in QUESTION_TYPES_SKIPPED

    def coding(self, code: str) -> dict[str, Any]:
        for option in self.options:
            if option["code"] == code:
                return option
        raise KeyError(f"{code!r} is not an answer option of {self.link_id}")


class Form:
    """A Questionnaire's items in document order, by linkId and by question name."""

    def __init__(
        self, questionnaire: dict[str, Any], answer_lists: Mapping[str, list[dict[str, Any]]]
    ) -> None:
        self.questionnaire = questionnaire
        self.answer_lists = answer_lists
        self.id: str = questionnaire["id"]
        self.items: dict[str, Item] = {}
        self._collect(questionnaire["item"], None, 1, False)
        by_name: dict[str, list[str]] = {}
        for item in self.items.values():
            if item.is_question:
                by_name.setdefault(item.link_id.rsplit(".", 1)[-1], []).append(item.link_id)
        self._by_name = by_name

    def _collect(
        self, items: list[dict[str, Any]], parent: str | None, depth: int, inherited: bool
    ) -> None:
        for raw in items:
            own = tuple(raw.get("enableWhen", []))
            item = Item(
                link_id=raw["linkId"],
                type=raw["type"],
                text=raw.get("text", ""),
                depth=depth,
                parent=parent,
                enable_when=own,
                enable_behavior=raw.get("enableBehavior", "all"),
                conditional=inherited or bool(own),
                options=tuple(self.answer_lists.get(raw.get("answerValueSet", ""), [])),
            )
            self.items[item.link_id] = item
            self._collect(raw.get("item", []), item.link_id, depth + 1, item.conditional)

    def link_id(self, key: str) -> str:
        """A question name (or a linkId) → its linkId ('<section>.<name>')."""
        if key in self.items:
            return key
        if key.startswith(DOCUMENT_PREFIX):
            # a criterion's generated attachment: '<section>.documentation'
            slug = key.removeprefix(DOCUMENT_PREFIX)
            found = [
                link
                for link in self.items
                if link.endswith(".documentation")
                and re.sub(r"[^a-z0-9]+", "_", link.removesuffix(".documentation").lower()) == slug
            ]
            if len(found) == 1:
                return found[0]
        found = self._by_name.get(key, [])
        if len(found) != 1:
            raise KeyError(f"{key!r} names {len(found)} questions of {self.id}: {found}")
        return found[0]

    def ancestors(self, link_id: str) -> list[Item]:
        """The groups around an item, outermost first."""
        chain = []
        parent = self.items[link_id].parent
        while parent is not None:
            chain.append(self.items[parent])
            parent = self.items[parent].parent
        return chain[::-1]

    def below(self, link_id: str) -> Iterator[Item]:
        """Descendants of an item that carry no enableWhen of their own on the way down."""
        for item in self.items.values():
            path = [*self.ancestors(item.link_id), item]
            ids = [i.link_id for i in path]
            if link_id in ids[:-1]:
                rest = path[ids.index(link_id) + 1 :]
                if not any(i.enable_when for i in rest):
                    yield item

    def questions(self) -> list[Item]:
        return [i for i in self.items.values() if i.is_question]

    def enabled(self, values: Mapping[str, Any]) -> dict[str, bool]:
        """Which items the Questionnaire's enableWhen enables for these answers
        (by linkId; choice answers as codes). A disabled source counts as
        unanswered."""
        state: dict[str, bool] = {}
        for item in self.items.values():  # document order: groups before their items
            if item.parent is not None and not state[item.parent]:
                state[item.link_id] = False
                continue
            held = []
            for condition in item.enable_when:
                source = condition["question"]
                value = values.get(source) if state.get(source, False) else None
                compare = OPERATORS[condition["operator"]]
                held.append(value is not None and compare(value, wanted_by(condition)))
            if not held:
                state[item.link_id] = True
            else:
                state[item.link_id] = any(held) if item.enable_behavior == "any" else all(held)
        return state


@cache
def catalog() -> Catalog:
    return bundled_catalog()


@cache
def scoring_cases() -> dict[tuple[str, str], dict[str, Any]]:
    """The worked examples (policies/*.examples.yaml and the fixtures'), by (policy, name)."""
    cases = {}
    for param in load_scoring_cases():
        case = param.values[0]
        assert isinstance(case, dict)
        cases[case["policy"], case["name"]] = case
    return cases


def load_form(service: Service, qid: str) -> Form:
    """The Questionnaire and its answer lists, expanded by the service as a
    renderer asks for them."""
    questionnaire = service.get_json(f"/Questionnaire/{qid}")
    answer_lists = {}
    for raw in walk(questionnaire["item"]):
        if "answerValueSet" in raw:
            query = urllib.parse.urlencode({"url": raw["answerValueSet"]})
            expansion = service.get_json(f"/ValueSet/$expand?{query}")["expansion"]
            answer_lists[raw["answerValueSet"]] = expansion["contains"]
    return Form(questionnaire, answer_lists)


# --- the portal, driven as a provider would --------------------------------------


@dataclass(frozen=True)
class Patient:
    """Who a request is for and who prescribes, as the office enters them
    before the form opens."""

    member_id: str = "example"
    name: str = "Ada Lovelace"
    birth_date: str = "1968-04-12"
    prescriber: str = "Dr. Grace Hopper"
    npi: str = "1234567893"  # a valid NPI check digit
    expedited: bool = False

    @property
    def reference(self) -> str:
        return f"Patient/{self.member_id}"

    def subject(self) -> dict[str, Any]:
        """The response's subject, as the portal writes it."""
        return {
            "reference": self.reference,
            "display": self.name,
            "identifier": {"value": self.member_id},
        }


PATIENT = Patient()


def identify(page: Page, patient: Patient = PATIENT) -> None:
    """Fill the patient and prescriber fields, as the office does first."""
    page.fill("#patient-name", patient.name)
    page.fill("#member-id", patient.member_id)
    page.fill("#birth-date", patient.birth_date)
    page.fill("#prescriber-name", patient.prescriber)
    page.fill("#npi", patient.npi)
    page.set_checked("#expedited", patient.expedited)


def settled(page: Page, states: set[str], timeout: float = 30.0) -> str:
    """Wait until the portal's status is one of ``states``; it. Polled from
    here: Playwright's wait_for_function evaluates a string in the page, which
    the portal's content security policy (no eval) rightly refuses."""
    deadline = time.monotonic() + timeout
    while True:
        status = str(page.evaluate("window.portalStatus"))
        if status in states or time.monotonic() > deadline:
            return status
        page.wait_for_timeout(50)


def sel(element_id: str) -> str:
    """LHC-Forms ids contain '/', '|' and '.': only attribute selectors work."""
    return f'[id="{element_id}"]'


def us_date(value: date | str) -> str:
    day = value if isinstance(value, date) else date.fromisoformat(value)
    return day.strftime("%m/%d/%Y")


class Portal:
    def __init__(self, page: Page, service: Service, form: Form) -> None:
        self.page = page
        self.service = service
        self.form = form
        self.values: dict[str, Any] = {}  # what has been answered, by linkId

    def open(self, patient: Patient = PATIENT) -> Portal:
        """The portal with this form chosen (``?q=``), the patient and the
        prescriber named, the form opened."""
        self.page.goto(f"{self.service.url}/?{urllib.parse.urlencode({'q': self.form.id})}")
        return self.start(patient)

    def start(self, patient: Patient = PATIENT) -> Portal:
        """Name the patient and the prescriber and open the chosen form."""
        expect(self.page.locator("#questionnaire")).to_have_value(self.form.id)
        identify(self.page, patient)
        self.page.click("#load")
        return self.ready()

    def ready(self) -> Portal:
        status = settled(self.page, {"ready", "error", "refused"})
        assert status == "ready", f"portal {status}: {self.page.locator('#error').text_content()}"
        return self

    def item(self, link_id: str) -> Locator:
        """The item's <lhc-item> wrapper (absent while the item is disabled)."""
        return self.page.locator(sel("item-" + self.form.items[link_id].element_id))

    def _select(self, choice: str) -> None:
        """Click a radio option until LHC-Forms shows it checked: a click that
        lands while the form is still settling after the previous answer is
        lost now and then (seen under load), so it is retried — on the label,
        then on the input itself."""
        radio = self.page.locator(choice + " input")

        def scrolled_click() -> None:
            self.page.locator(choice).scroll_into_view_if_needed()
            self.page.click(choice)

        attempts = [
            lambda: self.page.click(choice),
            scrolled_click,
            lambda: radio.dispatch_event("click"),
        ]
        for attempt in attempts:
            attempt()
            try:
                expect(radio).to_be_checked(timeout=2000)
                return
            except AssertionError:
                continue
        expect(radio).to_be_checked()

    def answer(self, key: str, value: Any) -> None:
        """Answer one question by clicking or typing, then check the form shows it."""
        item = self.form.items[self.form.link_id(key)]
        expect(self.item(item.link_id), f"{item.link_id} is not shown").to_be_visible()
        page, eid = self.page, item.element_id
        if item.type == "boolean":
            choice = sel(f"{eid}|{'true' if value else 'false'}")
            self._select(choice)
        elif item.type == "choice":
            coding = item.coding(str(value))
            choice = sel(f"{eid}|{coding.get('system', '')}|{coding['code']}")
            self._select(choice)
        elif item.type in ("integer", "decimal", "string", "text"):
            field = page.locator(sel(eid))
            field.fill(str(value))
            field.press("Tab")
            expect(field).to_have_value(str(value))
        elif item.type == "date" and page.locator(sel(eid) + " input").is_disabled():
            # the birth-date question: read-only, answered by the patient's birth date
            expect(page.locator(sel(eid) + " input")).to_have_value(us_date(value))
        elif item.type == "date":
            field = page.locator(sel(eid) + " input")
            field.click()
            field.fill(us_date(value))
            field.press("Enter")
            page.keyboard.press("Escape")
            expect(field).to_have_value(us_date(value))
        elif item.type == "attachment":
            # the provider attaches the report as a file: the browser reads it
            folder = Path(tempfile.mkdtemp())
            report = folder / value["title"]
            report.write_bytes(base64.b64decode(value["data"]))
            page.set_input_files(sel("file-" + eid), report)
        else:
            raise NotImplementedError(f"no way to answer a {item.type} item ({item.link_id})")
        self._follow(item.link_id, str(value) if item.type == "choice" else value)

    def _follow(self, link_id: str, value: Any) -> None:
        """Wait for (and check) what the answer shows or hides: every item whose
        enablement the Questionnaire's logic says has changed. LHC-Forms applies
        enableWhen shortly after the click; the next click must not race it."""
        before = self.form.enabled(self.values)
        self.values[link_id] = value
        after = self.form.enabled(self.values)
        for changed in (i for i in after if after[i] != before[i]):
            if after[changed]:
                expect(self.item(changed), f"{changed} not shown").to_be_visible()
            else:
                expect(self.item(changed), f"{changed} still shown").to_have_count(0)

    def fill(self, answers: Mapping[str, Any]) -> None:
        """Answer by question name, in the Questionnaire's order (so each
        enableWhen source is answered before the questions it shows)."""
        wanted = {self.form.link_id(k): v for k, v in answers.items() if v is not None}
        for item in self.form.questions():
            if item.link_id in wanted:
                self.answer(item.link_id, wanted[item.link_id])

    def export(self) -> dict[str, Any]:
        response = self.page.evaluate(
            "LForms.Util.getFormFHIRData('QuestionnaireResponse', 'R4',"
            " document.getElementById('formContainer'))"
        )
        assert isinstance(response, dict), f"LHC-Forms exported {response!r}"
        return response

    def submit(self) -> dict[str, Any]:
        """Submit through the portal's button; the determination it shows."""
        self.page.click("#submit")
        status = settled(self.page, {"scored", "refused", "error", "confirm"})
        if status == "confirm":
            # questions left unanswered: the portal asks first; submitted anyway
            expect(self.page.locator("#unanswered")).to_be_visible()
            self.page.click("#submit-anyway")
            status = settled(self.page, {"scored", "refused", "error"})
        assert status == "scored", f"portal {status}: {self.page.locator('#error').text_content()}"
        expect(self.page.locator("#result")).to_be_visible()
        determination = self.page.evaluate("window.lastDetermination")
        outcome = self.page.locator("#outcome")
        expect(outcome).to_have_attribute("data-outcome", determination["outcome"])
        # said in words, not as the determination's JSON
        expect(outcome).to_have_text(re.compile("^" + IN_WORDS[determination["outcome"]]))
        return dict(determination)


def opened(page: Page, service: Service, qid: str, patient: Patient = PATIENT) -> Portal:
    return Portal(page, service, load_form(service, qid)).open(patient)


def birth_date_link(form: Form) -> str | None:
    """The form's birth-date question (the patient's birth date answers it)."""
    found = [i.link_id for i in form.questions() if i.link_id.rsplit(".", 1)[-1] == "birth_date"]
    return found[0] if len(found) == 1 else None


def with_birth_date(form: Form, answers: Mapping[str, Any], born: str) -> dict[str, Any]:
    """A case's answers as the portal sends them: the birth-date question
    answered with the patient's birth date wherever it is shown."""
    link = birth_date_link(form)
    given = {k: v for k, v in answers.items() if v is not None}
    if link is None or any(form.link_id(k) == link for k in given):
        return given
    values = {form.link_id(k): v for k, v in given.items()}
    if form.enabled(values).get(link):
        given["birth_date"] = born
    return given


@cache
def payers() -> dict[str, PayerConfig]:
    return load_payers(Path(str(resources.files("policies"))) / "payers")


def office_outcome(determination: Any) -> str:
    """What the office is shown for the scorer's outcome: the payer has a
    pharmacist decide some outcomes (pended for review meanwhile)."""
    payer = payers().get(determination.payer_id)
    if payer is not None and needs_review(payer, determination):
        return "pended"
    return str(determination.outcome)


def python_determination(
    service: Service, policy: str, request: str, answers: Mapping[str, Any]
) -> dict[str, Any]:
    """The same answers filled in Python, scored by the same server."""
    package = package_for(catalog(), policy, request)
    status, body = service.post_fhir(EVALUATE, fill(package, answers))
    assert status in (200, 201), body
    return dict(service.get_json(f"/determinations/{body['id']}"))


def answered(response: dict[str, Any]) -> dict[tuple[str, ...], list[Any]]:
    """Each answer of a response by the linkIds of its item and its groups."""
    found: dict[tuple[str, ...], list[Any]] = {}

    def visit(items: list[dict[str, Any]], path: tuple[str, ...]) -> None:
        for item in items:
            here = (*path, item["linkId"])
            if "answer" in item:
                # an attachment is the same when its data is (LHC-Forms adds
                # its own size, date and content type)
                found[here] = [
                    {"valueAttachment": {"data": a["valueAttachment"]["data"]}}
                    if "valueAttachment" in a
                    else a
                    for a in item["answer"]
                ]
            visit(item.get("item", []), here)

    visit(response.get("item", []), ())
    return found


def comparable(determination: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in determination.items() if k not in PER_RECORD}


# --- enableWhen, generically ----------------------------------------------------


def condition_values(form: Form, condition: dict[str, Any]) -> tuple[Any, Any]:
    """For an '=' condition: an answer that meets it and one that does not."""
    source = form.items[condition["question"]]
    if condition.get("operator") != "=":
        raise NotImplementedError(f"enableWhen operator {condition.get('operator')!r}")
    if "answerBoolean" in condition:
        return condition["answerBoolean"], not condition["answerBoolean"]
    if "answerCoding" in condition:
        wanted = condition["answerCoding"]
        assert wanted in [{k: o[k] for k in wanted} for o in source.options], (
            f"{source.link_id} has no option {wanted}"
        )
        other = next(o["code"] for o in source.options if o["code"] != wanted["code"])
        return wanted["code"], other
    raise NotImplementedError(f"enableWhen {condition}")


def enable(portal: Portal, link_id: str) -> None:
    """Answer what it takes for an item (and its groups) to be shown."""
    form = portal.form
    for item in [*form.ancestors(link_id), form.items[link_id]]:
        for condition in item.enable_when:
            enable(portal, condition["question"])
            portal.answer(condition["question"], condition_values(form, condition)[0])


# --- a. rendering -----------------------------------------------------------------

# forms with conditional items (Cotellic's form has none: every criterion always applies)
QUESTIONNAIRES = [
    "eocco329-initial",
    "eocco329-renewal",
    "mn-dhs-mekinist-initial",
    "wha-mektovi-initial",
]


@pytest.mark.parametrize("qid", QUESTIONNAIRES)
def test_renders_unconditional_items_and_hides_conditional_ones(
    page: Page, page_problems: Problems, service: Service, qid: str
) -> None:
    portal = opened(page, service, qid)
    form = portal.form
    shown = [i for i in form.items.values() if not i.conditional]
    hidden = [i for i in form.items.values() if i.conditional]
    assert hidden, f"{qid} has no conditional item"
    for item in shown:
        expect(portal.item(item.link_id), f"{item.link_id} missing").to_be_visible()
        if item.is_question:
            expect(portal.item(item.link_id)).to_contain_text(item.text)
    for item in hidden:
        expect(portal.item(item.link_id), f"{item.link_id} shown too early").to_have_count(0)
    # nothing else is rendered: one <lhc-item> per unconditional item
    expect(page.locator("wc-lhc-form lhc-item[id^='item-']")).to_have_count(len(shown))
    assert page_problems.errors == []
    assert page_problems.other == []


@pytest.mark.parametrize("qid", QUESTIONNAIRES)
def test_each_conditional_item_appears_only_when_its_condition_holds(
    page: Page, page_problems: Problems, service: Service, qid: str
) -> None:
    """Every item with an enableWhen: absent when its source has another answer,
    shown (with what it contains) once the source has the answer it names."""
    portal = opened(page, service, qid)
    form = portal.form
    checked = 0
    for item in form.items.values():
        if not item.enable_when:
            continue
        assert len(item.enable_when) == 1, f"{item.link_id}: several conditions"
        condition = item.enable_when[0]
        meets, fails = condition_values(form, condition)
        for group in form.ancestors(item.link_id):
            enable(portal, group.link_id)
        enable(portal, condition["question"])
        portal.answer(condition["question"], fails)
        expect(portal.item(item.link_id), f"{item.link_id} shown").to_have_count(0)
        portal.answer(condition["question"], meets)
        expect(portal.item(item.link_id), f"{item.link_id} not shown").to_be_visible()
        for inner in form.below(item.link_id):
            expect(portal.item(inner.link_id), f"{inner.link_id} not shown").to_be_visible()
        checked += 1
    assert checked >= 3
    assert page_problems.errors == []


# --- b. enableWhen as a provider meets it -----------------------------------------


def test_eocco_initial_lgsoc_questions_follow_the_diagnosis(page: Page, service: Service) -> None:
    portal = opened(page, service, "eocco329-initial")
    form = portal.form
    criteria = [i.link_id for i in form.items.values() if i.parent == "I.D" and i.type == "group"]
    # I.D.1-I.D.9 and the check that some prior therapy was received (a group
    # with the policy text alone: it asks nothing of its own)
    assert criteria == [*(f"I.D.{n}" for n in range(1, 8)), "I.D.PRIOR", "I.D.8", "I.D.9"]
    always = [q.link_id for g in criteria for q in form.below(g) if q.is_question]
    assert "I.D.2.kras_mutation" in always
    for link_id in criteria + always:
        expect(portal.item(link_id)).to_have_count(0)

    portal.answer("diagnosis", "I.D")
    for link_id in criteria + always:
        expect(portal.item(link_id), f"{link_id} not shown for LGSOC").to_be_visible()
    for name in ["platinum_otherwise", "trametinib_otherwise"]:
        expect(portal.item(form.link_id(name))).to_have_count(0)

    portal.answer("diagnosis", "II.C")  # non-small cell lung cancer
    for link_id in criteria + always:
        expect(portal.item(link_id), f"{link_id} still shown for NSCLC").to_have_count(0)
    expect(portal.item("I.D.diagnosis")).to_be_visible()


def test_eocco_initial_intolerance_asked_only_without_progression(
    page: Page, service: Service
) -> None:
    portal = opened(page, service, "eocco329-initial")
    form = portal.form
    pairs = [
        (i.enable_when[0]["question"], i.link_id)
        for i in form.items.values()
        if i.enable_when and i.enable_when[0]["question"].endswith("_progressed")
    ]
    assert len(pairs) == 5  # platinum, second line, hormonal, bevacizumab, trametinib
    portal.answer("diagnosis", "I.D")
    for progressed, intolerant in pairs:
        expect(portal.item(intolerant)).to_have_count(0)
        portal.answer(progressed, False)
        expect(portal.item(intolerant), f"{intolerant} not asked").to_be_visible()
        portal.answer(progressed, True)
        expect(portal.item(intolerant), f"{intolerant} still asked").to_have_count(0)


def test_eocco_initial_consultation_asked_when_prescriber_is_no_oncologist(
    page: Page, service: Service
) -> None:
    portal = opened(page, service, "eocco329-initial")
    consulted = portal.item("I.B.oncologist_consulted")
    expect(consulted).to_have_count(0)
    portal.answer("prescriber_oncologist", False)
    expect(consulted).to_be_visible()
    portal.answer("prescriber_oncologist", True)
    expect(consulted).to_have_count(0)


def test_eocco_renewal_samples_switch_between_initial_and_renewal_criteria(
    page: Page, service: Service
) -> None:
    portal = opened(page, service, "eocco329-renewal")
    form = portal.form
    initial = ["I", *(i.link_id for i in form.below("I"))]
    renewal_i = ["Renewal.I", *(i.link_id for i in form.below("Renewal.I"))]
    assert {"I.A.birth_date", "I.D.diagnosis"} <= set(initial)
    assert "Renewal.I.prior_plan_approval" in renewal_i
    both = ["Renewal.IV.symptoms_improved_or_stable", "Renewal.V.disease_response"]

    def shown(link_ids: list[str]) -> None:
        for link_id in link_ids:
            expect(portal.item(link_id), f"{link_id} not shown").to_be_visible()

    def absent(link_ids: list[str]) -> None:
        for link_id in link_ids:
            expect(portal.item(link_id), f"{link_id} shown").to_have_count(0)

    absent(initial + renewal_i)
    shown(both)
    portal.answer("started_on_samples", True)
    shown(initial + both)
    absent(renewal_i)
    portal.answer("started_on_samples", False)
    shown(renewal_i + both)
    absent(initial)


def test_mekinist_questions_follow_the_indication(page: Page, service: Service) -> None:
    portal = opened(page, service, "mn-dhs-mekinist-initial")
    form = portal.form
    melanoma = [
        i.link_id for g in ("Melanoma", "Exclusion.1") for i in [form.items[g], *form.below(g)]
    ]
    nsclc = ["NSCLC", *(i.link_id for i in form.below("NSCLC"))]
    assert {"Melanoma.2.melanoma_braf_v600ek", "Melanoma.3.melanoma_regimen"} <= set(melanoma)
    assert {"NSCLC.2.nsclc_braf_v600e", "NSCLC.3.nsclc_with_tafinlar"} <= set(nsclc)
    for link_id in melanoma + nsclc:
        expect(portal.item(link_id)).to_have_count(0)

    portal.answer("indication", "Melanoma")
    for link_id in melanoma:
        expect(portal.item(link_id), f"{link_id} not shown for melanoma").to_be_visible()
    for link_id in nsclc:
        expect(portal.item(link_id), f"{link_id} shown for melanoma").to_have_count(0)

    portal.answer("indication", "NSCLC")
    for link_id in nsclc:
        expect(portal.item(link_id), f"{link_id} not shown for NSCLC").to_be_visible()
    for link_id in melanoma:
        expect(portal.item(link_id), f"{link_id} shown for NSCLC").to_have_count(0)

    portal.answer("indication", "other")
    for link_id in melanoma + nsclc:
        expect(portal.item(link_id), f"{link_id} shown for another indication").to_have_count(0)


# --- c. the browser's response scores as the Python one ----------------------------

PARITY = [
    # (Questionnaire, worked example of policies/*.examples.yaml, outcome it must reach)
    ("eocco329-initial", "every initial criterion met", "approved"),
    ("eocco329-initial", "several failures at once, every one cited", "denied"),
    ("eocco329-initial", "investigational with the initial criteria it also fails", "investigational"),
    ("eocco329-initial", "consultation not answered when the prescriber is no oncologist", "pended"),
    ("eocco329-initial", "an empty form pends with the always-shown questions", "pended"),
    ("eocco329-renewal", "renewal with prior approval from this plan", "approved"),
    ("eocco329-renewal", "renewal started on samples meeting the initial criteria", "approved"),
    ("eocco329-renewal", "renewal started on samples failing an initial criterion", "denied"),
    ("eocco329-renewal", "renewal with neither improvement nor response", "denied"),
    ("eocco329-renewal", "renewal started on samples for an investigational diagnosis", "investigational"),
    ("eocco329-renewal", "renewal started on samples without the initial answers pends for them", "pended"),
    ("mn-dhs-mekinist-initial", "melanoma, single agent", "approved"),
    ("mn-dhs-mekinist-initial", "NSCLC with Tafinlar", "approved"),
    ("mn-dhs-mekinist-initial", "NSCLC with several failures", "denied"),
    ("mn-dhs-mekinist-initial", "an indication the criteria do not cover", "denied"),
    ("mn-dhs-mekinist-initial", "melanoma exclusion not answered", "pended"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("qid", "name", "outcome"), PARITY, ids=[f"{q}: {n}" for q, n, _ in PARITY]
)
def test_browser_response_scores_like_the_python_response(
    page: Page, service: Service, qid: str, name: str, outcome: str
) -> None:
    policy = "mn-dhs-mekinist" if qid.startswith("mn-dhs-mekinist") else "eocco329"
    case = scoring_cases()[policy, name]
    assert package_for(catalog(), policy, case["request"]).questionnaire["id"] == qid

    form = load_form(service, qid)
    born = case["answers"].get("birth_date")
    patient = replace(PATIENT, birth_date=str(born) if born else PATIENT.birth_date)
    answers = with_birth_date(form, case["answers"], patient.birth_date)
    portal = Portal(page, service, form).open(patient)
    portal.fill(answers)
    in_browser = portal.submit()
    in_python = python_determination(service, policy, case["request"], answers)

    assert comparable(in_browser) == comparable(in_python)
    # and LHC-Forms exported the very answers fill() writes, in the same places
    submitted = page.evaluate("window.lastResponse")
    package = package_for(catalog(), policy, case["request"])
    assert answered(submitted) == answered(fill(package, answers))
    # the scorer's own outcome, and what the office is shown of it
    scored = score_json(catalog(), fill(package, answers), datetime.now(UTC).date())
    assert scored.outcome == outcome
    assert in_browser["outcome"] == office_outcome(scored)
    if name.startswith(("several", "NSCLC with several", "renewal started on samples failing")):
        assert len(scored.unmet) >= 2, scored.unmet
    assert submitted["subject"] == patient.subject()
    assert submitted["author"]["identifier"]["value"] == patient.npi


# --- c2. the payer's draft response: a pended request reopened, a renewal prefilled ----


def test_a_pended_request_reopens_with_its_answers(page: Page, service: Service) -> None:
    """Pended for one missing answer; the result links to the same form with
    the answers given so far (DTR ``context``); completing it approves."""
    complete = scoring_cases()["eocco329", "every initial criterion met"]["answers"]
    patient = replace(
        PATIENT, member_id=f"reopen-{uuid.uuid4().hex[:8]}", birth_date=str(complete["birth_date"])
    )
    missing = "combination_therapy"
    portal = Portal(page, service, load_form(service, "eocco329-initial")).open(patient)
    portal.fill({k: v for k, v in complete.items() if k != missing})
    first = portal.submit()
    assert first["outcome"] == "pended" and first["missingQuestions"] == ["I.C.combination_therapy"]
    given = answered(page.evaluate("window.lastResponse"))

    page.click("#complete-later")
    reopened = Portal(page, service, portal.form)
    reopened.ready()
    expect(page.locator("#reopened")).to_be_visible()
    # the patient and the prescriber come back with the request
    expect(page.locator("#member-id")).to_have_value(patient.member_id)
    expect(page.locator("#patient-name")).to_have_value(patient.name)
    expect(page.locator("#birth-date")).to_have_value(patient.birth_date)
    expect(page.locator("#npi")).to_have_value(patient.npi)
    assert answered(reopened.export()) == given  # every earlier answer is back
    reopened.values = dict(portal.values)
    reopened.answer(missing, complete[missing])
    second = reopened.submit()
    assert second["outcome"] == "approved"
    assert page.evaluate("window.lastResponse")["subject"] == patient.subject()


def test_a_renewal_shows_this_plans_earlier_approval(page: Page, service: Service) -> None:
    """The draft of a renewal answers "approved before by this plan" (Renewal.I)
    when the service holds an approval of the policy for the member."""
    patient = replace(PATIENT, member_id=f"renewal-{uuid.uuid4().hex[:8]}")
    package = package_for(catalog(), "eocco329", "initial")
    answers = scoring_cases()["eocco329", "every initial criterion met"]["answers"]
    status, _ = service.post_fhir(EVALUATE, fill(package, answers, subject=patient.reference))
    assert status == 201
    portal = Portal(page, service, load_form(service, "eocco329-renewal")).open(patient)
    portal.answer("started_on_samples", False)
    prior = portal.form.items[portal.form.link_id("prior_plan_approval")]
    expect(page.locator(sel(f"{prior.element_id}|true") + " input")).to_be_checked()
    # said to be the plan's answer, beside the question (shown once enabled)
    question = portal.item(prior.link_id)
    expect(question).to_have_class(re.compile(r"\bplan-answer\b"))
    note = question.locator(".lhc-question").first.evaluate(
        "node => getComputedStyle(node, '::after').content"
    )
    assert "plan's own records" in note
    # another member's form prefills nothing, and says nothing of the plan
    other = Portal(page, service, load_form(service, "eocco329-renewal")).open(
        replace(PATIENT, member_id="nobody")
    )
    other.answer("started_on_samples", False)
    expect(page.locator(sel(f"{prior.element_id}|true") + " input")).not_to_be_checked()
    expect(other.item(prior.link_id)).not_to_have_class(re.compile(r"\bplan-answer\b"))
    assert page.locator("#formContainer .plan-answer").count() == 0


# --- d. answers of disabled items -------------------------------------------------


def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from walk(item.get("item", []))


def find(response: dict[str, Any], link_id: str) -> dict[str, Any]:
    return next(i for i in walk(response.get("item", [])) if i["linkId"] == link_id)


def test_answers_of_disabled_items_are_not_exported_and_are_refused(
    page: Page, service: Service, tmp_path: Path
) -> None:
    portal = opened(page, service, "eocco329-initial")
    portal.answer("diagnosis", "I.D")
    portal.answer("kras_mutation", True)
    report = tmp_path / "kras-report.txt"
    report.write_text("KRAS G12V detected\n")
    attachment = "I.D.2.documentation"
    page.set_input_files(sel("file-" + portal.form.items[attachment].element_id), report)
    expect(portal.item(attachment)).to_contain_text(report.name)
    before = portal.export()
    kras = find(before, "I.D.2.kras_mutation")
    assert kras["answer"] == [{"valueBoolean": True}]
    assert find(before, attachment)["answer"][0]["valueAttachment"]["title"] == report.name

    portal.answer("diagnosis", "II.C")
    expect(portal.item("I.D.2")).to_have_count(0)
    after = portal.export()
    linked = [i["linkId"] for i in walk(after.get("item", []))]
    assert "I.D.diagnosis" in linked
    assert [x for x in linked if x.startswith("I.D.2")] == []
    assert find(after, "I.D.diagnosis")["answer"][0]["valueCoding"]["code"] == "II.C"

    # put the disabled answer back: the service must refuse it, naming the item
    tampered = copy.deepcopy(after)
    find(tampered, "I.D")["item"].append(copy.deepcopy(find(before, "I.D.2")))
    tampered["subject"] = {"reference": "Patient/example"}
    status, outcome = service.post_fhir(EVALUATE, tampered)
    assert status == 422, outcome
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics = [issue.get("diagnostics", "") for issue in outcome["issue"]]
    assert any("I.D.2.kras_mutation" in text and "not enabled" in text for text in diagnostics), (
        diagnostics
    )

    # the export as LHC-Forms made it is accepted
    status, _ = service.post_fhir(EVALUATE, after)
    assert status in (200, 201)


# --- screenshots -----------------------------------------------------------------

SHOTS: dict[str, dict[str, Any]] = {
    "eocco329-initial": {"diagnosis": "I.D", "prescriber_oncologist": False},
    "eocco329-renewal": {"started_on_samples": False, "prior_plan_approval": False},
    "mn-dhs-mekinist-initial": {"indication": "Melanoma"},
    "wha-mektovi-initial": {"indication": "Melanoma", "continuing_mektovi": False},
}


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.parametrize("qid", list(SHOTS))
def test_screenshot(page: Page, service: Service, qid: str, tmp_path: Path) -> None:
    """A full-page picture of the form with its main dependent questions shown,
    for docs/screenshots/."""
    portal = opened(page, service, qid)
    portal.fill(SHOTS[qid])
    form = portal.form
    given = {form.link_id(k): v for k, v in SHOTS[qid].items()}
    shown = [
        item.link_id
        for item in form.items.values()
        if item.enable_when
        and item.enable_when[0]["question"] in given
        and condition_values(form, item.enable_when[0])[0] == given[item.enable_when[0]["question"]]
    ]
    assert shown, f"{SHOTS[qid]} shows nothing in {qid}"
    for link_id in shown:
        expect(portal.item(link_id), f"{link_id} not shown").to_be_visible()
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{qid}.png"
    page.screenshot(path=str(target), full_page=True, animations="disabled")
    # the whole page: at least the viewport, and as tall as the page when it is longer
    # (Chromium lays the page out again for a full-page capture, so allow a margin)
    page_height = page.evaluate("document.documentElement.scrollHeight")
    width, height = png_size(target)
    assert width == VIEWPORT["width"], width
    assert height >= max(VIEWPORT["height"], page_height - 100), (height, page_height)
