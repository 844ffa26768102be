"""``dtr``: build the generated Questionnaires and the coverage table.

Exit status 0 on success, 2 on a policy or build error (the message names
the file and field), so scripts and CI can rely on it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from builder.artifacts import VersionNotBumped, coverage_markdown, generate, write
from builder.checks import QuestionnaireError
from builder.loader import PolicyError, bundled_policies, load_policy

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _policies(paths: Sequence[str]):  # type: ignore[no-untyped-def]
    return [load_policy(p) for p in paths] if paths else bundled_policies()


def cmd_build(args: argparse.Namespace) -> int:
    policies = _policies(args.policy)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = write(out, generate(policies))
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    coverage = docs / "coverage.md"
    coverage.write_text(coverage_markdown(policies), encoding="utf-8")
    for path in [*written, coverage]:
        print(f"wrote {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dtr", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="regenerate questionnaires/ and docs/coverage.md")
    build.add_argument("policy", nargs="*", help="policy YAML files (default: the bundled ones)")
    build.add_argument("--out", default=str(PROJECT_ROOT / "questionnaires"))
    build.add_argument("--docs", default=str(PROJECT_ROOT / "docs"))
    build.set_defaults(func=cmd_build)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (PolicyError, QuestionnaireError, VersionNotBumped) as exc:
        print(f"dtr: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
