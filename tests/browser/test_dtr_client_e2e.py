"""A DTR client that is not ours, end to end: the HL7 Da Vinci DTR reference
client's steps (github.com/HL7-DaVinci/dtr), done with the npm libraries it
uses, against the running service and a test EHR, up to an approved request.

The client's data steps run in Node (``cql/dtr-client.mjs``) with its own
libraries: ``fhirclient`` 2.6.0 (the version the client pins) talks to the
EHR and to the payer, ``cql-execution`` + ``cql-exec-fhir`` run the
prepopulation ELM; its rendering runs in headless Chromium with LHC-Forms
(the bundle scripts/install-lforms serves), as the client renders. Each of
the client's behaviours, as its code has them, is reproduced and checked:

- **fetches only what the Library declares** (``executeElm.js``
  ``retrieveNeededResources``, ``buildPopulatedResourceBundle.js``): the
  Patient read, then one ``?patient=<id>`` search per type of the
  prepopulation Library's ``dataRequirement``, the parameter taken from the
  EHR's CapabilityStatement by fhirclient; the EHR holds other types too
  (MedicationStatement, Procedure), never fetched. The test prints the EHR's
  fetch log;
- **matches a Library to the Questionnaire's ``cqf-library`` by unversioned
  url** (``fetchArtifacts.js`` ``searchBundle``): the canonical is
  ``url|version``; the client's own comparison, with the whole canonical,
  matches nothing (a known client behaviour, docs/conformance-notes.md);
- **resolves ``initialExpression`` as it does** (``QuestionnaireForm.jsx``
  ``getLibraryPrepopulationResult``): a lone name (``text/cql-identifier``)
  from the first Library's results;
- **prefills with ``information-origin`` ``auto``** (``prepopulate``), keeps
  it on answers left unchanged at submission and marks the prescriber's own
  ``manual`` (``qrUtils.js`` ``processInformationOrigin``);
- **hands LHC-Forms nothing but the package's Questionnaire**, converted,
  with the prefilled response merged by ``LForms.Util.mergeFHIRDataIntoLForms``
  (``loadAndMergeForms``): the answer lists load from the terminology server
  the form names (the service's ``ValueSet/$expand``, no token), and every
  coded question shown has its options.

Where the test departs from the client it says so: the payer's parameter
``packagebundle`` (DTR 2.2.0) is read where the client reads 2.0.1's
``PackageBundle``; the payer is called with the payer's own token (the client
uses the EHR's); the Library's ``Prescriber`` parameter (a PractitionerRole,
the launch context ``user``), which the client does not pass, is the order's
requester read from the EHR. The page that hosts LHC-Forms is given the
service's origin (Playwright answers for it, nothing is added to the
service): the service sends no CORS headers (its CapabilityStatement says
``cors: false``), so a client page on another origin could not expand an
answer list from the browser.

Nothing leaves the machine: the EHR is served by the test on loopback.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from qpackage.catalog import score_json
from tests.browser.conftest import ROOT, Problems, Service, new_context, watched
from tests.browser.test_lforms_e2e import (
    EVALUATE,
    Form,
    Item,
    Portal,
    catalog,
    enable,
    load_form,
    office_outcome,
    sel,
    us_date,
    walk,
)
from tests.support.cases import base_answers
from tests.support.dtr_requests import coverage, order
from tests.support.node import run_node

NODE_SCRIPT = ROOT / "cql" / "dtr-client.mjs"
LFORMS = "/static/lforms"
CLIENT_PAGE = "/dtr-client/"  # answered by Playwright, on the service's origin
DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/"
INFORMATION_ORIGIN = DTR + "information-origin"
QR_CONTEXT = DTR + "qr-context"
ORDER_ID = "mr1"
COVERAGE_ID = "cov1"
PRESCRIBER_ID = "pr1"
FORM = "eocco329-initial"
LIBRARY = "eocco329-prepopulation"
# the types the EHR serves, whether the chart holds any or not
SUPPORTED = (
    "Patient", "Condition", "Observation", "MedicationRequest", "MedicationStatement",
    "Procedure", "Coverage", "PractitionerRole",
)  # fmt: skip
# the page a DTR client app serves: LHC-Forms' bundle and a container
PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DTR client</title>
<link rel="stylesheet" href="{LFORMS}/webcomponent/styles.css"></head>
<body><div id="formContainer"></div>
<script src="{LFORMS}/webcomponent/assets/lib/zone.min.js"></script>
<script src="{LFORMS}/webcomponent/runtime.js"></script>
<script src="{LFORMS}/webcomponent/polyfills.js"></script>
<script src="{LFORMS}/webcomponent/main.js"></script>
<script src="{LFORMS}/fhir/R4/lformsFHIR.min.js"></script>
</body></html>"""
# QuestionnaireForm.jsx loadAndMergeForms: convert, the client's template
# options, merge the prefilled response, add to the page
RENDER = """async ([questionnaire, response]) => {
  let lform = LForms.Util.convertFHIRQuestionnaireToLForms(questionnaire, "R4");
  lform.templateOptions = {
    showFormHeader: false,
    showColumnHeaders: false,
    showQuestionCode: false,
    hideFormControls: true,
    showFormOptionPanelButton: true,
  };
  lform = LForms.Util.mergeFHIRDataIntoLForms("QuestionnaireResponse", response, lform, "R4");
  await LForms.Util.addFormToPage(lform, "formContainer");
}"""


