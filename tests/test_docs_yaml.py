"""Every YAML example of docs/policy-format.md is valid for the loader.

A payer writes its first policy by copying these examples, so each one must
load as written. The convention (docs/testing.md): a block with no comment
before it is a whole policy file, loaded by the loader as ``dtr check`` loads
one (the schema and the rules across fields). A block that is a part of a
file says which model class it shows in an HTML comment on the line before
it, ``<!-- model: Criterion -->``: its YAML is validated against that class
(each item, when the block is a list). A fragment may leave out fields the
class requires (it shows some keys, not a whole section), but every key it
writes must exist there and hold a value of the right type.
``<!-- model: Policy, outline -->`` marks a block that lists the class's
fields, values not read: it must name each of them and nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

import policies.examples
import policies.model
import review.config
from builder.verification.examples import example_problems
from policies.loader import SAFE_LOADER, PolicyError, parse_examples, parse_policy
from qpackage.examples import run_examples

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "policy-format.md"

_BLOCK = re.compile(r"^[ \t]*```yaml\n(.*?)^[ \t]*```", flags=re.S | re.M)
_MARK = re.compile(r"<!--\s*model:\s*(\w+)(,\s*outline)?\s*-->")


def _models() -> dict[str, type[BaseModel]]:
    """The classes a comment may name: the policy file's, the worked
    examples' and the payer file's."""
    found: dict[str, type[BaseModel]] = {}
    for module in (policies.model, policies.examples, review.config):
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
            ):
                found[name] = value
    return found


MODELS = _models()


def _fragment_problems(model: type[BaseModel], data: Any) -> list[str]:
    """What is wrong with ``data`` as a part of a ``model``: everything but a
    required field left out."""
    problems = []
    for item in data if isinstance(data, list) else [data]:
        try:
            model.model_validate(item)
        except ValidationError as exc:
            problems += [
                f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
                for error in exc.errors()
                if error["type"] != "missing"
            ]
    return problems


def yaml_problems(markdown: str, source: str) -> list[str]:
    """Every problem of the ``yaml`` blocks of a Markdown text, each naming
    the block by its line."""
    problems = []
    for block in _BLOCK.finditer(markdown):
        line = markdown.count("\n", 0, block.start()) + 1
        where = f"{source}:{line}"
        before = markdown[: block.start()].rstrip().rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        text = block.group(1)
        try:
            # libyaml's loader and the pure-Python one, which the loader falls
            # back to: libyaml takes `{text: Is it?}`, the other does not
            data = yaml.load(text, Loader=SAFE_LOADER)
            yaml.load(text, Loader=yaml.SafeLoader)
        except (yaml.YAMLError, ValueError) as exc:
            problems.append(f"{where}: not valid YAML: {' '.join(str(exc).split())}")
            continue
        if mark is None:
            try:
                parse_policy(text, where)
            except PolicyError as exc:
                problems += [f"{where}: not a whole policy: {p}" for p in exc.problems]
            continue
        name, outline = mark.group(1), bool(mark.group(2))
        model = MODELS.get(name)
        if model is None:
            problems.append(f"{where}: model: no model class {name}")
        elif outline:
            keys = set(data) if isinstance(data, dict) else set()
            fields = set(model.model_fields)
            if keys != fields:
                problems.append(
                    f"{where}: the outline of {name} lists {sorted(keys - fields)} too many"
                    f" and {sorted(fields - keys)} too few"
                )
        else:
            problems += [f"{where}: {name}: {p}" for p in _fragment_problems(model, data)]
    return problems


def test_every_yaml_example_of_the_policy_format_loads() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert len(_BLOCK.findall(text)) > 25  # the blocks are found at all
    assert yaml_problems(text, "docs/policy-format.md") == []


WHOLE = """
```yaml
policy: {id: p, title: P, type: PA, payer: {name: P, identifier: P}, version: "1",
         canonical_base: "https://p.example", source: s}
drugs: [{name: D}]
authorization: {initial: {months: 6}, renewal: {months: 6}}
initial:
  title: I
  criteria: [{id: A, text: A, questions: [{name: a, type: boolean, text: "A?"}], met: "%a"}]
renewal: {title: R, criteria: [{id: Renewal.A, text: A, met: "%a"}]}
```
"""


@pytest.mark.parametrize(
    ("markdown", "problem"),
    [
        # a question's text ending in "?" inside a flow mapping is not YAML
        (
            "<!-- model: Criterion -->\n```yaml\n"
            "- {id: A, questions: [{name: a, type: boolean, text: Is it?}]}\n```\n",
            "not valid YAML",
        ),
        # a placeholder where a list of criteria belongs
        ("<!-- model: Criterion -->\n```yaml\nid: A\nchildren: [...]\n```\n", "children.0"),
        ("<!-- model: Criterion -->\n```yaml\nid: A\nmett: '%a'\n```\n", "mett: Extra inputs"),
        ("<!-- model: AuthorizationTerm -->\n```yaml\nmonths: six\n```\n", "months: Input"),
        ("<!-- model: Nothing -->\n```yaml\na: 1\n```\n", "no model class Nothing"),
        ("<!-- model: Policy, outline -->\n```yaml\npolicy: {}\n```\n", "too few"),
        ("```yaml\nauthorization: {initial: {months: 6}}\n```\n", "not a whole policy"),
        # a whole policy is held to the rules across fields: %b names no question
        (WHOLE.replace('met: "%a"}]}\n```', 'met: "%b"}]}\n```'), "not a whole policy"),
    ],
)
def test_a_wrong_example_is_found(markdown: str, problem: str) -> None:
    found = yaml_problems(markdown, "doc.md")
    assert found
    assert any(problem in p for p in found), found


def test_a_right_example_passes() -> None:
    assert yaml_problems(WHOLE, "doc.md") == []
    fragment = "  <!-- model: Criterion -->\n  ```yaml\n  - {id: A, met: '%a'}\n  ```\n"
    assert yaml_problems(fragment, "doc.md") == []


def _marked(text: str, name: str) -> list[str]:
    return [
        block.group(1)
        for block in _BLOCK.finditer(text)
        if (mark := _MARK.search(text[: block.start()].rstrip().rsplit("\n", 1)[-1]))
        and mark.group(1) == name
    ]


def test_the_worked_example_decides_as_it_says_on_the_guides_policy() -> None:
    """The worked example the guide shows is one of the policy the guide
    writes in ten minutes: checked against its forms and run, it decides as
    it expects."""
    text = GUIDE.read_text(encoding="utf-8")
    walkthrough = text[text.index("## Add a policy in ten minutes") :]
    policy = parse_policy(_BLOCK.findall(walkthrough)[0], "acme-examplinib.yaml")
    [shown] = _marked(text, "Examples")
    examples = parse_examples(shown, "acme-examplinib.examples.yaml")
    assert example_problems(policy, examples, "acme-examplinib.examples.yaml") == []
    report = run_examples(policy, examples, "acme-examplinib.examples.yaml")
    assert (report.run, report.problems) == (len(examples.cases), [])
