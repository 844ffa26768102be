"""Behaviour through the public API, with expectations written by hand from
the policies: the authorization period at month ends, the bounds of numeric
answers, and the all/any of an enableWhen with several conditions.

Answers come from the case tables' bases (``base_answers``) and linkIds from
``package.link_of``, so the tests follow the policies as they gain questions.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from builder.questionnaire import build
from policies.loader import parse_policy
from policies.model import Policy, walk
from qpackage.catalog import Catalog, score_json
from questionnaires.checks import iter_items
from scoring import Determination, InvalidInput
from scoring.determination import anniversary
from scoring.fill import fill
from tests.support.cases import AS_OF, base_answers, folder_catalog, package_for


def assert_period(determination: Any, as_of: date, months: int, end: date) -> None:
    """An approval from the evaluation date through ``end`` (``months`` long)."""
    assert determination.outcome == "approved", determination.to_json()
    authorization = determination.to_json()["authorization"]
    assert (authorization["start"], authorization["end"], authorization["months"]) == (
        as_of.isoformat(),
        end.isoformat(),
        months,
    )


def scored(
    catalog: Catalog,
    policy: str,
    request: str,
    answers: dict[str, Any],
    as_of: date = AS_OF,
    drug: str | None = None,
) -> Determination:
    package = package_for(catalog, policy, request, drug)
    return score_json(catalog, fill(package, answers), as_of)


def refused(catalog: Catalog, policy: str, request: str, answers: dict[str, Any]) -> str:
    """The diagnostics of the 422 OperationOutcome refusing these answers."""
    with pytest.raises(InvalidInput) as caught:
        scored(catalog, policy, request, answers)
    error = caught.value
    assert error.status == 422
    outcome = error.outcome()
    OperationOutcome.model_validate(outcome)
    assert outcome["issue"] and all(issue["severity"] == "error" for issue in outcome["issue"])
    return " | ".join(issue["diagnostics"] for issue in outcome["issue"])


# --- the authorization period ------------------------------------------------
# Authorization runs from the evaluation date through the day before the
# N-month anniversary; when the anniversary month is too short for the day
# (31 August + 6 months: there is no 31 February), the anniversary is the
# first day of the month after, so the authorization covers the whole of the
# short month. Every expected date below is worked out by hand.

# (start, months, anniversary)
ANNIVERSARIES = [
    (date(2026, 11, 24), 6, date(2027, 5, 24)),  # mid-month
    (date(2027, 1, 31), 6, date(2027, 7, 31)),  # July has a 31st
    (date(2026, 7, 31), 6, date(2027, 1, 31)),  # across the year end
    (date(2026, 8, 31), 6, date(2027, 3, 1)),  # no 31 February
    (date(2026, 8, 30), 6, date(2027, 3, 1)),  # no 30 February
    (date(2026, 8, 29), 6, date(2027, 3, 1)),  # no 29 February in 2027
    (date(2026, 8, 28), 6, date(2027, 2, 28)),
    (date(2027, 8, 29), 6, date(2028, 2, 29)),  # 2028 is a leap year
    (date(2027, 8, 30), 6, date(2028, 3, 1)),
    (date(2027, 3, 31), 6, date(2027, 10, 1)),  # no 31 September
    (date(2026, 5, 31), 6, date(2026, 12, 1)),  # no 31 November
    (date(2026, 4, 30), 6, date(2026, 10, 30)),
    (date(2028, 2, 29), 12, date(2029, 3, 1)),  # no 29 February in 2029
    (date(2028, 2, 29), 48, date(2032, 2, 29)),  # a leap year again
    (date(2028, 2, 29), 6, date(2028, 8, 29)),
    (date(2026, 12, 31), 12, date(2027, 12, 31)),
    (date(2026, 6, 30), 12, date(2027, 6, 30)),
    (date(2027, 2, 28), 12, date(2028, 2, 28)),  # 28 February, not the 29th
    (date(2026, 1, 31), 1, date(2026, 3, 1)),  # the whole of February
    (date(2026, 1, 30), 1, date(2026, 3, 1)),
    (date(2026, 10, 31), 1, date(2026, 12, 1)),
    (date(2026, 12, 31), 2, date(2027, 3, 1)),
    (date(2026, 3, 31), 60, date(2031, 3, 31)),
]


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [pytest.param(*a, id=f"{a[0]}+{a[1]}") for a in ANNIVERSARIES],
)
def test_anniversary(start: date, months: int, expected: date) -> None:
    assert anniversary(start, months) == expected


# (policy, request, base, drug, evaluated on, months, last day authorized)
PERIODS = [
    # EOCCO329: initial six months, renewal 12 months
    ("eocco329", "initial", "initial_met", None, date(2026, 11, 24), 6, date(2027, 5, 23)),
    ("eocco329", "initial", "initial_met", None, date(2027, 1, 31), 6, date(2027, 7, 30)),
    ("eocco329", "initial", "initial_met", None, date(2026, 8, 31), 6, date(2027, 2, 28)),
    ("eocco329", "initial", "initial_met", None, date(2026, 8, 30), 6, date(2027, 2, 28)),
    ("eocco329", "initial", "initial_met", None, date(2027, 8, 30), 6, date(2028, 2, 29)),
    ("eocco329", "initial", "initial_met", None, date(2027, 3, 31), 6, date(2027, 9, 30)),
    ("eocco329", "initial", "initial_met", None, date(2026, 5, 31), 6, date(2026, 11, 30)),
    ("eocco329", "initial", "initial_met", None, date(2026, 4, 30), 6, date(2026, 10, 29)),
    ("eocco329", "initial", "initial_met", None, date(2028, 2, 29), 6, date(2028, 8, 28)),
    ("eocco329", "renewal", "renewal_met", None, date(2026, 12, 31), 12, date(2027, 12, 30)),
    ("eocco329", "renewal", "renewal_met", None, date(2028, 2, 29), 12, date(2029, 2, 28)),
    ("eocco329", "renewal", "renewal_met", None, date(2026, 6, 30), 12, date(2027, 6, 29)),
    ("eocco329", "renewal", "renewal_met", None, date(2027, 2, 28), 12, date(2028, 2, 27)),
    # Mekinist: no length stated, the MHCP default of 12 months
    ("mn-dhs-mekinist", "initial", "melanoma_met", None, date(2026, 1, 31), 12, date(2027, 1, 30)),
    ("mn-dhs-mekinist", "initial", "melanoma_met", None, date(2028, 2, 29), 12, date(2029, 2, 28)),
    ("mn-dhs-mekinist", "renewal", "renewal_met", None, date(2026, 12, 31), 12, date(2027, 12, 30)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "request_kind", "base", "drug", "as_of", "months", "end"),
    [pytest.param(*p, id=f"{p[0]}-{p[1]}-{p[4]}") for p in PERIODS],
)
def test_authorization_period(
    catalog: Catalog,
    policy: str,
    request_kind: str,
    base: str,
    drug: str | None,
    as_of: date,
    months: int,
    end: date,
) -> None:
    determination = scored(catalog, policy, request_kind, base_answers(policy, base), as_of, drug)
    assert_period(determination, as_of, months, end)


# The constructs fixture (tests/fixtures/policies/constructs/class-policy.yaml): an
# adjuvant branch of 6 months, and the planned length of therapy when shorter.
FIXTURE_PERIODS = [
    ({}, date(2026, 8, 31), 6, date(2027, 2, 28)),
    ({}, date(2027, 1, 31), 6, date(2027, 7, 30)),
    ({"planned_months": 1}, date(2027, 1, 31), 1, date(2027, 2, 28)),
    ({"planned_months": 1}, date(2027, 1, 30), 1, date(2027, 2, 28)),
    ({"planned_months": 1}, date(2028, 1, 31), 1, date(2028, 2, 29)),
    ({"planned_months": 1}, date(2027, 3, 31), 1, date(2027, 4, 30)),
    ({"planned_months": 2}, date(2026, 12, 31), 2, date(2027, 2, 28)),
]


@pytest.mark.parametrize(
    ("change", "as_of", "months", "end"),
    [pytest.param(*p, id=f"{p[1]}+{p[2]}") for p in FIXTURE_PERIODS],
)
def test_authorization_period_of_a_branch_and_of_the_planned_therapy(
    change: dict[str, Any], as_of: date, months: int, end: date
) -> None:
    catalog = folder_catalog("fixtures/policies/constructs")
    answers = {**base_answers("fixture-class", "alpha_adjuvant"), **change}
    determination = scored(catalog, "fixture-class", "initial", answers, as_of, "alpha")
    assert_period(determination, as_of, months, end)


# --- the bounds of a numeric answer -----------------------------------------
# Mekinist renewal: the LVEF decline is asked in percentage points, 0 to 100
# (policies/mn-dhs-mekinist.yaml); the requested quantity is at least 1.

MEKINIST_RENEWAL = base_answers("mn-dhs-mekinist", "renewal_met")


def lvef_criterion(catalog: Catalog) -> str:
    """The Mekinist renewal section the LVEF questions decide (from the policy data)."""
    policy = catalog.policies["mn-dhs-mekinist"]
    (section,) = [
        c.id
        for c in walk(policy.renewal.criteria)
        if any(q.name == "lvef_decline" for q in c.questions)
    ]
    return section


def test_the_lvef_decline_is_bounded_by_the_policy(catalog: Catalog) -> None:
    policy = catalog.policies["mn-dhs-mekinist"]
    (question,) = [
        q for c in walk(policy.renewal.criteria) for q in c.questions if q.name == "lvef_decline"
    ]
    assert (question.min_value, question.max_value) == (0, 100)
    package = package_for(catalog, "mn-dhs-mekinist", "renewal")
    item = package.questionnaire_items[package.link_of["lvef_decline"]]
    bounds = {e["url"].rsplit("/", 1)[-1]: e for e in item["extension"]}
    assert bounds["maxValue"]["valueDecimal"] == 100
    assert bounds["minValue"]["valueDecimal"] == 0


@pytest.mark.parametrize("decline", [150, 100.5, 100.01, 101])
def test_an_lvef_decline_above_100_is_refused(catalog: Catalog, decline: float) -> None:
    package = package_for(catalog, "mn-dhs-mekinist", "renewal")
    link = package.link_of["lvef_decline"]
    answers = {**MEKINIST_RENEWAL, "lvef_decline": decline, "lvef_below_lln": False}
    text = refused(catalog, "mn-dhs-mekinist", "renewal", answers)
    assert f"item {link}: {decline:g} is above the maximum 100" in text


@pytest.mark.parametrize("decline", [-1, -0.5])
def test_an_lvef_decline_below_0_is_refused(catalog: Catalog, decline: float) -> None:
    package = package_for(catalog, "mn-dhs-mekinist", "renewal")
    link = package.link_of["lvef_decline"]
    answers = {**MEKINIST_RENEWAL, "lvef_decline": decline}
    text = refused(catalog, "mn-dhs-mekinist", "renewal", answers)
    assert f"item {link}: {decline:g} is below the minimum 0" in text


@pytest.mark.parametrize(("decline", "below_lln"), [(100, False), (0, None), (20, None)])
def test_an_lvef_decline_within_0_to_100_is_taken(
    catalog: Catalog, decline: float, below_lln: bool | None
) -> None:
    answers = {**MEKINIST_RENEWAL, "lvef_decline": decline, "lvef_below_lln": below_lln}
    determination = scored(catalog, "mn-dhs-mekinist", "renewal", answers)
    section = lvef_criterion(catalog)
    assert section not in determination.unmet and section not in determination.missing


@pytest.mark.parametrize(
    ("policy", "request_kind", "base"),
    [("eocco329", "initial", "initial_met"), ("mn-dhs-mekinist", "renewal", "renewal_met")],
)
def test_a_quantity_of_0_is_refused(
    catalog: Catalog, policy: str, request_kind: str, base: str
) -> None:
    package = package_for(catalog, policy, request_kind)
    link = package.link_of["requested_quantity"]
    answers = {**base_answers(policy, base), "requested_quantity": 0}
    text = refused(catalog, policy, request_kind, answers)
    assert f"item {link}: 0 is below the minimum 1" in text


# --- enableWhen with several conditions ---------------------------------------
# Mekinist renewal: whether the LV dysfunction resolved within 4 weeks is asked
# only when the decline is above 20 points AND the LVEF was below the lower
# limit of normal (enableBehavior all); below the lower limit is itself asked
# only when the decline is above 20.


def test_resolution_is_refused_when_only_the_decline_holds(catalog: Catalog) -> None:
    package = package_for(catalog, "mn-dhs-mekinist", "renewal")
    resolved = package.link_of["lvef_resolved_4_weeks"]
    answers = {
        **MEKINIST_RENEWAL,
        "lvef_decline": 25,
        "lvef_below_lln": False,
        "lvef_resolved_4_weeks": True,
    }
    text = refused(catalog, "mn-dhs-mekinist", "renewal", answers)
    assert f"item {resolved} is answered but not enabled" in text
    assert f"item {package.link_of['lvef_below_lln']} is answered" not in text


def test_resolution_is_refused_when_only_below_lln_holds(catalog: Catalog) -> None:
    package = package_for(catalog, "mn-dhs-mekinist", "renewal")
    answers = {
        **MEKINIST_RENEWAL,
        "lvef_decline": 10,
        "lvef_below_lln": True,  # itself not asked at a decline of 20 or less
        "lvef_resolved_4_weeks": True,
    }
    text = refused(catalog, "mn-dhs-mekinist", "renewal", answers)
    assert f"item {package.link_of['lvef_below_lln']} is answered but not enabled" in text
    assert f"item {package.link_of['lvef_resolved_4_weeks']} is answered but not enabled" in text


def test_below_lln_is_refused_at_a_decline_of_20(catalog: Catalog) -> None:
    package = package_for(catalog, "mn-dhs-mekinist", "renewal")
    answers = {**MEKINIST_RENEWAL, "lvef_decline": 20, "lvef_below_lln": True}
    text = refused(catalog, "mn-dhs-mekinist", "renewal", answers)
    assert f"item {package.link_of['lvef_below_lln']} is answered but not enabled" in text


@pytest.mark.parametrize(("resolved", "met"), [(True, True), (False, False)])
def test_resolution_decides_when_both_conditions_hold(
    catalog: Catalog, resolved: bool, met: bool
) -> None:
    answers = {
        **MEKINIST_RENEWAL,
        "lvef_decline": 25,
        "lvef_below_lln": True,
        "lvef_resolved_4_weeks": resolved,
    }
    determination = scored(catalog, "mn-dhs-mekinist", "renewal", answers)
    section = lvef_criterion(catalog)
    assert section not in determination.missing
    assert (section in determination.unmet) is not met
    if not met:
        assert determination.outcome == "denied"


def test_resolution_unanswered_pends_when_both_conditions_hold(catalog: Catalog) -> None:
    package = package_for(catalog, "mn-dhs-mekinist", "renewal")
    answers = {**MEKINIST_RENEWAL, "lvef_decline": 25, "lvef_below_lln": True}
    determination = scored(catalog, "mn-dhs-mekinist", "renewal", answers)
    assert package.link_of["lvef_resolved_4_weeks"] in determination.missing_questions
    assert lvef_criterion(catalog) in determination.missing


# No bundled policy uses `enable_behavior: any` (yet): a small policy written
# here does. The follow-up is asked when the first OR the second answer is yes.
ANY_POLICY = """
policy:
  id: test-any
  title: Enable behaviour any (test)
  type: PA
  payer: {name: Test Health Plan, identifier: TEST}
  version: "1.0.0"
  canonical_base: https://pa-dtr.example.org/fhir
  source: written in tests/scoring/test_behaviour.py
