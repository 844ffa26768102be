"""Accessibility checks with axe-core (npm, pinned in tests/browser/axe/):
the rules run in the page, and a page passes with no serious or critical
violation (the pharmacist's pages: with none of any impact). The pages' content security policy allows only their own
scripts, so the context that injects axe bypasses it (``bypass_csp``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"


def violations(page: Page, every_impact: bool = False) -> list[dict[str, Any]]:
    """The serious and critical violations of the page as it is now (or all
    of them, minor and moderate too)."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed ({AXE}): run scripts/install-axe", pytrace=False)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    if every_impact:
        return list(result["violations"])
    return [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]


def assert_accessible(page: Page, what: str, every_impact: bool = False) -> None:
    found = violations(page, every_impact)
    described = [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(n["target"][0] if n.get("target") else "?" for n in v["nodes"][:3])
        for v in found
    ]
    assert not found, f"{what}: " + "\n".join(described)
