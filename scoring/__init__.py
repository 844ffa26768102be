"""Scoring a completed QuestionnaireResponse into a coverage determination.

The pure core: ``score(package, response, as_of) → Determination`` where a
package is one Questionnaire version with its compiled definitions, and
:class:`Catalog` finds the package a response names. No web, CLI or storage
here; those layers call in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from builder.artifacts import questionnaires
from builder.loader import bundled_policies
from builder.policy import REQUEST_KINDS, Policy
from cql_like.engine import CompiledRequest
from scoring.determination import Determination, decide
from scoring.outcome import InvalidInput, Issue
from scoring.response import check_answers, check_structure, parse_json

__all__ = ["Catalog", "Determination", "InvalidInput", "score", "score_json"]


class Catalog:
    """Every Questionnaire version the service knows, compiled once."""

    def __init__(self, policies: list[Policy]) -> None:
        self.policies = {policy.id: policy for policy in policies}
        self.packages: dict[str, CompiledRequest] = {}
        for policy in policies:
            for kind, questionnaire in zip(REQUEST_KINDS, questionnaires(policy), strict=True):
                package = CompiledRequest(policy, kind, questionnaire)
                self.packages[f"{questionnaire['url']}|{questionnaire['version']}"] = package

    @classmethod
    def bundled(cls) -> Catalog:
        return cls(bundled_policies())

    def resolve(self, canonical: object) -> CompiledRequest:
        """The package a response's ``questionnaire`` canonical names (url|version)."""
        where = "QuestionnaireResponse.questionnaire"
        if not isinstance(canonical, str) or not canonical:
            raise InvalidInput(
                [Issue("required", "the response must name its Questionnaire (url|version)", where)]
            )
        package = self.packages.get(canonical)
        if package is not None:
            return package
        url, _, version = canonical.partition("|")
        known = sorted(c.split("|")[1] for c in self.packages if c.split("|")[0] == url)
        if not known:
            raise InvalidInput(
                [Issue("not-found", f"no Questionnaire {url} is known to this service", where)]
            )
        if not version:
            message = f"the response must name the version of {url} it answers ({', '.join(known)})"
        else:
            message = f"{url} has no version {version} (known: {', '.join(known)})"
        raise InvalidInput([Issue("not-found", message, where)])


def score(package: CompiledRequest, response: Mapping[str, Any], as_of: date) -> Determination:
    """Check ``response`` against its Questionnaire and decide it as of ``as_of``."""
    check_structure(response)
    return _decide(package, response, as_of)


def _decide(package: CompiledRequest, response: Mapping[str, Any], as_of: date) -> Determination:
    answers = check_answers(package, response)
    evaluation = package.evaluate(response, answers.by_link, as_of, answers.enabled)
    subject = response.get("subject")
    return decide(package, evaluation, answers.by_link, as_of, subject)


def score_json(
    catalog: Catalog, body: bytes | str | Mapping[str, Any], as_of: date
) -> Determination:
    """The whole path from a request body: parse, check, find the package, score."""
    resource = parse_json(body) if isinstance(body, bytes | str) else body
    check_structure(resource)
    package = catalog.resolve(resource.get("questionnaire"))
    return _decide(package, resource, as_of)