drugs:
  - name: Testinib
authorization:
  initial: {months: 6}
  renewal: {months: 6}
initial:
  title: Initial
  criteria:
    - id: A
      text: No unresolved toxicity after either exposure
      questions:
        - {name: first_exposure, type: boolean, text: "Was the member exposed to the first agent?"}
        - {name: second_exposure, type: boolean, text: "Was the member exposed to the second one?"}
        - name: toxicity_resolved
          type: boolean
          text: Did the toxicity resolve?
          enable_when:
            - {question: first_exposure, answer: true}
            - {question: second_exposure, answer: true}
          enable_behavior: any
      met: "(%first_exposure = false and %second_exposure = false) or %toxicity_resolved"
renewal:
  title: Renewal
  criteria:
    - id: Renewal.A
      text: No progression
      questions:
        - {name: no_progression, type: boolean, text: "Is there no disease progression?"}
      met: "%no_progression"
"""


@pytest.fixture(scope="module")
def any_policy() -> Policy:
    return parse_policy(ANY_POLICY, "test-any")


def test_any_becomes_enable_behavior_any(any_policy: Policy) -> None:
    questionnaire = build(any_policy, "initial")
    items = {item["linkId"]: item for item, _ in iter_items(questionnaire["item"])}
    (link,) = [link for link in items if link.endswith("toxicity_resolved")]
    item = items[link]
    assert item["enableBehavior"] == "any"
    assert [(w["question"].rsplit(".", 1)[-1], w["operator"], w["answerBoolean"])
            for w in item["enableWhen"]] == [
        ("first_exposure", "=", True), ("second_exposure", "=", True),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("first", "second"),
    [(True, False), (False, True), (True, True)],
    ids=["first", "second", "both"],
)
@pytest.mark.parametrize(("resolved", "outcome"), [(True, "approved"), (False, "denied")])
def test_any_condition_enables_the_question(
    any_policy: Policy, first: bool, second: bool, resolved: bool, outcome: str
) -> None:
    catalog = Catalog([any_policy])
    answers = {"first_exposure": first, "second_exposure": second, "toxicity_resolved": resolved}
    determination = scored(catalog, "test-any", "initial", answers)
    assert determination.outcome == outcome
    assert determination.unmet == ([] if resolved else ["A"])


def test_any_condition_unanswered_pends(any_policy: Policy) -> None:
    catalog = Catalog([any_policy])
    package = package_for(catalog, "test-any", "initial")
    answers = {"first_exposure": False, "second_exposure": True}
    determination = scored(catalog, "test-any", "initial", answers)
    assert determination.outcome == "pended"
    assert determination.missing_questions == [package.link_of["toxicity_resolved"]]


def test_no_condition_of_any_refuses_the_answer(any_policy: Policy) -> None:
    catalog = Catalog([any_policy])
    package = package_for(catalog, "test-any", "initial")
    answers = {"first_exposure": False, "second_exposure": False, "toxicity_resolved": True}
    text = refused(catalog, "test-any", "initial", answers)
    assert f"item {package.link_of['toxicity_resolved']} is answered but not enabled" in text
    # without the follow-up, neither exposure: met
    determination = scored(
        catalog, "test-any", "initial", {"first_exposure": False, "second_exposure": False}
    )
    assert determination.outcome == "approved"
