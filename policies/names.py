"""What the builder names things: the ids, versions and canonical URLs of the
Questionnaires, Libraries and ValueSets made from a policy, and the linkId of
each question. The scorer, the package and the service find a form by these
names, so they are spelt here once, apart from the JSON emitter."""

from __future__ import annotations

from policies.generated import (
    DOCUMENT_PREFIX,
)
from policies.model import (
    Policy,
    RequestKind,
)

# Bump when what the builder emits changes for an unchanged policy version:
# the Questionnaire version is ``{policy version}-r{BUILDER_REVISION}``, and a
# canonical url|version must never name two different contents.
BUILDER_REVISION = 4


def record_only_url(policy: Policy) -> str:
    """The extension marking a question that informs the reviewer and decides nothing."""
    return f"{policy.policy.canonical_base}/StructureDefinition/record-only"


def questionnaire_id(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    return f"{policy.id}-{drug}-{kind}" if drug else f"{policy.id}-{kind}"


def questionnaire_version(policy: Policy) -> str:
    return f"{policy.policy.version}-r{BUILDER_REVISION}"


def questionnaire_url(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    return f"{policy.policy.canonical_base}/Questionnaire/{questionnaire_id(policy, kind, drug)}"


def library_id(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    """The Library carrying the scoring definitions (see ``cql_like``)."""
    return f"{questionnaire_id(policy, kind, drug)}-logic"


def library_url(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    return f"{policy.policy.canonical_base}/Library/{library_id(policy, kind, drug)}"


def value_set_id(policy: Policy, name: str, drug: str | None = None) -> str:
    """The ValueSet of a coded question's answers: one per question of the
    policy (per drug, in a policy of several drugs), shared by its forms."""
    parts = [policy.id, *([drug] if drug else []), name]
    return "-".join(parts).replace("_", "-")


def value_set_url(policy: Policy, name: str, drug: str | None = None) -> str:
    return f"{policy.policy.canonical_base}/ValueSet/{value_set_id(policy, name, drug)}"


def question_link_id(section: str, name: str) -> str:
    if name.startswith(DOCUMENT_PREFIX):
        return f"{section}.documentation"
    return f"{section}.{name}"