# --- the test EHR -----------------------------------------------------------------


@dataclass
class EHR:
    """A FHIR R4 server on loopback holding one chart: reads by id,
    patient-compartment searches (``?patient=``, nothing else), a
    CapabilityStatement saying so; every request logged."""

    resources: list[dict[str, Any]]
    log: list[str] = field(default_factory=list)
    url: str = ""

    def by_id(self, kind: str, rid: str) -> dict[str, Any] | None:
        for resource in self.resources:
            if resource["resourceType"] == kind and resource["id"] == rid:
                return resource
        return None

    def search(self, kind: str, patient: str) -> list[dict[str, Any]]:
        reference = f"Patient/{patient}"
        return [
            r
            for r in self.resources
            if r["resourceType"] == kind
            and reference
            in (r.get("subject", {}).get("reference"), r.get("beneficiary", {}).get("reference"))
        ]

    def capability(self) -> dict[str, Any]:
        kinds = sorted({*SUPPORTED, *(r["resourceType"] for r in self.resources)})
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": kind,
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": [
                                {"name": "_id" if kind == "Patient" else "patient", "type": "token"}
                            ],
                        }
                        for kind in kinds
                    ],
                }
            ],
        }

    def answer(self, target: str) -> tuple[int, dict[str, Any]]:
        self.log.append(f"GET {target}")
        parts = urllib.parse.urlsplit(target)
        path = parts.path.strip("/").split("/")
        query = urllib.parse.parse_qs(parts.query)
        if path == ["metadata"]:
            return 200, self.capability()
        if len(path) == 2:
            found = self.by_id(*path)
            return (200, found) if found else (404, outcome(f"{target} not found"))
        if len(path) == 1 and set(query) == {"patient"}:
            entries = [{"resource": r} for r in self.search(path[0], query["patient"][0])]
            return 200, {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(entries),
                "entry": entries,
            }
        return 400, outcome(f"not supported here: {target}")


def outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": text}],
    }


