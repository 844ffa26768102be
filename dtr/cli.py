"""``dtr``: build the generated Questionnaires, score responses, serve the API.

Exit status: 0 on success (any determination is a success), 1 when the input
is refused (the OperationOutcome is printed), 2 on a policy or build error
(the message names the file and field).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date
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


def cmd_score(args: argparse.Namespace) -> int:
    # imported here: `dtr build` must work even while a policy change leaves
    # the scoring package unable to compile
    from scoring import Catalog, InvalidInput, score_json
    from scoring.fhir_outputs import claim_response
    from scoring.notice import render_notice

    try:
        body = Path(args.response).read_bytes() if args.response != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        print(f"dtr: cannot read {args.response}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        determination = score_json(Catalog.bundled(), body, args.as_of)
    except InvalidInput as exc:
        print(json.dumps(exc.outcome(), indent=2))
        return 1
    if args.format == "json":
        print(json.dumps(determination.to_json(), indent=2))
    elif args.format == "fhir":
        print(json.dumps(claim_response(determination), indent=2))
    else:
        print(render_notice(determination, args.format), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    settings = Settings.from_env(host=args.host, port=args.port, database=args.db)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    print(
        f"dtr: serving on http://{settings.host}:{settings.port}/ (store: {settings.database})",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dtr", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="regenerate questionnaires/ and docs/coverage.md")
    build.add_argument("policy", nargs="*", help="policy YAML files (default: the bundled ones)")
    build.add_argument("--out", default=str(PROJECT_ROOT / "questionnaires"))
    build.add_argument("--docs", default=str(PROJECT_ROOT / "docs"))
    build.set_defaults(func=cmd_build)

    score = commands.add_parser("score", help="score a QuestionnaireResponse")
    score.add_argument("response", help="QuestionnaireResponse JSON file, or - for stdin")
    score.add_argument("--as-of", type=_date, default=date.today(), help="evaluation date")
    score.add_argument("--format", choices=["json", "fhir", "html", "text"], default="json")
    score.set_defaults(func=cmd_score)

    serve = commands.add_parser(
        "serve", help="run the FHIR API and portal (env: DTR_HOST, DTR_PORT, DTR_DB)"
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
    serve.set_defaults(func=cmd_serve)
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
