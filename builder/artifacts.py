"""The generated files: Questionnaires (and the coverage table), their stable
JSON layout, and the register that keeps each canonical ``url|version`` bound
to one content.

``dtr build`` writes what :func:`generate` returns; the drift test compares it
with the committed files. ``questionnaires/released.json`` records the SHA-256
of every url|version ever built: building different content under a version
already recorded is refused, so a change to the builder's output must bump
``BUILDER_REVISION`` (or the policy version).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from builder.prepopulation import Compiled, PrepopulationError, library_resource, sources
from builder.questionnaire import build
from builder.valuesets import published, value_sets
from cql_like.definitions import enabling_expression, library
from policies.index import index_policy
from policies.model import REQUEST_KINDS, AnyOf, AuthorizationTerm, Policy, RequestKind, walk
from policies.tree import request_tree
from questionnaires.checks import check_questionnaire, describe_condition, iter_items

RELEASED = "released.json"
# when each url|version was first built: what DTR's ``changedsince`` compares
RELEASED_AT = "released-at.json"
ARCHIVE = "released"


def render_json(resource: dict[str, Any]) -> str:
    """The committed layout: two-space indent, element order as built, one
    trailing newline, so diffs show exactly what changed."""
    return json.dumps(resource, indent=2, ensure_ascii=False) + "\n"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Artifact:
    filename: str
    text: str
    canonical: str | None = None  # url|version for FHIR canonical resources


@dataclass(frozen=True)
class Form:
    """One generated Questionnaire: a request kind, for one drug of the policy
    (``drug`` is None when the policy covers one drug)."""

    kind: RequestKind
    drug: str | None
    questionnaire: dict[str, Any]


def questionnaires(
    policy: Policy, compiled: Compiled | None = None, *, check: bool = True
) -> list[Form]:
    """Every Questionnaire of a policy, checked with the ValueSets it
    references (``check``: a one-shot command reading forms ``dtr build``
    has already checked may skip it); ``compiled`` is its translated
    prepopulation Library, which a policy with questions an EHR can answer
    must have."""
    if compiled is None and sources(policy):
        raise PrepopulationError(
            f"{policy.id}: its prepopulation CQL is not translated: run `dtr build` with the"
            " CQL tools installed (scripts/install-cql-tools)"
        )
    built = [Form(kind, drug, build(policy, kind, drug, compiled)) for kind, drug in policy.forms()]
    if check:
        answer_lists = published(policy)
        for form in built:
            check_questionnaire(form.questionnaire, answer_lists)
    return built


def generate(policies: list[Policy], compiled: dict[str, Compiled] | None = None) -> list[Artifact]:
    """Every generated FHIR file for these policies, checked: each
    Questionnaire, the ValueSets of its answer lists, the Library of its
    scoring definitions, and the prepopulation Library (CQL and ELM) of a
    policy whose questions an EHR can answer (``compiled``, by policy id)."""
    artifacts = []
    for policy in policies:
        translated = (compiled or {}).get(policy.id)
        resources = []
        if translated is not None:
            resources.append(library_resource(policy, translated))
        for form in questionnaires(policy, translated):
            logic = library(policy, form.kind, form.questionnaire, form.drug)
            resources += [form.questionnaire, logic]
        resources += value_sets(policy)
        for resource in resources:
            artifacts.append(
                Artifact(
                    filename=f"{resource['resourceType']}-{resource['id']}.json",
                    text=render_json(resource),
                    canonical=f"{resource['url']}|{resource['version']}",
                )
            )
    return artifacts


class VersionNotBumped(ValueError):
    pass


def policy_digest(policy: Policy) -> str:
    """The policy's content, independent of its file's comments and layout,
    and of fields the policy format gained later and the file leaves at
    their defaults."""
    return digest(json.dumps(policy.model_dump(mode="json", exclude_defaults=True), sort_keys=True))


def _policy_key(policy: Policy) -> str:
    return f"policy:{policy.id}|{policy.policy.version}"


def updated_register(
    artifacts: list[Artifact], register: dict[str, str], policies: list[Policy] | None = None
) -> dict[str, str]:
    """The register with these artifacts (and the policies they come from)
    added; refuses a new content under a url|version it already records,
    saying whose business the fix is: a changed policy needs its own version
    bump; an unchanged policy built differently is a change of the builder."""
    result = dict(register)
    changed_policies = []
    for policy in policies or []:
        known = result.get(_policy_key(policy))
        if known is not None and known != policy_digest(policy):
            changed_policies.append(policy)
        result[_policy_key(policy)] = policy_digest(policy)
    if changed_policies:
        raise VersionNotBumped(
            "; ".join(
                f"policy {p.id} changed but its version {p.policy.version} did not: bump"
                " `policy.version` in its file and build again"
                for p in changed_policies
            )
        )
    clashes = []
    for artifact in artifacts:
        if artifact.canonical is None:
            continue
        known = result.get(artifact.canonical)
        if known is not None and known != digest(artifact.text):
            clashes.append(artifact.canonical)
        result[artifact.canonical] = digest(artifact.text)
    if clashes:
        raise VersionNotBumped(
            "the builder now makes different content for "
            + ", ".join(clashes)
            + " from unchanged policies: a change of the builder, not of any policy — bump"
            " BUILDER_REVISION in policies/names.py and build again"
        )
    return dict(sorted(result.items()))


def read_register(folder: Path) -> dict[str, str]:
    path = folder / RELEASED
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def read_release_times(folder: Path) -> dict[str, str]:
    path = folder / RELEASED_AT
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def archived(folder: Path) -> Path:
    """Where every released policy version and Questionnaire version is kept,
    so that records made under an older version still open and re-score."""
    return folder / ARCHIVE


def write(folder: Path, artifacts: list[Artifact], policies: list[Policy]) -> list[Path]:
    """Write the artifacts, the updated register and the archive of released
    versions; returns the files written."""
    register = updated_register(artifacts, read_register(folder), policies)
    written = []
    for artifact in artifacts:
        path = folder / artifact.filename
        path.write_text(artifact.text, encoding="utf-8")
        written.append(path)
    archive = archived(folder)
    archive.mkdir(parents=True, exist_ok=True)
    for policy in policies:
        path = archive / f"policy-{policy.id}-{policy.policy.version}.yaml"
        text = yaml.safe_dump(
            policy.model_dump(mode="json", exclude_defaults=True), sort_keys=False
        )
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for artifact in artifacts:
        if artifact.filename.startswith(("Questionnaire-", "ValueSet-")) and artifact.canonical:
            version = artifact.canonical.split("|")[1]
            path = archive / artifact.filename.replace(".json", f"-{version}.json")
            path.write_text(artifact.text, encoding="utf-8")
            written.append(path)
    register_path = folder / RELEASED
    register_path.write_text(json.dumps(register, indent=2) + "\n", encoding="utf-8")
    written.append(register_path)
    times = read_release_times(folder)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    for artifact in artifacts:
        if artifact.canonical is not None:
            times.setdefault(artifact.canonical, now)
    times_path = folder / RELEASED_AT
    times_path.write_text(json.dumps(dict(sorted(times.items())), indent=2) + "\n", "utf-8")
    written.append(times_path)
    return written


# --- the coverage table -------------------------------------------------------


def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("builder", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["cell"] = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
    return env


def _links_by_section(questionnaire: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    links: dict[str, list[dict[str, str]]] = {}
    for item, _depth in iter_items(questionnaire["item"]):
        conditions = [describe_condition(c) for c in item.get("enableWhen", [])]
        written = enabling_expression(item)
        if written is not None:
            conditions.append(f"enableWhenExpression {written}")
        joiner = " or " if item.get("enableBehavior") == "any" else " and "
        for code in item.get("code", []):
            links.setdefault(code["code"], []).append(
                {"linkId": item["linkId"], "when": joiner.join(conditions)}
            )
    return links


def coverage_context(policies: list[Policy]) -> dict[str, Any]:
    context = []
    for policy in policies:
        identity = policy.policy
        requests = []
        # the request trees have turned documentation into questions: the
        # documents a pharmacist reads, by section, from the policy itself
        to_read = {
            c.id: c.documentation.document
            for k in REQUEST_KINDS
            for c in walk(policy.request(k).criteria)
            if c.documentation is not None and c.documentation.review
        }
        forms = [Form(k, d, build(policy, k, d)) for k, d in policy.forms()]
        for form in forms:
            kind, questionnaire = form.kind, form.questionnaire
            links = _links_by_section(questionnaire)
            tree = request_tree(policy, kind, form.drug)
            index = index_policy(policy, kind, form.drug)
            rows = []
            for criterion in walk(tree):
                parts = [criterion.met] if criterion.met else []
                if criterion.children:
                    ids = [
                        node.label if isinstance(node, AnyOf) else node.id
                        for node in criterion.children
                    ]
                    parts.append(f"{criterion.logic} of ({', '.join(ids)})")
                rows.append(
                    {
                        "section": criterion.id,
                        "text": criterion.text,
                        "ruling": criterion.ruling,
                        "links": links.get(criterion.id, []),
                        "definition": f" {criterion.combine} ".join(parts),
                        "review": criterion.on_unmet == "review",
                        "reads": to_read.get(criterion.id),
                        "kind": criterion.kind,
                    }
                )
            if policy.investigational is not None:
                for condition in policy.investigational.all_conditions():
                    if condition.answer_of and condition.answer_of not in index.questions:
                        continue
                    definition = condition.applies or (
                        f"%{condition.answer_of}.code = '{condition.id}'"
                    )
                    rows.append(
                        {
                            "section": condition.id,
                            "text": f"Investigational: {condition.text}",
                            "ruling": None,
                            "links": links.get(condition.id, []),
                            "definition": definition,
                            "review": False,
                            "reads": None,
                            "kind": "investigational",
                        }
                    )
            request = policy.request(kind)
            requests.append(
                {
                    "title": request.title
                    + (f" — {policy.drug(form.drug).name}" if form.drug else ""),
                    "url": questionnaire["url"],
                    "version": questionnaire["version"],
                    "ruling": request.ruling,
                    "basis": request.basis if request.assumed else None,
                    "term": _term_text(policy.authorization.term(kind)),
                    "rows": rows,
                }
            )
        context.append(
            {
                "title": identity.title,
                "number": identity.number or identity.id,
                "payer": identity.payer.name,
                "version": identity.version,
                "date": identity.date_text or "undated",
                "source": identity.source,
                "over_limit": (
                    {"deny": "denied over the limit", "modify": "approved modified to the limit"}[
                        policy.quantity_limits.over_limit
                    ]
                    + (
                        "; a daily dose above the limit referred to a pharmacist"
                        if policy.quantity_limits.over_dose == "review"
                        else ""
                    )
                    if policy.quantity_limits
                    else None
                ),
                "limits": [
                    {**limit.model_dump(), "quantity": limit.max_units}
                    for limit in (policy.quantity_limits.limits if policy.quantity_limits else [])
                ],
                "requests": requests,
            }
        )
    return {"policies": context}


def _term_text(term: AuthorizationTerm) -> str:
    """The authorization length of a request type, in words."""
    text = f"{term.months} months"
    if term.assumed:
        text += f" (assumed: {term.basis})"
    parts = [text]
    parts += [f"{b.months} months when {b.section} is met" for b in term.branches]
    if term.lesser_of_planned:
        parts.append("or the planned length of therapy when shorter")
    if term.max_renewals is not None:
        parts.append(f"at most {term.max_renewals} renewals")
    if term.max_total_months is not None:
        parts.append(f"at most {term.max_total_months} months of therapy in all")
    for cap in term.branch_caps:
        caps = [f"at most {cap.max_renewals} renewals"] if cap.max_renewals is not None else []
        if cap.max_total_months is not None:
            caps.append(f"at most {cap.max_total_months} months of therapy in all")
        parts.append(f"for {cap.section}, {' and '.join(caps)}")
    return "; ".join(parts)


def coverage_markdown(policies: list[Policy]) -> str:
    return templates().get_template("coverage.md.j2").render(coverage_context(policies))
