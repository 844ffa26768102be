"""Problems with an input, as a FHIR OperationOutcome.

Bad input is never a traceback and never a determination: every check that
refuses a response raises :class:`InvalidInput` with one issue per problem
found (all of them, not just the first), each naming the item and what is
wrong. The HTTP layer maps ``InvalidInput.status`` to the response code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

IssueCode = Literal[
    "invalid", "structure", "required", "value", "not-found", "not-supported",
    "business-rule", "too-long", "processing", "exception", "informational", "timeout",
    "throttled", "login", "forbidden",
]  # fmt: skip


@dataclass(frozen=True)
class Issue:
    code: IssueCode
    diagnostics: str
    expression: str | None = None
    severity: Literal["fatal", "error", "warning", "information"] = "error"

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": printable(self.diagnostics),
        }
        if self.expression:
            issue["expression"] = [printable(self.expression)]
        return issue


MAX_TEXT = 2000
MAX_ISSUES = 100  # issues an OperationOutcome lists; the rest are counted


def printable(text: str) -> str:
    """A message that quotes the input (a linkId, a value) as a valid FHIR
    string: no lone surrogates or control characters, and not unbounded."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


class InvalidInput(ValueError):
    """An input refused before scoring; ``status`` is the HTTP status it maps to."""

    def __init__(self, issues: list[Issue], status: int = 422) -> None:
        if len(issues) > MAX_ISSUES:
            # every problem is found, but a reply lists a readable number of them
            rest = len(issues) - MAX_ISSUES
            issues = [
                *issues[:MAX_ISSUES],
                Issue("too-long", f"{rest} more problem(s) of the same input not listed"),
            ]
        self.issues = issues
        self.status = status
        super().__init__("; ".join(issue.diagnostics for issue in issues))

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    resource = {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}
    # what we emit is valid R4 (imported here: most runs refuse nothing)
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    OperationOutcome.model_validate(resource)
    return resource