def serve(ehr: EHR) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = ehr.answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the EHR keeps its own log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ehr.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture()
def ehr_for() -> Iterator[Any]:
    """Start a test EHR on a chart; each is stopped after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(chart: list[dict[str, Any]]) -> EHR:
        ehr = EHR(chart)
        servers.append(serve(ehr))
        return ehr

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def chart_of(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's chart with what the launch brings: the order (requested by
    the PractitionerRole, billed to the Coverage), the Coverage and the
    PractitionerRole."""
    member = f"Patient/{case['patient']}"
    drug_order = order([], "Avmapki Fakzynja Co-Pack", member=member)["resource"]
    drug_order |= {
        "id": ORDER_ID,
        "requester": {"reference": f"PractitionerRole/{PRESCRIBER_ID}"},
        "insurance": [{"reference": f"Coverage/{COVERAGE_ID}"}],
    }
    member_coverage = coverage(member)["resource"] | {"id": COVERAGE_ID}
    role = {
        "resourceType": "PractitionerRole",
        "id": PRESCRIBER_ID,
        "specialty": [{"coding": [case["specialty"]]}],
    }
    return [*case["chart"], drug_order, member_coverage, role]


# --- the client's steps -------------------------------------------------------------


def run_client(ehr: EHR, service: Service, patient: str) -> dict[str, Any]:
    """cql/dtr-client.mjs: package, Library, EHR fetches, ELM, prefill."""
    if not (ROOT / "cql" / "node_modules" / "fhirclient").exists():
        pytest.fail("fhirclient is not installed: run scripts/install-cql-tools", pytrace=False)
    token = service.authorization()["Authorization"].removeprefix("Bearer ")
    request = {
        "ehr": ehr.url,
        "patient": patient,
        "order": f"MedicationRequest/{ORDER_ID}",
        "coverage": f"Coverage/{COVERAGE_ID}",
        "payer": service.url,
        "token": token,
    }
    return dict(run_node(NODE_SCRIPT, request))


