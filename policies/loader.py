"""Reading policy files: YAML in, a validated :class:`Policy` out.

Policies ship as package data (``policies/*.yaml``) so builds and tests never
read outside the installed project. A malformed file raises
:class:`PolicyError` naming the file, the field (as a dotted path) and what is
wrong, so whoever edits a policy sees at once where the mistake is.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.consistency import check_policy
from policies.examples import EXAMPLES_SUFFIX, Examples, examples_file, is_examples_file
from policies.model import Policy

# libyaml's safe loader (the same constructors, in C); the pure-Python one
# where PyYAML was built without libyaml
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PolicyError(ValueError):
    """A policy file that cannot be used, with every problem found in it."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid policy file\n{listing}")


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    previous: int | str | None = None
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("criterion", "any_of") and isinstance(previous, int):
            # the tag of the criteria union, not a field of the file
            pass
        else:
            path += f".{part}" if path else str(part)
        previous = part
    return path or "(top level)"


def _yaml_mapping(text: str, source: str, what: str) -> dict[str, Any]:
    try:
        data: Any = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [f"{where}not valid YAML ({problem})"]) from None
    except ValueError as exc:
        # PyYAML turns an unquoted date like 2025-13-01 into a ValueError.
        raise PolicyError(source, [f"not valid YAML ({exc})"]) from None
    if not isinstance(data, dict):
        raise PolicyError(source, [f"the file must hold a mapping of {what}"])
    return data


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    seen = set()
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        path = _field_path(error["loc"])
        # cross-field rules name their section (and field) themselves
        line = message if path == "(top level)" and ": " in message else f"{path}: {message}"
        if line not in seen:
            seen.add(line)
            problems.append(line)
    return problems


def parse_policy(text: str, source: str) -> Policy:
    """Parse and validate the YAML text of one policy; ``source`` names it in errors."""
    data = _yaml_mapping(text, source, "policy fields")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _problems(exc)) from None
    try:
        check_policy(policy)
    except ValueError as exc:
        # the rules across fields name their section (and field) themselves
        message = str(exc)
        raise PolicyError(
            source, [message if ": " in message else f"(top level): {message}"]
        ) from None
    return policy


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    if is_examples_file(path):
        policy = path.name.removesuffix(EXAMPLES_SUFFIX) + ".yaml"
        raise PolicyError(
            str(path), [f"holds worked examples, not a policy: name the policy file ({policy})"]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    return parse_policy(text, str(path))


def parse_examples(text: str, source: str) -> Examples:
    """Parse and validate a worked examples file; ``source`` names it in errors."""
    data = _yaml_mapping(text, source, "worked examples")
    try:
        return Examples.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            location = error["loc"]
            if len(location) > 2 and location[0] == "cases" and isinstance(location[1], int):
                # named by the example, as the author knows it
                name = _example_name(data, location[1])
                line = f"example {name!r}: {_field_path(location[2:])}: {message}"
            else:
                path = _field_path(location)
                line = (
                    message if path == "(top level)" and ": " in message else f"{path}: {message}"
                )
            if line not in problems:
                problems.append(line)
        raise PolicyError(source, problems) from None


def _example_name(data: dict[str, Any], index: int) -> str:
    cases = data.get("cases")
    case = cases[index] if isinstance(cases, list) and index < len(cases) else None
    name = case.get("name") if isinstance(case, dict) else None
    return str(name) if name else f"cases[{index}]"


def load_examples(policy_file: str | Path) -> tuple[Path, Examples] | None:
    """The worked examples beside a policy file (``<stem>.examples.yaml``),
    with where they were read; None when it has none."""
    path = examples_file(Path(policy_file))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    return path, parse_examples(text, str(path))


def stray_examples(folder: Path) -> list[str]:
    """The worked examples files of a folder with no policy file beside them
    (a policy renamed or removed): each a problem, since they would run never."""
    return [
        f"{path}: worked examples of no policy: there is no"
        f" {path.name.removesuffix(EXAMPLES_SUFFIX)}.yaml beside it"
        for path in sorted(folder.glob("*" + EXAMPLES_SUFFIX))
        if not path.with_name(path.name.removesuffix(EXAMPLES_SUFFIX) + ".yaml").exists()
    ]


def policy_files(folder: Path) -> list[Path]:
    """The policy files of a folder (``*.yaml``, not the worked examples
    beside them), in a stable order."""
    return sorted(p for p in folder.glob("*.yaml") if not is_examples_file(p))


def bundled_policy_files() -> list[Path]:
    """The policy files shipped with the package, in a stable order."""
    folder = resources.files("policies")
    return sorted(
        Path(str(f))
        for f in folder.iterdir()
        if f.name.endswith(".yaml") and not is_examples_file(Path(f.name))
    )


def bundled_policies() -> list[Policy]:
    return [load_policy(path) for path in bundled_policy_files()]


def older_versions(
    archive: Path | None, current: list[Policy], only: str = ""
) -> tuple[list[Policy], list[str]]:
    """The archived policy versions (of policy ids starting with ``only``)
    that are not a current policy's version, and the names of the snapshots
    that no longer load: the catalog rebuilds the first and names the
    second; ``dtr build`` translates the first's CQL."""
    versions = {(p.id, p.policy.version) for p in current}
    older: list[Policy] = []
    unloadable: list[str] = []
    for path in sorted(archive.glob(f"policy-{only}*.yaml")) if archive else []:
        try:
            snapshot = load_policy(path)
        except PolicyError:
            unloadable.append(path.name)
            continue
        if (snapshot.id, snapshot.policy.version) not in versions:
            older.append(snapshot)
    return older, unloadable


def bundled_archive() -> Path:
    """The archive of released versions shipped with the package."""
    return Path(str(resources.files("questionnaires"))) / "released"


def load_folder(folder: str | Path) -> list[Policy]:
    """Every policy file (``*.yaml``, not ``*.examples.yaml``) of a payer's
    own folder, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PolicyError(str(folder), ["is not a folder of policy files"])
    files = policy_files(folder)
    if not files:
        raise PolicyError(str(folder), ["holds no policy file (*.yaml)"])
    return [load_policy(path) for path in files]
