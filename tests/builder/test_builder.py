"""The builder's output: valid R4 Questionnaires whose items and enableWhen
mirror the policy, checked through the public ``build`` function."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire

from builder.questionnaire import DTR_STD_QUESTIONNAIRE, build
from builder.valuesets import codings, published
from policies.loader import bundled_policies, load_folder
from policies.model import AnyOf, Node, Policy, RequestKind, expression_variables, walk
from policies.names import BUILDER_REVISION
from questionnaires.checks import iter_items, questionnaire_problems
from tests.support.paths import FIXTURES

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
    policy = policies[policy_id]
    questionnaire = build(policy, kind, drug)  # type: ignore[arg-type]
    assert questionnaire_problems(questionnaire, published(policy)) == []
    parsed = Questionnaire.model_validate(questionnaire)
    qid = f"{policy_id}-{drug}-{kind}" if drug else f"{policy_id}-{kind}"
    assert parsed.id == qid
    assert parsed.url and parsed.url.endswith(f"/Questionnaire/{qid}")
    assert parsed.version == f"{policies[policy_id].policy.version}-r{BUILDER_REVISION}"
    assert parsed.meta and parsed.meta.profile == [DTR_STD_QUESTIONNAIRE]
    assert parsed.subjectType == ["Patient"]
    assert questionnaire.get("date") == policies[policy_id].policy.date_text
    assert parsed.publisher == policies[policy_id].policy.payer.name
    assert build(policies[policy_id], kind, drug) == questionnaire  # type: ignore[arg-type]


def policy_sections(policy: Policy, kind: RequestKind, drug: str | None) -> set[str]:
    """The sections a form of ``kind`` (for ``drug``) must ask, read from the
    policy data alone (never from the builder): the request's criteria, with
    the initial criteria a renewal pulls in by ``include: initial``, less
    those whose ``drugs`` leave this drug out; ``QL`` when a quantity limit
    applies to the drug; ``Term`` and ``Cap`` when the authorization term asks
    for them."""

    def visit(nodes: list[Node]) -> set[str]:
        found: set[str] = set()
        for node in nodes:
            criteria = list(node.any_of) if isinstance(node, AnyOf) else [node]
            for criterion in criteria:
                if drug is not None and criterion.drugs and drug not in criterion.drugs:
                    continue  # with its children
                found.add(criterion.id)
                below = policy.initial.criteria if criterion.include == "initial" else []
                found |= visit([*criterion.children, *below])
        return found

    tree = policy.request(kind).criteria
    expected = visit(tree)
    if drug is None:  # a single-drug form: walk and the visit above must agree
        assert {c.id for c in walk(tree)} <= expected
    limits = policy.quantity_limits
    if limits is not None and any(lim.drug in (None, drug) for lim in limits.limits):
        expected.add("QL")
    term = policy.authorization.term(kind)
    if term.lesser_of_planned:
        expected.add("Term")
    if term.max_renewals is not None or term.max_total_months is not None:
        expected.add("Cap")
    return expected


def sections_coded(policy: Policy, questionnaire: dict[str, Any]) -> set[str]:
    system = policy.policy.sections_system
    return {
        code["code"]
        for item, _ in iter_items(questionnaire["item"])
        for code in item.get("code", [])
        if code["system"] == system
    }


# the bundled policies, and the fixture of the constructs no bundled policy
# uses (per-drug forms, criteria for one drug only, Term, Cap)
CONSTRUCTS = load_folder(FIXTURES / "constructs")
ALL_FORMS = [
    pytest.param(p, kind, drug, id=f"{p.id}-{drug or ''}-{kind}")
    for p in [*bundled_policies(), *CONSTRUCTS]
    for kind, drug in p.forms()
]


@pytest.mark.parametrize(("policy", "kind", "drug"), ALL_FORMS)
def test_every_section_has_an_item(policy: Policy, kind: RequestKind, drug: str | None) -> None:
    questionnaire = build(policy, kind, drug)
    coded = sections_coded(policy, questionnaire)
    expected = policy_sections(policy, kind, drug)
    assert expected, "the policy data names no section"
    assert sorted(expected - coded) == []
    # the investigational conditions decided by what this form asks
    asked = {
        question.name
        for tree in (policy.initial.criteria, policy.renewal.criteria)
        for criterion in walk(tree)
        if criterion.id in expected  # section ids are unique in a policy
        for question in criterion.questions
    }
    investigational: set[str] = set()
    if policy.investigational is not None:
        answer_lists = published(policy)
        options = {
            coding["code"]
            for item, _ in iter_items(questionnaire["item"])
            if "answerValueSet" in item
            for coding in codings(answer_lists[item["answerValueSet"]])
            if coding["system"] == policy.policy.sections_system
        }
        for condition in policy.investigational.all_conditions():
            if condition.answer_of is not None and condition.answer_of in asked:
                # a listed diagnosis is a coded answer, and its question is coded with it
                assert condition.id in options
                investigational.add(condition.id)
            elif condition.applies is not None and expression_variables(condition.applies) & asked:
                investigational.add(condition.id)
        assert sorted(investigational - coded) == []
    # and no section of the policy that this form does not ask (another
    # request's, another drug's) is coded on any of its items
    every_section = {
        criterion.id
        for tree in (policy.initial.criteria, policy.renewal.criteria)
        for criterion in walk(tree)
    } | {"QL", "Term", "Cap"}
    if policy.investigational is not None:
        every_section |= {c.id for c in policy.investigational.all_conditions()}
    assert sorted((coded & every_section) - expected - investigational) == []


def test_expected_sections_follow_the_policy_data(policies: dict[str, Policy]) -> None:
    """The expectation above, checked by hand on what the policy files say."""
    eocco = policies["eocco329"]
    initial = policy_sections(eocco, "initial", None)
    renewal = policy_sections(eocco, "renewal", None)
    assert {"QL", "I", "I.A", "I.B", "I.C", "I.D", "I.D.2", "I.D.8", "I.D.9"} <= initial
    assert "Term" not in initial and "Cap" not in initial
    # Renewal II includes the initial criteria: they are asked in the renewal too
    assert {"QL", "Renewal.I", "Renewal.II", "Renewal.IV", "Renewal.V", "I", "I.A"} <= renewal
    assert not {s for s in initial if s.startswith("Renewal.")}
    fixture = next(p for p in CONSTRUCTS if p.id == "fixture-class")
    assert {"QL", "Term", "Naive"} <= policy_sections(fixture, "initial", "alpha")
    assert "BetaDose" not in policy_sections(fixture, "initial", "alpha")
    assert "BetaDose" in policy_sections(fixture, "initial", "beta")
    assert "Cap" in policy_sections(fixture, "renewal", "beta")
    assert "Term" not in policy_sections(fixture, "renewal", "beta")


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
    assert conditions(eocco_initial, f"{section}.{therapy}_otherwise") == [
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
    product = published(policies["mn-dhs-mekinist"])[
        items["QL.requested_product"]["answerValueSet"]
    ]
    assert [c["code"] for c in codings(product)] == ["0078-0666", "0078-0668"]
    renewal = build(policies["mn-dhs-mekinist"], "renewal")
    assert conditions(renewal, "Renewal.4.lvef_below_lln") == [("Renewal.4.lvef_decline", ">", 20)]
    assert items_by_link(renewal)["Renewal.4.lvef_resolved_4_weeks"]["enableBehavior"] == "all"


def test_a_limit_naming_a_policys_only_drug_is_in_its_forms(policies: dict[str, Policy]) -> None:
    """A policy of one drug builds one set of forms; a limit naming that drug
    (as a criterion may) is in them, never silently left out."""
    data = policies["eocco329"].model_dump(mode="json", exclude_none=True)
    data["drugs"][0]["id"] = "copack"
    data["quantity_limits"]["limits"][0]["drug"] = "copack"
    policy = Policy.model_validate(data)
    for kind in ("initial", "renewal"):
        items = items_by_link(build(policy, kind))
        assert "QL.requested_quantity" in items, kind


def test_choices_are_coded_with_a_system(policies: dict[str, Policy]) -> None:
    """Every answer list is a published ValueSet, referenced url|version, of
    codes with a system; none is inline or contained."""
    for policy in policies.values():
        answer_lists = published(policy)
        for kind, drug in policy.forms():
            for item, _ in iter_items(build(policy, kind, drug)["item"]):
                if item["type"] == "choice":
                    assert "answerOption" not in item
                    value_set = answer_lists[item["answerValueSet"]]
                    assert value_set["version"] == item["answerValueSet"].split("|")[1]
                    assert all(c["system"].startswith("http") for c in codings(value_set))


@pytest.mark.cases("broken_questionnaires.yaml")
def test_checks_catch_broken_questionnaire(
    policies: dict[str, Policy], eocco_initial: dict[str, Any], case: dict[str, Any]
) -> None:
    broken = copy.deepcopy(eocco_initial)
    item = items_by_link(broken)[case["item"]]
    for key, value in case["set"].items():  # null removes the element
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    problems = questionnaire_problems(broken, published(policies["eocco329"]))
    assert any(case["expect"] in problem for problem in problems), problems
