"""The coverage of worked examples (qpackage/examples.py) on a bundled
policy: EOCCO329's renewal is met either by its own condition (not started
on samples) or by the initial criteria again (``combine: or``); without the
examples that approve one way, that way is reported as an approval path no
example takes (with the sections asked only on that way: Renewal.I and
Renewal.III, and Renewal.V, which only those examples meet) — and with all of
them, nothing is."""

from __future__ import annotations

import pytest

from policies.examples import Examples
from policies.loader import load_examples, load_policy
from qpackage.examples import run_examples
from tests.support.paths import ROOT

EOCCO = ROOT / "policies" / "eocco329.yaml"


def _without(examples: Examples, started_on_samples: bool) -> Examples:
    """The examples less the approved renewals answering started_on_samples so."""
    kept = tuple(
        case
        for case in examples.cases
        if not (
            case.request == "renewal"
            and case.expect.outcome == "approved"
            and examples.answers(case).get("started_on_samples") is started_on_samples
        )
    )
    return examples.model_copy(update={"cases": kept})


@pytest.mark.parametrize(
    ("started_on_samples", "untaken"),
    [
        (None, []),  # nothing left out
        (True, ["Renewal.II by its criteria"]),
        (False, ["Renewal.V", "Renewal.I", "Renewal.III", "Renewal.II by its own condition"]),
    ],
)
def test_each_way_through_a_combine_or_needs_an_approved_example(
    started_on_samples: bool | None, untaken: list[str]
) -> None:
    found = load_examples(EOCCO)
    assert found is not None
    path, examples = found
    if started_on_samples is not None:
        examples = _without(examples, started_on_samples)
    report = run_examples(load_policy(EOCCO), examples, str(path))
    assert report.problems == []
    assert report.untaken == untaken
    problems = report.coverage_problems(str(path))
    assert len(problems) == len(untaken)
    for section in untaken:
        assert any(f"{section}: no approved example goes through it" in p for p in problems)