def answers_of(response: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {i["linkId"]: i["answer"] for i in walk(response.get("item") or []) if i.get("answer")}


def value_of(answer: dict[str, Any]) -> Any:
    """A prefilled answer as the case writes it (a choice as its code)."""
    (key,) = [k for k in answer if k.startswith("value")]
    return answer[key]["code"] if key == "valueCoding" else answer[key]


def source(answer: dict[str, Any]) -> str | None:
    for extension in answer.get("extension", []):
        if extension["url"] == INFORMATION_ORIGIN:
            return str(extension["extension"][0]["valueCode"])
    return None


def same_value(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """qrUtils.js answersHaveSameValue: the value[x] alike (a Coding by system and code)."""
    keys = [k for k in one if k.startswith("value")]
    if keys != [k for k in other if k.startswith("value")] or not keys:
        return False
    a, b = one[keys[0]], other[keys[0]]
    if keys[0] == "valueCoding":
        return bool(a.get("system") == b.get("system") and a.get("code") == b.get("code"))
    return bool(a == b)


def with_origin(original: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """qrUtils.js processInformationOrigin: an answer the prefill gave and the
    prescriber left is ``auto``; a new one ``manual`` (``override`` where it
    replaced a prefilled one)."""
    out = copy.deepcopy(new)
    before = {i["linkId"]: i for i in walk(original.get("item") or [])}

    def mark(source_code: str) -> list[dict[str, Any]]:
        return [
            {"url": INFORMATION_ORIGIN, "extension": [{"url": "source", "valueCode": source_code}]}
        ]

    for item in walk(out.get("item") or []):
        was = before.get(item["linkId"], {}).get("answer", [])
        auto = [a for a in was if source(a) == "auto"]
        for answer in item.get("answer", []):
            kept = next((a for a in was if same_value(answer, a)), None)
            if kept is not None:
                answer["extension"] = mark(source(kept) or "manual")
            else:
                answer["extension"] = mark("override" if auto else "manual")
    return out


# --- the test -----------------------------------------------------------------------


@pytest.mark.cases("dtr_client.yaml")
def test_the_reference_clients_steps_reach_the_determination(
    case: dict[str, Any], ehr_for: Any, service: Service, browser: Browser
) -> None:
    ehr = ehr_for(chart_of(case))
    patient = case["patient"]
    out = run_client(ehr, service, patient)
    questionnaire, response = out["questionnaire"], out["response"]
    print(f"\n{case['name']}: the EHR's fetch log")
    print("\n".join(f"  {line}" for line in ehr.log))

    # the package's Questionnaire names its Library by a versioned canonical;
    # the Library matched has that url
    (canonical,) = [
        e["valueCanonical"] for e in questionnaire["extension"] if e["url"].endswith("/cqf-library")
    ]
    url, version = canonical.split("|")
    assert out["libraries"] == [
        {"url": url, "version": version, "name": "Eocco329Prepopulation"}
    ], out["libraries"]

    # only the Library's dataRequirement types were fetched, each by ?patient=
    declared = ["Patient", "Condition", "Observation"]
    library = service.get_json(f"/Library/{LIBRARY}")
    assert [d["type"] for d in library["dataRequirement"]] == declared
    assert out["neededResources"] == declared
    searches = [line for line in ehr.log if "?" in line]
    assert searches == [
        f"GET /{kind}?patient={patient}" for kind in reversed(declared) if kind != "Patient"
    ]
    assert ehr.log == [
        f"GET /MedicationRequest/{ORDER_ID}",
        f"GET /Coverage/{COVERAGE_ID}",
        f"GET /PractitionerRole/{PRESCRIBER_ID}",
        f"GET /Patient/{patient}",
        "GET /metadata",
        *searches,
    ]
    held = {r["resourceType"] for r in ehr.resources}
    fetched = {e["resource"]["resourceType"] for e in out["bundle"]["entry"]}
    # the chart's other types (read by id at launch, or never asked for) are not in the Bundle
    assert fetched <= set(declared), fetched
    assert held - fetched - {"MedicationRequest", "Coverage", "PractitionerRole"}, held

    # the lone names resolved from the Library's results: what the chart says
    prefilled = answers_of(response)
    form = load_form(service, FORM)
    by_name = {form.link_id(name): value for name, value in case["prefilled"].items()}
    assert {link: value_of(a[0]) for link, a in prefilled.items()} == by_name
    for link, answers in prefilled.items():
        # one answer per extension of the item, as the client takes it
        assert {json.dumps(a, sort_keys=True) for a in answers} == {
            json.dumps(answers[0], sort_keys=True)
        }
        assert source(answers[0]) == "auto", link

    # LHC-Forms: the package's Questionnaire alone, the prefill merged
    problems = Problems()
    elsewhere: list[str] = []
    context = new_context(browser)
    try:
        context.route(service.url + CLIENT_PAGE, fulfil)
        # nothing leaves the machine: a request elsewhere is refused, and named
        context.route(re.compile(r"^(?!http://127\.0\.0\.1[:/])"), refuse(elsewhere))
        page = watched(context, problems)
        page.goto(service.url + CLIENT_PAGE)
        page.evaluate(RENDER, [questionnaire, response])
        submitted = complete(page, service, form, case, by_name, response)
    finally:
        context.close()
    assert problems.errors == [], problems.errors
    assert elsewhere == [], elsewhere

    status, body = service.post_fhir(EVALUATE, submitted)
    assert status in (200, 201), body
    determination = service.get_json(f"/determinations/{body['id']}")
    # the scorer's outcome, and what the office is told: EOCCO has a
    # pharmacist decide an investigational use (pended for review meanwhile)
    scored = score_json(catalog(), submitted, date.fromisoformat(determination["evaluatedAt"]))
    print(f"  determination: {scored.outcome}; the office is told: {determination['outcome']}")
    assert scored.outcome == case["outcome"], scored
    assert determination["outcome"] == office_outcome(scored), determination

    # each prefilled answer still says where it came from; the prescriber's are manual
    sent = answers_of(submitted)
    for link in by_name:
        assert [source(a) for a in sent[link]] == ["auto"], (link, sent[link])
    by_hand = [
        answer for link, answers in sent.items() if link not in by_name for answer in answers
    ]
    assert by_hand
    assert {source(answer) for answer in by_hand} == {"manual"}


def fulfil(route: Route) -> None:
    route.fulfill(status=200, content_type="text/html; charset=utf-8", body=PAGE)


def refuse(seen: list[str]) -> Callable[[Route], None]:
    def handler(route: Route) -> None:
        seen.append(route.request.url)
        route.abort()

    return handler


def complete(
    page: Page,
    service: Service,
    form: Form,
    case: dict[str, Any],
    prefilled: dict[str, Any],
    original: dict[str, Any],
) -> dict[str, Any]:
    """What the prescriber sees and does: the prefilled answers shown, every
    coded question shown with its options, the rest answered by hand; the
    response the client sends."""
    portal = Portal(page, service, form)
    portal.values.update(prefilled)
    coded = [i for i in form.questions() if i.options]
    wanted = {
        form.link_id(name): value
        for name, value in base_answers("eocco329", case["by_hand"]).items()
        if form.link_id(name) not in prefilled
    }
    for item in form.questions():
        enabled = form.enabled(portal.values)
        if item.link_id in prefilled and enabled[item.link_id]:
            shown(page, form, item.link_id, prefilled[item.link_id])
        if item.link_id in wanted:
            portal.answer(item.link_id, wanted[item.link_id])
    # every coded question the prescriber was shown lists every option
    seen = [i for i in coded if form.enabled(portal.values)[i.link_id]]
    assert seen, "no coded question was shown"
    for item in seen:
        lists_every_option(page, item)
    # prefilled answers enabled late (KRAS under the LGSOC diagnosis) show then
    for link, value in prefilled.items():
        if form.enabled(portal.values)[link]:
            shown(page, form, link, value)
    qr = with_origin(original, portal.export())

    # once the response is taken: every other coded question brought up by
    # answering what shows it, each with every option (all the form's lists)
    for item in coded:
        if item not in seen:
            enable(portal, item.link_id)
            lists_every_option(page, item)
    assert len(coded) == len(form.answer_lists) == 7, [i.link_id for i in coded]

    # QuestionnaireForm.jsx getQuestionnaireResponse
    qr |= {
        "status": "completed",
        "author": {"reference": f"PractitionerRole/{PRESCRIBER_ID}"},
        "subject": {"reference": f"Patient/{case['patient']}"},
        "questionnaire": f"{form.questionnaire['url']}|{form.questionnaire['version']}",
        "extension": [
            {
                "url": QR_CONTEXT,
                "valueReference": {
                    "reference": f"MedicationRequest/{ORDER_ID}",
                    "type": "MedicationRequest",
                },
            },
            {
                "url": QR_CONTEXT,
                "valueReference": {"reference": f"Coverage/{COVERAGE_ID}", "type": "Coverage"},
            },
        ],
    }
    return qr


def lists_every_option(page: Page, item: Item) -> None:
    """The question's answer list as LHC-Forms shows it: one radio per
    option of the service's expansion."""
    assert item.options, item.link_id
    for option in item.options:
        choice = sel(f"{item.element_id}|{option.get('system', '')}|{option['code']}")
        expect(page.locator(choice), f"{item.link_id}: {option['code']}").to_have_count(1)
    radios = page.locator(sel("item-" + item.element_id) + " input[type=radio]")
    expect(radios).to_have_count(len(item.options))


def shown(page: Page, form: Form, link_id: str, value: Any) -> None:
    item = form.items[link_id]
    eid = item.element_id
    if item.type == "date":
        expect(page.locator(sel(eid) + " input")).to_have_value(us_date(value))
    elif item.type == "boolean":
        choice = sel(f"{eid}|{'true' if value else 'false'}")
        expect(page.locator(choice + " input")).to_be_checked()
    else:
        coding = item.coding(str(value))
        choice = sel(f"{eid}|{coding.get('system', '')}|{coding['code']}")
        expect(page.locator(choice + " input")).to_be_checked()
