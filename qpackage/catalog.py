"""The catalog of released artifacts and the way into it: every Questionnaire
version the payer knows, compiled once (the current policies' builds and
every release kept in the archive, read from disk), and a response received
against it — the version it names found, checked, moved to the version in
effect and scored. The package layer: it assembles what the builder wrote
and the scorer decides; the scorer itself reads no files.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cql_like.engine import CompiledRequest
from policies.model import Policy
from policies.names import questionnaire_url, questionnaire_version
from scoring import assess
from scoring.carry import CarriedOver, carry_over
from scoring.determination import Determination
from scoring.outcome import InvalidInput, Issue
from scoring.response import (
    check_answers,
    check_size,
    check_structure,
    parse_json,
    questionnaire_of,
    size_bound,
    unpack_data_urls,
)


def _without_presentation(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items without their prefill and terminology-server extensions: they
    say how a client fills or renders an item, not what a response to it is
    (the CQL reference's form and the terminology server changed between
    builds of one policy version)."""
    # The builder is imported where the catalog is built, not at import: a
    # catalog read back from the cache (qpackage.cache) needs none of it.
    from builder.prepopulation import INITIAL_EXPRESSION
    from builder.questionnaire import ITEM_TERMINOLOGY_SERVER

    presentation = {INITIAL_EXPRESSION, ITEM_TERMINOLOGY_SERVER}
    out = []
    for item in items:
        item = dict(item)
        kept = [e for e in item.pop("extension", []) if e.get("url") not in presentation]
        if kept:
            item["extension"] = kept
        if "item" in item:
            item["item"] = _without_presentation(item["item"])
        out.append(item)
    return out


class Catalog:
    """Every Questionnaire version the service knows, compiled once: those of
    the current policies, and every released one kept in the archive (older
    policy versions rebuilt from their snapshots; an older build of the same
    policy version resolves to today's build when its items are the same), so
    records made under an older version still open and re-score."""

    def __init__(
        self,
        policies: list[Policy],
        archive: Path | None = None,
        *,
        eager: bool = True,
        only: str | None = None,
    ) -> None:
        """``eager``: every form's definitions compiled and checked now, as
        the service wants them; else each compiled when first evaluated, and
        the forms ``dtr build`` checked not checked again (``dtr score``
        scores one response against hundreds of definitions). ``only``: the
        archive's files of that policy alone are read (see
        :meth:`for_response`)."""
        from builder.artifacts import questionnaires, read_release_times
        from builder.prepopulation import library_resource, load, sources
        from builder.valuesets import value_sets
        from policies.loader import PolicyError, older_versions

        self.policies = {policy.id: policy for policy in policies}
        self.packages: dict[str, CompiledRequest] = {}
        # every ValueSet of every known version, by url|version
        self.value_sets: dict[str, dict[str, Any]] = {}
        # every prepopulation Library (CQL and ELM), by url|version
        self.libraries: dict[str, dict[str, Any]] = {}
        # when each url|version was first released (DTR ``changedsince``)
        self.released_at: dict[str, datetime] = {
            canonical: datetime.fromisoformat(moment.replace("Z", "+00:00"))
            for canonical, moment in (read_release_times(archive.parent) if archive else {}).items()
        }
        self.unresolvable: list[str] = []
        older, unloadable = older_versions(archive, policies, only or "")
        self.unresolvable += unloadable
        # the prepopulation CQL of each policy, as translated by `dtr build`
        translations = [archive.parent] if archive else []
        for policy in [*policies, *older]:
            needed = bool(sources(policy))
            compiled = load(policy, questionnaire_version(policy), translations) if needed else None
            if needed and compiled is None:
                if policy in policies:
                    raise PolicyError(
                        policy.id,
                        [
                            "its prepopulation CQL is not translated (or changed since):"
                            " run `dtr build` with the CQL tools (scripts/install-cql-tools)"
                        ],
                    )
                self.unresolvable.append(f"{policy.id} {policy.policy.version}")
                continue
            for value_set in value_sets(policy):
                self.value_sets[_canonical(value_set)] = value_set
            if compiled is not None:
                logic = library_resource(policy, compiled)
                self.libraries[_canonical(logic)] = logic
            for form in questionnaires(policy, compiled, check=eager):
                package = CompiledRequest(
                    policy, form.kind, form.questionnaire, form.drug, eager=eager
                )
                self.packages[_canonical(form.questionnaire)] = package
        # the versions offered for new requests: the current policies' builds
        self.current = {
            canonical: package
            for canonical, package in self.packages.items()
            if package.policy in policies
        }
        # the most items and answers a response to any known form can hold
        bounds = [size_bound(package) for package in self.packages.values()] or [(0, 0)]
        self.size_bound = (max(b[0] for b in bounds), max(b[1] for b in bounds))
        self._in_effect = {
            package.questionnaire["url"]: package for package in self.current.values()
        }
        for path in sorted(archive.glob(f"ValueSet-{only or ''}*.json")) if archive else []:
            released = json.loads(path.read_text(encoding="utf-8"))
            self.value_sets.setdefault(_canonical(released), released)
        for path in sorted(archive.glob(f"Questionnaire-{only or ''}*.json")) if archive else []:
            released = json.loads(path.read_text(encoding="utf-8"))
            canonical = _canonical(released)
            if canonical not in self.packages:
                alias = self._same_items(released)
                if alias is None:
                    self.unresolvable.append(canonical)
                else:
                    self.packages[canonical] = alias

    def _same_items(self, released: dict[str, Any]) -> CompiledRequest | None:
        """Today's build of the same policy version, under the released
        Questionnaire, when a response to one is a response to the other."""
        from builder.valuesets import inline_options

        policy_version = released["version"].rsplit("-r", 1)[0]
        for package in list(self.packages.values()):
            built = package.questionnaire
            if (
                built["url"] == released["url"]
                and built["version"].rsplit("-r", 1)[0] == policy_version
                and _without_presentation(inline_options(built["item"], self.value_sets))
                == _without_presentation(inline_options(released["item"], self.value_sets))
            ):
                alias = copy.copy(package)
                alias.questionnaire = released
                return alias
        return None

    @classmethod
    def bundled(cls) -> Catalog:
        from policies.loader import bundled_archive, bundled_policies

        return cls(bundled_policies(), bundled_archive())

    @classmethod
    def from_folder(cls, folder: Path) -> Catalog:
        """A payer's own policy folder (see ``dtr --policies``)."""
        from builder.artifacts import archived
        from policies.loader import load_folder

        return cls(load_folder(folder), archived(folder / "questionnaires"))

    @classmethod
    def for_response(cls, resource: Mapping[str, Any], folder: Path | None = None) -> Catalog:
        """What scoring this one response needs (``dtr score``): the policy
        whose forms it answers, with its archived versions, each definition
        compiled when first evaluated. The whole folder's catalog when the
        response names none of the policies' forms (its refusal then says
        what is known)."""
        from builder.artifacts import archived
        from policies.loader import bundled_archive, bundled_policies, load_folder

        policies = load_folder(folder) if folder else bundled_policies()
        archive = archived(folder / "questionnaires") if folder else bundled_archive()
        try:
            canonical = questionnaire_of(resource)
        except InvalidInput:
            canonical = None
        url = canonical.split("|")[0] if isinstance(canonical, str) else None
        chosen = [
            policy
            for policy in policies
            if url in {questionnaire_url(policy, kind, drug) for kind, drug in policy.forms()}
        ]
        if len(chosen) != 1:
            return cls(policies, archive, eager=False)
        return cls(chosen, archive, eager=False, only=chosen[0].id)

    def in_effect(self, package: CompiledRequest) -> CompiledRequest:
        """The version of ``package``'s form that decides a request received
        now: the current policy's build of the same url. A form whose policy
        the payer has withdrawn (no current version) has none later than its
        own."""
        return self._in_effect.get(package.questionnaire["url"], package)

    def effective_period(self, package: CompiledRequest) -> dict[str, str] | None:
        """DTR ``spec-53``'s ``effectivePeriod`` of a form's version, from what
        the service knows: its release time as the start, and as the end the
        release time of the version released next, once this one is no longer
        the version in effect (a response begun under it is then moved on to
        the one in effect). None when its release time is unknown (not yet
        released): nothing is claimed."""
        questionnaire = package.questionnaire
        start = self.released_at.get(_canonical(questionnaire))
        if start is None:
            return None
        period = {"start": start.isoformat()}
        if self.in_effect(package) is not package:
            prefix = questionnaire["url"] + "|"
            later = [
                moment
                for canonical, moment in self.released_at.items()
                if canonical.startswith(prefix) and moment > start
            ]
            if later:
                period["end"] = min(later).isoformat()
        return period

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


