"""The build's routing checks, through `dtr check`: a form whose routing
leaves fewer ways to a decision than the policy is refused (its cases:
tests/cases/verify_errors.yaml, fixture routing/routing.yaml); a sound form
with a record-only question verifies; and where a bound of the exploration is
hit, `dtr check` says what was not explored instead of passing in silence."""

from __future__ import annotations

import pytest

from builder.verification import explore
from dtr.cli import main
from tests.support.paths import FIXTURES

ROUTING = FIXTURES / "routing" / "routing.yaml"
BOUNDED = FIXTURES / "routing" / "bounded.yaml"


def test_sound_routing_with_a_record_only_question_verifies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`discharged` is record-only: no answer to it changes anything, and it is accepted."""
    assert main(["check", str(ROUTING)]) == 0
    printed = capsys.readouterr()
    assert "fixture-routing 1.0.0: verified\n" in printed.out
    assert "not explored" not in printed.out
    assert printed.err == ""


def test_a_criterion_over_the_bound_of_combinations_is_not_explored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", str(BOUNDED)]) == 0
    out = capsys.readouterr().out
    assert "fixture-bounded 1.0.0: verified where explored (1 warning)" in out
    assert (
        f"  warning: {BOUNDED}: fixture-bounded-initial: Prior: met: not explored: 6561"
        " combinations of its answers, over the bound of 4096" in out
    )


def test_a_form_over_the_bound_of_scorings_is_not_explored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound of scorings per form, lowered so that the small fixture
    reaches it: its forms are said not explored (one warning naming both),
    and no routing error is claimed on what was not seen."""
    monkeypatch.setattr(explore, "MAX_EVALUATIONS", 2)
    assert main(["check", str(ROUTING)]) == 0
    out = capsys.readouterr().out
    assert "fixture-routing 1.0.0: verified where explored (1 warning)" in out
    assert (
        f"  warning: {ROUTING}: fixture-routing-initial, fixture-routing-renewal: not explored:"
        " the exploration stopped at its bound of 2 scorings" in out
    )
