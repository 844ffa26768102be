"""The plan's PA metrics: a store seeded with hand-made records, the figures
worked out by hand, and the API (JSON, CSV, the chart page) and the CLI
giving them; who may read them; the periods accepted."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dtr.cli import main
from qpackage.catalog import Catalog
from review.metrics import parse_period
from service.app import create_app
from service.settings import Settings
from service.store import Record, SQLiteStore
from tests.support.callers import add_user, authorize, sign_in

AS_OF = date(2026, 12, 2)
P1, P2 = "eocco329", "mn-dhs-mekinist"


def record(
    rid: str,
    policy: str,
    received: str,
    decided: str | None,
    *,
    outcome: str,
    state: str = "automatic",
    priority: str = "standard",
    unmet: tuple[str, ...] = (),
    excluded: tuple[str, ...] = (),
    investigational: tuple[str, ...] = (),
    review: tuple[str, ...] = (),
    pend_reason: str | None = None,
    quantity: tuple[int, int] | None = None,
) -> Record:
    """A stored record as the service makes one, with only what the metrics read filled in.
    Instants are given as ``MM-DDTHH`` in 2026 (or in full)."""

    def instant(text: str) -> str:
        return text if len(text) > 8 else f"2026-{text}:00:00+00:00"

    determination: dict[str, Any] = {
        "policy": policy,
        "request": "initial",
        "outcome": outcome,
        "sections": {
            "unmet": list(unmet),
            "missing": [],
            "investigational": list(investigational),
            "review": list(review),
            "excluded": list(excluded),
        },
        "pendReason": pend_reason,
    }
    if quantity is not None:  # (requested, approved)
        determination["quantity"] = {
            "requested": quantity[0], "approved": quantity[1], "unit": "capsules and tablets",
            "periodDays": 28, "modified": quantity[1] < quantity[0],
        }  # fmt: skip
    return Record(
        id=rid,
        response_key=f"key-{rid}",
        response_id=rid,
        request_id=f"request-{rid}",
        received_at=instant(received),
        questionnaire=f"https://pa-dtr.example.org/fhir/Questionnaire/{policy}-initial|1.0.0-r1",
        policy=policy,
        policy_version="1.0.0",
        evaluated_at="2026-11-01",
        outcome=outcome,
        response={"resourceType": "QuestionnaireResponse", "id": rid},
        determination=determination,
        claim_response={"resourceType": "ClaimResponse", "id": rid},
        member=f"Patient/{rid}",
        owner="organization/clinic-a",
        state=state,
        priority=priority,
        decided_at=instant(decided) if decided else None,
        reviewer="user pat" if state == "reviewed" else None,
        recommendation=determination if state != "automatic" else None,
    )


# Received in November 2026 unless said otherwise; "time" is decided - received.
STD, EXP, REVIEWED = "standard", "expedited", "reviewed"
RECORDS = [
    # --- eocco329 (P1): 9 in the period
    # a1, a2: standard, automatic approvals, 0 h (a1 for the 66 requested: not modified)
    record("a1", P1, "11-02T09", "11-02T09", outcome="approved", quantity=(66, 66)),
    record("a2", P1, "11-03T10", "11-03T10", outcome="approved"),
    # a3: standard, a pharmacist's denial after 30 h
    record("a3", P1, "11-04T08", "11-05T14", outcome="denied", state=REVIEWED, unmet=("I.A",)),
    # a4: standard, a pharmacist's approval after 6 h, for less than requested (66 of 90):
    # an approval in CMS's shares, and counted apart as modified in the plan's
    record("a4", P1, "11-06T09", "11-06T15", outcome="approved", state=REVIEWED,
           quantity=(90, 66)),
    # a5: standard, the scorer pends for information (decided_at set, yet no decision)
    record("a5", P1, "11-07T09", "11-07T09", outcome="pended", pend_reason="missing-information"),
    # a6: expedited, automatic approval, 0 h
    record("a6", P1, "11-08T12", "11-08T12", outcome="approved", priority=EXP),
    # a7: expedited, a pharmacist's investigational finding after 12 h
    record("a7", P1, "11-09T00", "11-09T12", outcome="investigational", state=REVIEWED,
           priority=EXP, investigational=("II.A",)),
    # a8: expedited, awaiting a pharmacist
    record("a8", P1, "11-10T00", None, outcome="pended", state="awaiting-review", priority=EXP,
           review=("I.B",), pend_reason="review"),
    # a9: standard, automatic denial, 0 h; I.C cited twice, counted once
    record("a9", P1, "11-11T00", "11-11T00", outcome="denied", unmet=("I.A", "I.C"),
           excluded=("I.C",)),
    # --- mn-dhs-mekinist (P2): 4 in the period
    # b1: standard, automatic denial, 0 h
    record("b1", P2, "11-12T00", "11-12T00", outcome="denied", unmet=("Melanoma.1",)),
    # b2: standard, a pharmacist pends asking for something: 24 h in review, no decision
    record("b2", P2, "11-13T08", "11-14T08", outcome="pended", state=REVIEWED,
           pend_reason="missing-information"),
    # b3: expedited, automatic approval, 0 h
    record("b3", P2, "11-15T00", "11-15T00", outcome="approved", priority=EXP),
    # b4: standard, a pharmacist's denial after 6 h, decided after the period: counts
    record("b4", P2, "11-30T23", "12-01T05", outcome="denied", state=REVIEWED,
           excluded=("Exclusion.1",)),
    # --- outside the period: the first instant after it, the last before it
    record("x1", P1, "12-01T00", "12-01T00", outcome="approved", priority=STD),
    record("x2", P1, "2026-10-31T23:59:59+00:00", "2026-10-31T23:59:59+00:00",
           outcome="denied", unmet=("I.A",)),
]  # fmt: skip

# worked out by hand from RECORDS
EOCCO329 = {
    "received": 9,  # a1..a9
    "standard": {
        "received": 6,  # a1 a2 a3 a4 a5 a9
        "decided": 5,  # a1 a2 a3 a4 a9 (a5 pended)
        "undecided": 1,  # a5
        "approved": {"count": 3, "of": 5, "percent": 60.0},  # a1 a2 a4
        "denied": {"count": 2, "of": 5, "percent": 40.0},  # a3 a9
        "approvedAfterAppeal": None,
        "approvedAfterExtendedTimeframe": None,
        # 0 0 30 6 0: mean 36/5 = 7.2; sorted 0 0 0 6 30, median 0
        "decisionTime": {"count": 5, "averageHours": 7.2, "medianHours": 0.0},
    },
    "expedited": {
        "received": 3,  # a6 a7 a8
        "decided": 2,  # a6 a7
        "undecided": 1,  # a8
        "approved": {"count": 1, "of": 2, "percent": 50.0},  # a6
        "denied": {"count": 1, "of": 2, "percent": 50.0},  # a7 (investigational)
        # 0 12: mean 6, median 6
        "decisionTime": {"count": 2, "averageHours": 6.0, "medianHours": 6.0},
    },
    "plan": {
        "approvedModified": 1,  # a4 (a1 approved as requested)
        "pendedForInformation": 1,  # a5
        "pendedForReview": 1,  # a8
        # reviewed a3 30, a4 6, a7 12: mean 48/3 = 16; sorted 6 12 30, median 12
        "reviewTime": {"count": 3, "averageHours": 16.0, "medianHours": 12.0},
        "denialReasons": {"I.A": 2, "I.C": 1, "II.A": 1},  # a3 a9 | a9 | a7
    },
}
MEKINIST = {
    "received": 4,  # b1..b4
    "standard": {
        "received": 3,  # b1 b2 b4
        "decided": 2,  # b1 b4
        "undecided": 1,  # b2
        "approved": {"count": 0, "of": 2, "percent": 0.0},
        "denied": {"count": 2, "of": 2, "percent": 100.0},  # b1 b4
        "approvedAfterAppeal": None,
        "approvedAfterExtendedTimeframe": None,
        # 0 6: mean 3, median 3
        "decisionTime": {"count": 2, "averageHours": 3.0, "medianHours": 3.0},
    },
    "expedited": {
        "received": 1,  # b3
        "decided": 1,
        "undecided": 0,
        "approved": {"count": 1, "of": 1, "percent": 100.0},
        "denied": {"count": 0, "of": 1, "percent": 0.0},
        "decisionTime": {"count": 1, "averageHours": 0.0, "medianHours": 0.0},
    },
    "plan": {
        "approvedModified": 0,
        "pendedForInformation": 1,  # b2 (a pharmacist's pend)
        "pendedForReview": 0,
        # reviewed b2 24, b4 6: mean 15, median 15
        "reviewTime": {"count": 2, "averageHours": 15.0, "medianHours": 15.0},
        "denialReasons": {"Exclusion.1": 1, "Melanoma.1": 1},  # b4 | b1
    },
}
ALL = {
    "received": 13,  # 9 + 4
    "standard": {
        "received": 9,  # 6 + 3
        "decided": 7,  # 5 + 2
        "undecided": 2,  # a5 b2
        "approved": {"count": 3, "of": 7, "percent": 42.9},  # 3/7 = 42.857
        "denied": {"count": 4, "of": 7, "percent": 57.1},  # 4/7 = 57.143
        "approvedAfterAppeal": None,
        "approvedAfterExtendedTimeframe": None,
        # 0 0 30 6 0 0 6 = 42: mean 42/7 = 6; sorted 0 0 0 0 6 6 30, median 0
        "decisionTime": {"count": 7, "averageHours": 6.0, "medianHours": 0.0},
    },
    "expedited": {
        "received": 4,  # a6 a7 a8 b3
        "decided": 3,  # a6 a7 b3
        "undecided": 1,  # a8
        "approved": {"count": 2, "of": 3, "percent": 66.7},  # a6 b3
        "denied": {"count": 1, "of": 3, "percent": 33.3},  # a7
        # 0 12 0: mean 4; sorted 0 0 12, median 0
        "decisionTime": {"count": 3, "averageHours": 4.0, "medianHours": 0.0},
    },
    "plan": {
        "approvedModified": 1,  # a4
        "pendedForInformation": 2,  # a5 b2
        "pendedForReview": 1,  # a8
        # 30 6 12 24 6 = 78: mean 15.6; sorted 6 6 12 24 30, median 12
        "reviewTime": {"count": 5, "averageHours": 15.6, "medianHours": 12.0},
        "denialReasons": {"Exclusion.1": 1, "I.A": 2, "I.C": 1, "II.A": 1, "Melanoma.1": 1},
    },
}


@pytest.fixture()
def database(tmp_path: Path) -> str:
    path = str(tmp_path / "metrics.sqlite3")
    store = SQLiteStore(path)
    for each in RECORDS:
        assert store.save(each)[1]
    store.close()
    return path


@pytest.fixture()
def app(catalog: Catalog, database: str) -> Any:
    return create_app(Settings(database=database), catalog=catalog, clock=lambda: AS_OF)


@pytest.fixture()
def pharmacist(app: Any) -> TestClient:
    add_user(app.state.store, "pat", "pharmacist", None)
    client = TestClient(app)
    sign_in(client, "pat")
    return client


def by_policy(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["policy"]["id"]: entry for entry in report["policies"]}


def test_the_api_reports_the_figures_worked_out_by_hand(pharmacist: TestClient) -> None:
    reply = pharmacist.get("/metrics", params={"period": "2026-11"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    report = reply.json()
    assert report["period"] == {
        "label": "2026-11",
        "start": "2026-11-01T00:00:00+00:00",
        "end": "2026-12-01T00:00:00+00:00",
    }
    assert report["all"] == ALL
    policies = by_policy(report)
    assert {k: v for k, v in policies[P1].items() if k != "policy"} == EOCCO329
    assert {k: v for k, v in policies[P2].items() if k != "policy"} == MEKINIST
    # every policy of the catalog is listed with its drugs, requests or not
    assert list(policies) == ["eocco329", "mn-dhs-cotellic", "mn-dhs-mekinist", "wha-mektovi"]
    assert policies[P1]["policy"] == {
        "id": "eocco329",
        "number": "EOCCO329",
        "title": "avutometinib and defactinib (Avmapki Fakzynja Co-Pack)",
        "drugs": [d.name for d in pharmacist.app.state.catalog.policies[P1].drugs],  # type: ignore[attr-defined]
        "current": True,
    }
    assert policies[P1]["policy"]["drugs"]
    idle = policies["wha-mektovi"]
    assert idle["received"] == 0
    assert idle["standard"]["approved"] == {"count": 0, "of": 0, "percent": None}
    assert idle["expedited"]["decisionTime"] == {
        "count": 0,
        "averageHours": None,
        "medianHours": None,
    }
    assert any("no appeals" in note for note in report["notes"])
    # the quarter holds November's 13, x1 (December 1, 00:00) and x2 (October 31, 23:59:59)
    quarter = pharmacist.get("/metrics", params={"period": "2026-Q4"}).json()
    assert quarter["all"]["received"] == 15


def test_the_cli_csv_and_json_give_the_same_figures(
    pharmacist: TestClient, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = pharmacist.get("/metrics", params={"period": "2026-11"}).json()
    assert main(["metrics", "--period", "2026-11", "--db", database]) == 0
    assert json.loads(capsys.readouterr().out) == api

    assert main(["metrics", "--period", "2026-11", "--format", "csv", "--db", database]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text)))
    cell = {(r["policy"], r["priority"], r["measure"], r["section"]): r for r in rows}

    def figure(policy: str, priority: str, measure: str, section: str = "") -> tuple[str, ...]:
        r = cell[(policy, priority, measure, section)]
        return r["count"], r["of"], r["value"], r["unit"]

    assert figure("all", "", "received") == ("13", "", "", "requests")
    assert figure("all", "standard", "approved") == ("3", "7", "42.9", "percent")
    assert figure("all", "standard", "denied") == ("4", "7", "57.1", "percent")
    assert figure("all", "standard", "undecided") == ("2", "", "", "requests")
    assert figure("all", "expedited", "approved") == ("2", "3", "66.7", "percent")
    assert figure("all", "expedited", "denied") == ("1", "3", "33.3", "percent")
    assert figure("all", "standard", "decision_time_average") == ("7", "", "6.0", "hours")
    assert figure("all", "standard", "decision_time_median") == ("7", "", "0.0", "hours")
    assert figure("all", "expedited", "decision_time_average") == ("3", "", "4.0", "hours")
    assert figure("all", "", "approved_modified") == ("1", "", "", "requests")
    assert figure(P2, "", "approved_modified") == ("0", "", "", "requests")
    assert figure("all", "", "pended_for_information") == ("2", "", "", "requests")
    assert figure("all", "", "pended_for_review") == ("1", "", "", "requests")
    assert figure("all", "", "review_time_average") == ("5", "", "15.6", "hours")
    assert figure("all", "", "review_time_median") == ("5", "", "12.0", "hours")
    assert figure("all", "", "denial_reason", "I.A") == ("2", "", "", "denials")
    appeal = cell[("all", "standard", "approved_after_appeal", "")]
    assert appeal["value"] == "" and "no appeals" in appeal["note"]
    extension = cell[("all", "standard", "approved_after_extended_timeframe", "")]
    assert extension["value"] == "" and "no extensions" in extension["note"]
    assert figure(P1, "standard", "approved") == ("3", "5", "60.0", "percent")
    assert figure(P1, "standard", "decision_time_average") == ("5", "", "7.2", "hours")
    assert figure(P1, "expedited", "denied") == ("1", "2", "50.0", "percent")
    assert figure(P1, "", "review_time_average") == ("3", "", "16.0", "hours")
    assert figure(P1, "", "denial_reason", "I.C") == ("1", "", "", "denials")
    assert figure(P2, "standard", "denied") == ("2", "2", "100.0", "percent")
    assert figure(P2, "", "review_time_median") == ("2", "", "15.0", "hours")
    assert figure(P2, "", "denial_reason", "Exclusion.1") == ("1", "", "", "denials")
    assert cell[(P1, "", "received", "")]["policy_number"] == "EOCCO329"
    # the API's CSV is the CLI's
    csv_reply = pharmacist.get("/metrics", params={"period": "2026-11", "format": "csv"})
    assert csv_reply.headers["content-type"].startswith("text/csv")
    assert csv_reply.text == text


def test_the_cli_refuses_a_bad_period(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["metrics", "--period", "2026-13", "--db", database])
    assert exit_.value.code == 2
    assert "not a period" in capsys.readouterr().err


def test_only_the_payers_staff_read_the_metrics(app: Any) -> None:
    anonymous = TestClient(app)
    for path in ("/metrics?period=2026-11", "/metrics/chart?period=2026-11"):
        reply = anonymous.get(path)
        assert reply.status_code == 401, reply.text
        assert reply.json()["issue"][0]["code"] == "login"
    add_user(app.state.store, "olive", "office", "clinic-a")
    office = TestClient(app)
    sign_in(office, "olive")
    for path in ("/metrics?period=2026-11", "/metrics/chart?period=2026-11"):
        reply = office.get(path)
        assert reply.status_code == 403, reply.text
        assert "role office" in reply.text and "pharmacist" in reply.text
    # a system, whatever it was registered for: the metrics are read by a person
    for n, scopes in enumerate(("system/MeasureReport.r", "system/ClaimResponse.r", "system/*.*")):
        system = authorize(TestClient(app), f"system-{n}", scopes)
        reply = system.get("/metrics?period=2026-11")
        assert reply.status_code == 403, (scopes, reply.text)
        assert "received" not in reply.text
    scopes = anonymous.get("/.well-known/smart-configuration").json()["scopes_supported"]
    assert "system/MeasureReport.r" not in scopes


@pytest.mark.parametrize(
    "query", ["period=2026-13", "period=2026-Q5", "period=26-11", "", "period=2026-11&format=xml"]
)
def test_a_bad_request_is_a_400_outcome(pharmacist: TestClient, query: str) -> None:
    reply = pharmacist.get(f"/metrics?{query}")
    assert reply.status_code == 400, reply.text
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] in ("invalid", "required")
    chart = pharmacist.get("/metrics/chart?period=2026-13")
    assert chart.status_code == 400 and chart.json()["resourceType"] == "OperationOutcome"


def test_the_chart_page_shows_the_numbers(pharmacist: TestClient) -> None:
    reply = pharmacist.get("/metrics/chart", params={"period": "2026-11"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    policy = reply.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    page = reply.text
    assert page.count("<svg") == 5  # all, and each of the four policies
    assert 'role="img"' in page and "<desc" in page and "<table>" in page
    assert "<script" not in page and "src=" not in page  # no scripts, no outside resources
    assert "https://" not in page
    # the figures, in the chart's text and the table beside it
    assert "Standard approved: 42.9% (3 of 7)" in page  # all policies
    assert "Standard approved: 60.0% (3 of 5)" in page  # eocco329
    assert "Expedited denied: 33.3% (1 of 3)" in page
    assert "15.6 h" in page  # all: time in review, average
    assert "Denials citing section I.A" in page
    assert "Approved for less than requested (also counted as approved)" in page
    assert "not recorded: this service records no appeals" in page
    assert "no decided request" in page  # the policies without requests
    # without a period: the current month
    current = pharmacist.get("/metrics/chart")
    assert current.status_code == 200
    assert datetime.now(UTC).strftime("%Y-%m") in current.text


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-Q1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-Q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_periods(text: str, start: datetime, end: datetime) -> None:
    period = parse_period(text)
    assert (period.label, period.start, period.end) == (text, start, end)


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "2026-Q0", "2026-Q5", "2026-1", "26", "2026-11-01", "", "1969",
             "2026-q4", "Q4-2026", "2026/11"],
)  # fmt: skip
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a period"):
        parse_period(text)
