"""Where the tests' data lives, named once: the repository, the case tables,
the fixture policy folders and the bundled payers' review settings."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
CASES = TESTS / "cases"
# policy folders a payer might write, for constructs no bundled policy uses
FIXTURES = TESTS / "fixtures" / "policies"
PAYER_SETTINGS = ROOT / "policies" / "payers"
# the payer file of the fixture policies (payer.identifier FIXTURE)
FIXTURE_PAYERS = TESTS / "fixtures" / "payers"