def _canonical(resource: dict[str, Any]) -> str:
    return f"{resource['url']}|{resource['version']}"


@dataclass(frozen=True)
class Received:
    """A new request as decided: under which version, with which answers."""

    package: CompiledRequest  # the version in effect, which decided it
    response: dict[str, Any]  # the response to that version (answers carried over)
    determination: Determination
    carried: CarriedOver | None = None  # when the response answered an earlier version


def checked_package(catalog: Catalog, resource: Mapping[str, Any]) -> CompiledRequest:
    """The package a response names, once the response is no larger than
    that form allows and is an R4 QuestionnaireResponse (in that order: size
    is refused before any work per item)."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != (
        "QuestionnaireResponse"
    ):
        check_structure(resource)  # refuses it, naming what it is
    try:
        package = catalog.resolve(questionnaire_of(resource))
    except InvalidInput:
        # no form of ours: what else is wrong with it is said first, within
        # the bound of the largest form
        check_size(None, resource, catalog.size_bound)
        check_structure(resource)
        raise
    check_size(package, resource)
    check_structure(resource)
    return package


def in_effect(
    catalog: Catalog, package: CompiledRequest, resource: Mapping[str, Any]
) -> tuple[CompiledRequest, dict[str, Any], CarriedOver | None]:
    """A checked response moved to the version in effect: unchanged when it
    answers that version; else checked against the version it names (a
    malformed response to an old form is refused as one to a current form
    would be) and its answers carried over."""
    current = catalog.in_effect(package)
    if current is package:
        return package, dict(resource), None
    check_answers(package, resource)
    moved = carry_over(package, current, resource)
    return current, moved.response, moved


def receive(catalog: Catalog, resource: Mapping[str, Any], as_of: date) -> Received:
    """A new request, decided under the version in effect as of now."""
    # kept as FHIR has it: payload and type apart
    resource, normalised = unpack_data_urls(resource)
    package, response, moved = in_effect(catalog, checked_package(catalog, resource), resource)
    determination = assess(package, response, as_of)[0]
    if moved is not None:
        determination = replace(
            determination, answered=moved.answered, not_carried=moved.not_carried
        )
    if normalised:
        determination = replace(determination, normalised=normalised)
    return Received(package, response, determination, moved)


def score_json(
    catalog: Catalog, body: bytes | str | Mapping[str, Any], as_of: date
) -> Determination:
    """The whole path from a request body: parse, check, find the version in
    effect, carry the answers over to it when they answer an earlier one, score."""
    resource = parse_json(body) if isinstance(body, bytes | str) else body
    return receive(catalog, resource, as_of).determination
