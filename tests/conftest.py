"""Shared fixtures: the bundled policies and their built Questionnaires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.loader import bundled_policies
from policies.model import Policy

CASES = Path(__file__).parent / "cases"


def load_cases(name: str) -> list[dict[str, Any]]:
    """A case table (YAML list of mappings with a `name`) for pytest.mark.parametrize."""
    cases = yaml.safe_load((CASES / name).read_text(encoding="utf-8"))
    return [pytest.param(case, id=case["name"]) for case in cases]


@pytest.fixture(scope="session")
def policies() -> dict[str, Policy]:
    return {policy.id: policy for policy in bundled_policies()}
