"""The committed generated files equal a fresh build, and a canonical
url|version never names two contents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from builder.artifacts import (
    VersionNotBumped,
    coverage_markdown,
    digest,
    generate,
    read_register,
    updated_register,
)
from builder.prepopulation import cache_path, compile_policy, cql_file, cql_text, loaded, sources
from policies.loader import bundled_policies
from policies.names import questionnaire_version
from tests.support.cases import bundled_catalog
from tests.support.paths import ROOT

FOLDER = ROOT / "questionnaires"
HOW_TO_FIX = "run `dtr build` and commit the result"


def committed_translations() -> dict[str, Any]:
    """The prepopulation Libraries' translations committed with the policies."""
    return loaded(bundled_policies(), [FOLDER], questionnaire_version)


def test_generated_files_match_a_fresh_build() -> None:
    artifacts = generate(bundled_policies(), committed_translations())
    committed = {p.name for p in FOLDER.glob("*.json")} - {"released.json", "released-at.json"}
    assert committed == {a.filename for a in artifacts}, HOW_TO_FIX
    for artifact in artifacts:
        on_disk = (FOLDER / artifact.filename).read_text(encoding="utf-8")
        assert on_disk == artifact.text, (
            f"{artifact.filename} drifted from the builder: {HOW_TO_FIX}"
        )


def test_coverage_table_matches_a_fresh_build() -> None:
    on_disk = (ROOT / "docs" / "coverage.md").read_text(encoding="utf-8")
    assert on_disk == coverage_markdown(bundled_policies()), (
        f"docs/coverage.md drifted: {HOW_TO_FIX}"
    )


def test_decision_tables_match_a_fresh_build() -> None:
    from builder.verification.decisions import decision_tables_markdown

    on_disk = (ROOT / "docs" / "decision-tables.md").read_text(encoding="utf-8")
    assert on_disk == decision_tables_markdown(bundled_policies()), (
        f"docs/decision-tables.md drifted: {HOW_TO_FIX}"
    )


def test_every_version_is_registered_with_its_content() -> None:
    register = read_register(FOLDER)
    for artifact in generate(bundled_policies(), committed_translations()):
        assert artifact.canonical is not None
        assert register.get(artifact.canonical) == digest(artifact.text), (
            f"{artifact.canonical} is built with a content its version was not released with: "
            "bump BUILDER_REVISION (or the policy version), then run `dtr build`"
        )


def test_the_committed_cql_is_what_the_policies_give() -> None:
    """Each policy an EHR can prefill has its CQL committed, as generated
    today, and a translation of exactly that CQL."""
    compiled = committed_translations()
    for policy in bundled_policies():
        if not sources(policy):
            continue
        version = questionnaire_version(policy)
        assert policy.id in compiled, f"{policy.id}: no translation of today's CQL: {HOW_TO_FIX}"
        assert cql_file(FOLDER, compiled[policy.id]).read_text(encoding="utf-8") == cql_text(
            policy, version
        ), f"{policy.id}: the committed CQL drifted: {HOW_TO_FIX}"
        assert cache_path(FOLDER, policy, version).exists()


def test_the_translator_gives_the_committed_elm() -> None:
    """The pinned translator, run again, gives the ELM committed (a different
    translator version or a hand edit shows here)."""
    compiled = committed_translations()
    for policy in bundled_policies():
        if sources(policy):
            fresh = compile_policy(policy, questionnaire_version(policy))
            assert fresh.elm == compiled[policy.id].elm, policy.id
            assert fresh.expressions == compiled[policy.id].expressions, policy.id


def test_changed_content_under_the_same_version_is_refused() -> None:
    artifact = next(
        a
        for a in generate(bundled_policies(), committed_translations())
        if a.filename.startswith("Questionnaire-")
    )
    register = updated_register([artifact], {})
    changed = type(artifact)(
        artifact.filename, artifact.text.replace("Initial", "First"), artifact.canonical
    )
    with pytest.raises(VersionNotBumped, match="bump BUILDER_REVISION"):
        updated_register([changed], register)
    assert updated_register([artifact], register) == register


def test_every_released_version_stays_resolvable() -> None:
    """Records made under an older version (a builder revision or a policy
    version ago) still open and re-score: the archive holds every released
    Questionnaire, and the catalog resolves each."""
    from policies.loader import bundled_archive

    catalog = bundled_catalog()
    assert catalog.unresolvable == []
    archived = {
        f"{q['url']}|{q['version']}"
        for q in (
            json.loads(path.read_text(encoding="utf-8"))
            for path in bundled_archive().glob("Questionnaire-*.json")
        )
    }
    assert archived, "the archive is empty"
    assert archived <= set(catalog.packages)
    register = read_register(FOLDER)
    released = {c for c in register if c.startswith("http") and "/Questionnaire/" in c}
    assert released <= archived, "a released Questionnaire is missing from the archive"


def test_a_response_to_an_older_build_is_decided_under_the_version_in_effect() -> None:
    from datetime import date

    from qpackage.catalog import score_json
    from scoring.fill import fill
    from tests.support.cases import base_answers, package_for

    catalog = bundled_catalog()
    current = package_for(catalog, "eocco329", "initial")
    response = fill(current, base_answers("eocco329", "initial_met"))
    older = response["questionnaire"].rsplit("|", 1)[0] + "|1.0.0-r1"
    response["questionnaire"] = older
    determination = score_json(catalog, response, date(2026, 11, 24))
    # the older build still resolves; a new request is decided by the current one
    assert determination.outcome == "approved"
    assert determination.answered == older
    current_canonical = f"{current.questionnaire['url']}|{current.questionnaire['version']}"
    assert determination.questionnaire == current_canonical
