"""A malformed policy file fails with an error naming the file, the field and
what is wrong; the bundled files load."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.loader import PolicyError, bundled_policy_files, load_policy, parse_policy
from tests.support.paths import FIXTURES
from tests.support.policy_edits import edit

EOCCO = next(p for p in bundled_policy_files() if p.name == "eocco329.yaml")


def _bundled(name: str) -> Path:
    return next(p for p in bundled_policy_files() if p.name == name)


@pytest.mark.cases("policy_errors.yaml")
def test_malformed_policy_is_named(case: dict[str, Any], tmp_path: Path) -> None:
    # a bundled policy (`policy`, EOCCO329 by default) or a fixture (`fixture`)
    source = (
        FIXTURES / case["fixture"]
        if "fixture" in case
        else _bundled(case.get("policy", EOCCO.name))
    )
    data = copy.deepcopy(yaml.safe_load(source.read_text(encoding="utf-8")))
    for path, value in (case.get("set") or {}).items():
        edit(data, path, value)
    if "delete" in case:
        edit(data, case["delete"], delete=True)
    broken = tmp_path / "broken-policy.yaml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    with pytest.raises(PolicyError) as caught:
        load_policy(broken)
    message = str(caught.value)
    assert message.startswith(f"{broken}: invalid policy file")
    for expected in case["expect"]:
        assert expected in message
    problems = message.splitlines()[1:]
    assert len(problems) == len(set(problems)), "a problem printed more than once"
    assert "''" not in message


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(
        PolicyError, match=r"bad\.yaml: invalid policy file\n  - line 3, column 1: not valid YAML"
    ):
        parse_policy("policy:\n  id: [unclosed\n", "bad.yaml")


def test_impossible_unquoted_date() -> None:
    with pytest.raises(PolicyError, match=r"dates\.yaml: invalid policy file\n  - not valid YAML"):
        parse_policy("policy:\n  date: 2025-13-01\n", "dates.yaml")


def test_file_that_is_not_a_mapping() -> None:
    with pytest.raises(PolicyError, match="must hold a mapping"):
        parse_policy("- just\n- a list\n", "list.yaml")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nowhere\.yaml: invalid policy file"):
        load_policy(tmp_path / "nowhere.yaml")


def test_bundled_policies_load(policies) -> None:  # type: ignore[no-untyped-def]
    assert {"eocco329", "mn-dhs-mekinist", "mn-dhs-cotellic", "wha-mektovi"} <= set(policies)
    cotellic = policies["mn-dhs-cotellic"]
    assert cotellic.authorization.initial.assumed and cotellic.renewal.assumed
    assert [limit.max_units for limit in cotellic.quantity_limits.limits] == [63]
    mektovi = policies["wha-mektovi"]
    assert not mektovi.authorization.initial.assumed
    assert (mektovi.authorization.initial.months, mektovi.authorization.renewal.months) == (12, 12)
    assert [limit.max_units for limit in mektovi.quantity_limits.limits] == [168]
    assert mektovi.quantity_limits.over_limit == "modify"
    mekinist = policies["mn-dhs-mekinist"]
    assert mekinist.authorization.initial.assumed
    assert mekinist.authorization.initial.basis
    assert [limit.quantity for limit in mekinist.quantity_limits.limits] == [90, 30]
    eocco = policies["eocco329"]
    assert (eocco.authorization.initial.months, eocco.authorization.renewal.months) == (6, 12)
    assert eocco.quantity_limits.limits[0].quantity == 66
    assert eocco.quantity_limits.limits[0].period_days == 28


def test_length_branch_on_an_initial_section_a_renewal_includes() -> None:
    """EOCCO329's renewal includes the initial criteria (Renewal.II): I.D is a
    criterion of a renewal request, so a renewal length branch on it stands."""
    data = yaml.safe_load(EOCCO.read_text(encoding="utf-8"))
    data["authorization"]["renewal"]["branches"] = [{"section": "I.D", "months": 6}]
    policy = parse_policy(yaml.safe_dump(data), "eocco-branch.yaml")
    assert policy.authorization.renewal.branches[0].section == "I.D"


def test_limit_missing_from_one_drugs_form_names_the_drug() -> None:
    """The constructs fixture without its Betanib renewal asking the initial
    criteria again: Betanib's limits, chosen by the setting, would vanish
    from its renewal form."""
    path = FIXTURES / "constructs" / "class-policy.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["renewal"]["criteria"] = [c for c in data["renewal"]["criteria"] if c["id"] != "Continued"]
    with pytest.raises(PolicyError) as caught:
        parse_policy(yaml.safe_dump(data), "class-policy.yaml")
    message = str(caught.value)
    assert "class-policy.yaml: invalid policy file" in message
    assert (
        "QL: limits[1]: when: setting is not asked in the renewal Questionnaire"
        " fixture-class-beta-renewal" in message
    )
