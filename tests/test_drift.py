"""The committed generated files equal a fresh build, and a canonical
url|version never names two contents."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.artifacts import (
    VersionNotBumped,
    coverage_markdown,
    digest,
    generate,
    read_register,
    updated_register,
)
from builder.loader import bundled_policies

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "questionnaires"
HOW_TO_FIX = "run `dtr build` and commit the result"


def test_generated_files_match_a_fresh_build() -> None:
    artifacts = generate(bundled_policies())
    committed = {p.name for p in FOLDER.glob("*.json")} - {"released.json"}
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


def test_every_version_is_registered_with_its_content() -> None:
    register = read_register(FOLDER)
    for artifact in generate(bundled_policies()):
        assert artifact.canonical is not None
        assert register.get(artifact.canonical) == digest(artifact.text), (
            f"{artifact.canonical} is built with a content its version was not released with: "
            "bump BUILDER_REVISION (or the policy version), then run `dtr build`"
        )


def test_changed_content_under_the_same_version_is_refused() -> None:
    artifact = generate(bundled_policies())[0]
    register = updated_register([artifact], {})
    changed = type(artifact)(
        artifact.filename, artifact.text.replace("Initial", "First"), artifact.canonical
    )
    with pytest.raises(VersionNotBumped, match="bump BUILDER_REVISION"):
        updated_register([changed], register)
    assert updated_register([artifact], register) == register
