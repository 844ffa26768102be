"""The builder's output: valid R4 Questionnaires whose items and enableWhen
mirror the policy, checked through the public ``build`` function."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire

from builder.checks import iter_items, questionnaire_problems
from builder.loader import bundled_policies
from builder.policy import Policy, walk
from builder.questionnaire import BUILDER_REVISION, DTR_STD_QUESTIONNAIRE, build, request_tree
from tests.conftest import load_cases

# every Questionnaire of every bundled policy, whatever the policies are
FORMS = [(p.id, kind, drug) for p in bundled_policies() for kind, drug in p.forms()]


def items_by_link(questionnaire: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["linkId"]: item for item, _ in iter_items(questionnaire["item"])}


def conditions(questionnaire: dict[str, Any], link_id: str) -> list[tuple[str, str, Any]]:
    item = items_by_link(questionnaire)[link_id]
    out = []
    for when in item.get("enableWhen", []):
        key = next(k for k in when if k.startswith("answer"))
        value = when[key]["code"] if key == "answerCoding" else when[key]
        out.append((when["question"], when["operator"], value))
    return out


@pytest.fixture(scope="module")
def eocco_initial(policies: dict[str, Policy]) -> dict[str, Any]:
    return build(policies["eocco329"], "initial")


@pytest.mark.parametrize(("policy_id", "kind", "drug"), FORMS)
def test_questionnaire_is_sound(
    policies: dict[str, Policy], policy_id: str, kind: str, drug: str | None
) -> None:
    questionnaire = build(policies[policy_id], kind, drug)  # type: ignore[arg-type]
    assert questionnaire_problems(questionnaire) == []
    parsed = Questionnaire.model_validate(questionnaire)
    qid = f"{policy_id}-{drug}-{kind}" if drug else f"{policy_id}-{kind}"
    assert parsed.id == qid
    assert parsed.url.endswith(f"/Questionnaire/{qid}")
    assert parsed.version == f"{policies[policy_id].policy.version}-r{BUILDER_REVISION}"
    assert parsed.meta.profile == [DTR_STD_QUESTIONNAIRE]
    assert parsed.subjectType == ["Patient"]
    assert questionnaire.get("date") == policies[policy_id].policy.date_text
    assert parsed.publisher == policies[policy_id].policy.payer.name
    assert build(policies[policy_id], kind, drug) == questionnaire  # type: ignore[arg-type]


@pytest.mark.parametrize(("policy_id", "kind", "drug"), FORMS)
def test_every_section_has_an_item(
    policies: dict[str, Policy], policy_id: str, kind: str, drug: str | None
) -> None:
    policy = policies[policy_id]
    questionnaire = build(policy, kind, drug)  # type: ignore[arg-type]
    system = policy.policy.sections_system
    coded = {
        code["code"]
        for item, _ in iter_items(questionnaire["item"])
        for code in item.get("code", [])
        if code["system"] == system
    }
    options = {
        option["valueCoding"]["code"]
        for item, _ in iter_items(questionnaire["item"])
        for option in item.get("answerOption", [])
        if option["valueCoding"]["system"] == system
    }
    expected = {c.id for c in walk(request_tree(policy, kind, drug))}  # type: ignore[arg-type]
    assert expected <= coded
    investigational = policy.investigational
    if investigational is not None and "I.D.diagnosis" in items_by_link(questionnaire):
        listed = {c.id for c in investigational.all_conditions()}
        assert listed <= coded
        assert listed - {"II.A"} <= options  # the diagnoses are coded answers


def test_question_codes_name_every_section_they_decide(eocco_initial: dict[str, Any]) -> None:
    items = items_by_link(eocco_initial)
    assert [c["code"] for c in items["I.C.combination_therapy"]["code"]] == ["I.C", "II.A"]
    diagnosis_codes = [c["code"] for c in items["I.D.diagnosis"]["code"]]
    assert diagnosis_codes[0] == "I.D"
    assert set(diagnosis_codes) == {"I.D", "II", *(f"II.{x}" for x in "BCDEFGHI")}


def test_lgsoc_questions_only_for_lgsoc(eocco_initial: dict[str, Any]) -> None:
    for n in range(1, 10):
        assert conditions(eocco_initial, f"I.D.{n}") == [("I.D.diagnosis", "=", "I.D")]
    assert conditions(eocco_initial, "I.D.diagnosis") == []


@pytest.mark.parametrize(("section", "therapy"), [
    ("I.D.3", "platinum"), ("I.D.4", "second_line"), ("I.D.5", "hormonal"),
    ("I.D.6", "bevacizumab"), ("I.D.7", "trametinib"),
])  # fmt: skip
def test_intolerance_asked_only_without_progression(
    eocco_initial: dict[str, Any], section: str, therapy: str
) -> None:
    assert conditions(eocco_initial, f"{section}.{therapy}_intolerant") == [
        (f"{section}.{therapy}_progressed", "=", False)
    ]
    assert conditions(eocco_initial, f"{section}.{therapy}_progressed") == []


def test_consultation_asked_only_when_prescriber_is_no_oncologist(
    eocco_initial: dict[str, Any],
) -> None:
    assert conditions(eocco_initial, "I.B.oncologist_consulted") == [
        ("I.B.prescriber_oncologist", "=", False)
    ]


def test_renewal_gates_initial_criteria_on_samples(policies: dict[str, Policy]) -> None:
    renewal = build(policies["eocco329"], "renewal")
    top = [item["linkId"] for item in renewal["item"]]
    assert top == ["QL", "Renewal.II", "Renewal.I", "Renewal.III", "Renewal.IV-or-Renewal.V"]
    samples = "Renewal.II.started_on_samples"
    assert conditions(renewal, "I") == [(samples, "=", True)]
    assert conditions(renewal, "Renewal.I") == [(samples, "=", False)]
    assert conditions(renewal, "Renewal.IV") == conditions(renewal, "Renewal.V") == []
    # the initial criteria keep their linkIds and their own enableWhen
    assert conditions(renewal, "I.D.3") == [("I.D.diagnosis", "=", "I.D")]


def test_mekinist_branches_and_thresholds(policies: dict[str, Policy]) -> None:
    initial = build(policies["mn-dhs-mekinist"], "initial")
    assert conditions(initial, "Melanoma") == [("Indication.indication", "=", "Melanoma")]
    assert conditions(initial, "NSCLC") == [("Indication.indication", "=", "NSCLC")]
    assert conditions(initial, "Exclusion.1") == [("Indication.indication", "=", "Melanoma")]
    items = items_by_link(initial)
    assert {c["code"] for c in items["Indication.birth_date"]["code"]} == {"Melanoma.1", "NSCLC.1"}
    product = items["QL.requested_product"]
    assert [o["valueCoding"]["code"] for o in product["answerOption"]] == ["0078-0666", "0078-0668"]
    renewal = build(policies["mn-dhs-mekinist"], "renewal")
    assert conditions(renewal, "Renewal.4.lvef_below_lln") == [("Renewal.4.lvef_decline", ">", 20)]
    assert items_by_link(renewal)["Renewal.4.lvef_resolved_4_weeks"]["enableBehavior"] == "all"


def test_choices_are_coded_with_a_system(policies: dict[str, Policy]) -> None:
    for policy in policies.values():
        for kind, drug in policy.forms():
            for item, _ in iter_items(build(policy, kind, drug)["item"]):
                if item["type"] == "choice":
                    assert all(
                        o["valueCoding"]["system"].startswith("http") for o in item["answerOption"]
                    )


@pytest.mark.parametrize("case", load_cases("broken_questionnaires.yaml"))
def test_checks_catch_broken_questionnaire(
    eocco_initial: dict[str, Any], case: dict[str, Any]
) -> None:
    broken = copy.deepcopy(eocco_initial)
    items_by_link(broken)[case["item"]].update(case["set"])
    problems = questionnaire_problems(broken)
    assert any(case["expect"] in problem for problem in problems), problems
