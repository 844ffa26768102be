"""Worked examples checked against the forms a policy builds, at build time.

An example that names a question no form asks, answers it with the wrong
kind of value or cites a section the policy does not have would only fail
later, as a mismatch that blames the policy (or, worse, pass by accident): it
is refused here, each problem naming the file, the example and the field.
Running the examples (they are scored) is the package layer's job
(:mod:`qpackage.examples`): the builder does not score.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from builder.verification.explore import explore_forms
from cql_like.engine import CompiledRequest, ItemSpec
from policies.examples import Example, Examples
from policies.model import Policy

_PARTIAL_DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$")


def form_of(
    packages: Mapping[tuple[str, str | None], CompiledRequest], example: Example
) -> CompiledRequest | None:
    return packages.get((example.request, example.drug))


def built_forms(policy: Policy) -> dict[tuple[str, str | None], CompiledRequest]:
    """Each form of the policy as built and compiled, by (request, drug)."""
    return {(e.kind, e.drug): e.package for e in explore_forms(policy)}


def example_problems(policy: Policy, examples: Examples, source: str) -> list[str]:
    """Every problem of a worked examples file against the policy's forms,
    each as ``FILE: example 'NAME': FIELD: what``."""
    if examples.policy != policy.id:
        return [f"{source}: policy: {examples.policy!r} is not the policy beside it ({policy.id})"]
    forms = built_forms(policy)
    sections = {s for package in forms.values() for s in package.index.section_text}
    problems = []
    for example in examples.cases:
        where = f"{source}: example {example.name!r}"
        package = form_of(forms, example)
        if package is None:
            offered = ", ".join(f"{k}{f' ({d})' if d else ''}" for k, d in sorted(forms, key=str))
            field = (
                "drug"
                if example.drug and any(k == example.request for k, _ in forms)
                else "request"
            )
            problems.append(
                f"{where}: {field}: the policy has no {example.request} form"
                f"{f' for {example.drug}' if example.drug else ''} (its forms: {offered})"
            )
            continue
        form = f"the {example.request} form{f' of {example.drug}' if example.drug else ''}"
        given: list[tuple[str, str, Any]] = []
        if example.base != "none":
            base = examples.bases[example.base]
            given += [
                (f"bases.{example.base}.{n}", n, v)
                for n, v in base.items()
                if n not in example.changes
            ]
        given += [(f"set.{n}", n, v) for n, v in example.changes.items()]
        for field, name, value in given:
            if name in example.unset:
                continue
            problem = _answer_problem(package, form, name, value)
            if problem:
                problems.append(f"{where}: {field}: {problem}")
        for index, name in enumerate(example.unset):
            if _item(package, name) is None:
                problems.append(f"{where}: unset[{index}]: {form} asks no question {name}")
        for index, section in enumerate(example.exercises):
            if section not in sections:
                problems.append(f"{where}: exercises[{index}]: the policy has no section {section}")
        for field, cited in example.expect.sections().items():
            for index, section in enumerate(cited):
                if section not in package.index.section_text:
                    problems.append(
                        f"{where}: expect.{field}[{index}]: {form} has no section {section}"
                    )
        for field, links in (
            ("missingQuestions", example.expect.missing_questions),
            ("reviewDocuments", example.expect.review_documents),
        ):
            for index, link in enumerate(links):
                if link not in package.items:
                    problems.append(f"{where}: expect.{field}[{index}]: {form} has no item {link}")
    return problems


def _item(package: CompiledRequest, name: str) -> ItemSpec | None:
    return package.items.get(package.link_of.get(name, name))


def _answer_problem(package: CompiledRequest, form: str, name: str, value: Any) -> str | None:
    """What is wrong with ``value`` as an answer to question ``name`` (a
    question name or linkId) of ``form``, or None."""
    item = _item(package, name)
    if item is None or item.type in ("group", "display"):
        return f"{form} asks no question {name}"
    if value is None:
        return None  # left unanswered
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not item.repeats:
        return f"{name} takes one answer, not a list"
    for one in values:
        wanted = _wrong_type(package, item, one)
        if wanted:
            article = "an" if item.type[0] in "aeiou" else "a"
            return f"{name} is {article} {item.type} question: expected {wanted}, got {one!r}"
    return None


def _wrong_type(package: CompiledRequest, item: ItemSpec, value: Any) -> str | None:
    """What a value of the item's type looks like, when ``value`` is not one."""
    kind = item.type
    if kind == "boolean":
        return None if isinstance(value, bool) else "true or false"
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "a whole number"
    if kind == "decimal":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "a number"
    if kind in ("date", "dateTime"):
        ok = isinstance(value, date) or (
            isinstance(value, str) and bool(_PARTIAL_DATE.match(value))
        )
        return None if ok else "a date (YYYY-MM-DD, YYYY-MM or YYYY)"
    if kind in ("string", "text"):
        return None if isinstance(value, str) else "text"
    if kind == "choice":
        codes = [c["code"] for c in package.codings.get(item.link_id, [])]
        if str(value) in codes and not isinstance(value, bool | dict | list):
            return None
        return f"one of {', '.join(codes)}"
    if kind == "attachment":
        ok = isinstance(value, dict) and "contentType" in value
        return None if ok else "an attachment ({contentType: ..., title: ..., data: ...})"
    return None
