"""Scoring a completed QuestionnaireResponse into a coverage determination.

The pure core: ``score(package, response, as_of) → Determination`` where a
package is one Questionnaire version with its compiled definitions. Finding
the package a response names is the catalog's job
(:class:`qpackage.catalog.Catalog`). No web, CLI, storage or files here;
those layers call in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from cql_like.engine import CompiledRequest, Evaluation
from scoring.determination import Determination, decide
from scoring.outcome import InvalidInput
from scoring.response import check_answers, check_size, check_structure

__all__ = ["Determination", "InvalidInput", "assess", "score"]


def score(package: CompiledRequest, response: Mapping[str, Any], as_of: date) -> Determination:
    """Check ``response`` against its Questionnaire and decide it as of ``as_of``."""
    check_size(package, response)
    check_structure(response)
    return assess(package, response, as_of)[0]


def assess(
    package: CompiledRequest, response: Mapping[str, Any], as_of: date
) -> tuple[Determination, Evaluation, dict[str, list[Any]]]:
    """The determination with what it rests on: each criterion's status and
    the answers by linkId (a pharmacist's case view, a reviewed approval)."""
    answers = check_answers(package, response)
    evaluation = package.evaluate(response, answers.by_link, as_of, answers.enabled)
    subject = response.get("subject")
    return decide(package, evaluation, answers.by_link, as_of, subject), evaluation, answers.by_link
