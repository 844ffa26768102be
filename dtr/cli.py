"""``dtr``: check policies, build the generated Questionnaires, score responses, serve the API.

Every command reads the bundled policies, or a payer's own folder given with
``--policies DIR`` (or ``DTR_POLICIES``): its generated files then go to
``DIR/questionnaires`` (with the version register and the archive of released
versions) and ``DIR/docs``, and the installed package is never edited.

Exit status: 0 on success (any determination is a success), 1 when the input
is refused (the OperationOutcome is printed), 2 on a policy or build error
(the message names the file, the section and the field).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtr.folders import Refused, folder_of

if TYPE_CHECKING:  # the service is imported by the commands that need it, when they run
    from service.accounts import Accounts
    from service.settings import Settings
    from service.store import Store


def cmd_score(args: argparse.Namespace) -> int:
    # imported here: `dtr build` must work even while a policy change leaves
    # the scoring package unable to compile
    from qpackage.cache import catalog_for
    from qpackage.catalog import score_json
    from scoring import InvalidInput
    from scoring.response import parse_json

    try:
        body = Path(args.response).read_bytes() if args.response != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        print(f"dtr: cannot read {args.response}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        folder = folder_of(args)
        resource = parse_json(body)
        # one response: only its policy, each definition compiled only if
        # evaluated, and kept for the next run (qpackage.cache)
        catalog = catalog_for(resource, folder)
        started = time.perf_counter()
        determination = score_json(catalog, resource, args.as_of)
        scoring = time.perf_counter() - started
    except InvalidInput as exc:
        print(json.dumps(exc.outcome(), indent=2))
        return 1
    # which version decided it, on stderr so the output stays the format asked
    # for; the time in the scorer, the rest of a run being its start
    print(
        f"dtr: decided under {determination.questionnaire} in {scoring * 1e3:.1f} ms",
        file=sys.stderr,
    )
    if determination.answered:
        left = ", ".join(determination.not_carried) or "none"
        print(
            f"dtr: the response answered {determination.answered}, an earlier version; its"
            f" answers were carried over to the version in effect (not carried: {left})",
            file=sys.stderr,
        )
    if args.format == "json":
        print(json.dumps(determination.to_json(), indent=2))
    elif args.format == "fhir":
        from scoring.fhir_outputs import claim_response

        print(json.dumps(claim_response(determination), indent=2))
    else:
        from review.notice import render_notice

        print(render_notice(determination, args.format), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from service import server
    from service.app import create_app
    from service.settings import Settings

    folder = folder_of(args)
    if folder:
        # a payer's own folder is served only once its policies verify (the
        # bundled ones are verified when they are built)
        from dtr.policy_commands import verified_folder

        verified_folder(args, folder)
    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            database=args.db,
            policies=str(folder) if folder else None,
            workers=args.workers,
        )
    except ValueError as exc:  # a setting that is not a number, or out of range
        raise Refused(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    server.run(app, settings, announce=_announce(settings, _first_user(app.state.store)))
    return 0


def _first_user(store: Store) -> str | None:
    """On a store with no users, make one: an office user of an example
    practice, with a password made now (never a fixed one). Its password, to
    be printed once the server listens (the last thing on the screen, set
    apart from the setup's output), or None when the store had users."""
    from access.passwords import generated
    from service.accounts import Accounts

    accounts = Accounts(store)
    if accounts.user_count():
        return None
    password = generated()
    made = accounts.add_first_user("office", "Office user", "office", "example-practice", password)
    # None: another instance starting on this store made the first user (and
    # prints its password) between the count and now
    return password if made is not None else None


def _announce(settings: Settings, password: str | None) -> Callable[[str], None]:
    """What ``dtr serve`` prints once the server listens: where, and on a
    first start the portal's sign-in, last and set apart."""

    def announce(bound: str) -> None:
        said = f"dtr: serving on {bound}/ (store: {settings.database})\n"
        if password is not None:
            url = settings.base_url.rstrip("/") if settings.base_url else bound
            rule = "=" * 72
            said += (
                f"\n{rule}\n"
                "  First start: a portal user was made (role office, organization"
                " example-practice).\n"
                f"  Sign in at   {url}/\n"
                "  user name    office\n"
                f"  password     {password}\n"
                "  Shown once. Add users with `dtr users add`, clients with `dtr clients add`;\n"
                "  a forgotten password: `dtr users reset-password office`.\n"
                f"{rule}\n"
            )
        # one write, so that whoever sees the first line sees the rest
        print(said, end="", flush=True)

    return announce


def _accounts(args: argparse.Namespace) -> tuple[Store, Accounts]:
    from service.accounts import Accounts
    from service.settings import Settings
    from service.store import open_store

    store = open_store(Settings.from_env(database=args.db).database)
    return store, Accounts(store)


def cmd_clients(args: argparse.Namespace) -> int:
    """Backend clients (SMART Backend Services): register, list, suspend, resume."""
    from access.scopes import DTR_CLIENT_SCOPES, is_wildcard, parse
    from access.tokens import Client, load_jwks

    store, accounts = _accounts(args)
    try:
        if args.action == "add":
            jwks = None
            if args.jwks:
                try:
                    jwks = load_jwks(Path(args.jwks).read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    print(f"dtr: {args.jwks}: {exc}", file=sys.stderr)
                    return 2
            elif not _jwks_url_ok(args.jwks_url):
                print("dtr: --jwks-url must be https (http only on loopback)", file=sys.stderr)
                return 2
            scopes = tuple(args.scope or DTR_CLIENT_SCOPES)
            wrong = [s for s in scopes if parse(s) is None or not s.startswith("system/")]
            if wrong:
                print(f"dtr: not system/ SMART v2 scopes: {', '.join(wrong)}", file=sys.stderr)
                return 2
            # a wildcard is every resource type or interaction, those the
            # service adds later included: only when the payer says so twice
            wide = [s for s in scopes if is_wildcard(s)]
            if wide and not args.allow_wildcard:
                print(
                    f"dtr: refused: {', '.join(wide)} is a wildcard, more than a DTR client"
                    " needs; name each resource type and interaction (by default a DTR"
                    f" client gets {' '.join(DTR_CLIENT_SCOPES)}), or give --allow-wildcard",
                    file=sys.stderr,
                )
                return 2
            jku = tuple(args.jku or ())
            if (jku or args.fetch_prefetch) and not args.cds_hooks:
                print("dtr: --jku and --fetch-prefetch are for a CDS client: add --cds-hooks",
                      file=sys.stderr)  # fmt: skip
                return 2
            if any(not url.startswith("https://") for url in jku):
                print("dtr: --jku must be https", file=sys.stderr)
                return 2
            client = Client(
                id=args.id, name=args.name or args.id, scopes=scopes, jwks=jwks,
                jwks_url=args.jwks_url, organization=args.organization,
                cds_hooks=args.cds_hooks, jku=jku, fetch_prefetch=args.fetch_prefetch,
            )  # fmt: skip
            try:
                accounts.add_client(client)
            except ValueError as exc:
                print(f"dtr: {exc}", file=sys.stderr)
                return 2
            print(f"dtr: registered client {client.id} with scopes {' '.join(scopes)}")
        elif args.action == "list":
            for c in accounts.clients():
                keys = c.jwks_url or f"{len((c.jwks or {}).get('keys', []))} key(s)"
                state = "active" if c.active else "suspended"
                cds = {"cdsHooks": True, "jku": list(c.jku), "fetchPrefetch": c.fetch_prefetch}
                print(json.dumps({"id": c.id, "name": c.name, "scopes": " ".join(c.scopes),
                                  "keys": keys, "state": state,
                                  **(cds if c.cds_hooks else {})}))  # fmt: skip
        else:
            if not accounts.set_client_active(args.id, args.action == "resume"):
                print(f"dtr: no client {args.id!r}", file=sys.stderr)
                return 2
            print(
                f"dtr: client {args.id} "
                + {"suspend": "suspended", "resume": "resumed"}[args.action]
            )
    finally:
        store.close()
    return 0


def _jwks_url_ok(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "https" or (parts.scheme == "http" and loopback)


def cmd_users(args: argparse.Namespace) -> int:
    """Portal users: add, list, disable, enable, reset-password."""
    from access.passwords import generated

    store, accounts = _accounts(args)
    try:
        if args.action in ("add", "reset-password"):
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else generated()
            if args.password_stdin and not password:
                print("dtr: no password on stdin", file=sys.stderr)
                return 2
            if args.action == "add":
                try:
                    accounts.add_user(args.username, args.name or args.username, args.role,
                                      args.organization, password)  # fmt: skip
                except ValueError as exc:
                    print(f"dtr: {exc}", file=sys.stderr)
                    return 2
                print(f"dtr: added {args.role} user {args.username}")
            elif accounts.reset_password(args.username, password):
                print(f"dtr: new password for {args.username}; their sessions were ended")
            else:
                print(f"dtr: no user {args.username!r}", file=sys.stderr)
                return 2
            if not args.password_stdin:
                print(f"dtr: password (shown once): {password}")
        elif args.action in ("disable", "enable"):
            if not accounts.set_user_active(args.username, args.action == "enable"):
                print(f"dtr: no user {args.username!r}", file=sys.stderr)
                return 2
            print(
                f"dtr: user {args.username} "
                + {"disable": "disabled; their sessions were ended", "enable": "enabled"}[
                    args.action
                ]
            )
        else:
            for u in accounts.users():
                print(json.dumps({"username": u.username, "name": u.name, "role": u.role,
                                  "organization": u.organization, "active": u.active}))  # fmt: skip
    finally:
        store.close()
    return 0


def cmd_errors(args: argparse.Namespace) -> int:
    """The error reports DTR clients sent with $log-questionnaire-errors."""
    from service.settings import Settings
    from service.store import open_store

    store = open_store(Settings.from_env(database=args.db).database)
    try:
        for report in store.errors(args.questionnaire, args.limit):
            line = {
                "id": report.id,
                "receivedAt": report.received_at,
                "questionnaire": report.questionnaire,
                "issues": [
                    f"{i.get('severity')}: {i.get('diagnostics') or i.get('code')}"
                    for i in report.outcome.get("issue", [])
                ],
            }
            print(json.dumps(line, ensure_ascii=False))
    finally:
        store.close()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Who read which member's data, when (newest first)."""
    from review.member import member_key
    from service.settings import Settings
    from service.store import open_store

    store = open_store(Settings.from_env(database=args.db).database)
    member = member_key({"reference": args.member}) if args.member else None
    try:
        for entry in store.audit_trail(member, args.limit):
            print(json.dumps(entry.__dict__, ensure_ascii=False))
    finally:
        store.close()
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """The plan's PA metrics for a period (JSON, or the flat CSV table)."""
    from dtr.policy_commands import all_policies
    from review.metrics import metrics, to_csv
    from service.casework import Casework
    from service.settings import Settings
    from service.store import open_store

    period = args.period
    # the catalog's current policies, as `dtr serve` would load them (nothing compiled)
    policies = all_policies(args)
    store = open_store(Settings.from_env(database=args.db).database)
    try:
        records = Casework(store).received_between(period.start.isoformat(), period.end.isoformat())
    finally:
        store.close()
    report = metrics(records, policies, period.start, period.end, period.label)
    if args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _period(text: str) -> Any:
    from review.metrics import parse_period

    try:
        return parse_period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _policy_command(name: str) -> Callable[[argparse.Namespace], int]:
    """A command of :mod:`dtr.policy_commands`, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        from dtr import policy_commands

        command: Callable[[argparse.Namespace], int] = getattr(policy_commands, name)
        return command(args)

    return run


cmd_check = _policy_command("cmd_check")
cmd_lint = _policy_command("cmd_lint")
cmd_build = _policy_command("cmd_build")
cmd_impact = _policy_command("cmd_impact")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dtr", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    policies = argparse.ArgumentParser(add_help=False)
    policies.add_argument(
        "--policies",
        metavar="DIR",
        help="a folder of policy files (env DTR_POLICIES; default: the bundled policies)",
    )

    check = commands.add_parser(
        "check", parents=[policies], help="verify policy files without building anything"
    )
    check.add_argument("policy", nargs="*", help="policy YAML files (default: all of the folder)")
    check.set_defaults(func=cmd_check)

    lint_command = commands.add_parser(
        "lint",
        parents=[policies],
        help="check each policy's data against its own words (source_text, source_quote)",
    )
    lint_command.add_argument(
        "policy", nargs="*", help="policy YAML files (default: all of the folder)"
    )
    lint_command.set_defaults(func=cmd_lint)

    build = commands.add_parser(
        "build",
        parents=[policies],
        help="verify, then regenerate the Questionnaires, coverage and decision tables",
    )
    build.add_argument("policy", nargs="*", help="policy YAML files (default: all of the folder)")
    build.add_argument("--out", help="default: questionnaires/ (DIR/questionnaires)")
    build.add_argument("--docs", help="default: docs/ (DIR/docs)")
    build.set_defaults(func=cmd_build)

    score = commands.add_parser("score", parents=[policies], help="score a QuestionnaireResponse")
    score.add_argument("response", help="QuestionnaireResponse JSON file, or - for stdin")
    score.add_argument("--as-of", type=_date, default=date.today(), help="evaluation date")
    score.add_argument("--format", choices=["json", "fhir", "html", "text"], default="json")
    score.set_defaults(func=cmd_score)

    serve = commands.add_parser(
        "serve",
        parents=[policies],
        help="run the FHIR API and portal (env: DTR_HOST, DTR_PORT, DTR_DB, DTR_POLICIES, DTR_WORKERS)",
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving (default 1; 0: one per core; env DTR_WORKERS)",
    )
    serve.set_defaults(func=cmd_serve)

    errors = commands.add_parser(
        "errors", help="list the error reports of DTR clients ($log-questionnaire-errors)"
    )
    errors.add_argument("--questionnaire", help="one Questionnaire's (url or url|version)")
    errors.add_argument("--limit", type=int, default=100, help="newest first (default 100)")
    errors.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
    errors.set_defaults(func=cmd_errors)

    audit = commands.add_parser("audit", help="who read which member's data, when")
    audit.add_argument("--member", help="one member's (a reference: Patient/123)")
    audit.add_argument("--limit", type=int, default=100, help="newest first (default 100)")
    audit.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
    audit.set_defaults(func=cmd_audit)

    report = commands.add_parser(
        "metrics", parents=[policies], help="the plan's PA metrics for a month, quarter or year"
    )
    report.add_argument(
        "--period", type=_period, required=True, help="2026-11 (month), 2026-Q4 or 2026"
    )
    report.add_argument("--format", choices=["json", "csv"], default="json")
    report.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
    report.set_defaults(func=cmd_metrics)

    impact = commands.add_parser(
        "impact",
        parents=[policies],
        help="re-score every stored request of a policy under a new version: what would change",
    )
    impact.add_argument("policy", help="the policy id (eocco329)")
    impact.add_argument(
        "--to",
        required=True,
        metavar="VERSION|PATH",
        help="a policy file, or the version of the folder's file of the policy (newer than"
        " every released version: edited, not yet built)",
    )
    impact.add_argument("--format", choices=["text", "csv", "html"], default="text")
    impact.add_argument("--out", metavar="FILE", help="write the report there (default: stdout)")
    impact.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
    impact.add_argument(
        "--batch", type=int, default=500,
        help="requests in a part: re-scored and kept together, the unit a run resumes from",
    )  # fmt: skip
    impact.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1,
        help="processes re-scoring on this machine (default: one per core; 1: this process)",
    )  # fmt: skip
    impact.set_defaults(func=cmd_impact)

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
    clients = commands.add_parser("clients", help="backend clients (SMART Backend Services)")
    client_actions = clients.add_subparsers(dest="action", required=True)
    add_client = client_actions.add_parser(
        "add", parents=[database], help="register a client with its public keys"
    )
    add_client.add_argument("id", help="the client id (the assertion's iss and sub)")
    add_client.add_argument("--name", help="who the client is (for the audit trail)")
    keys = add_client.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", metavar="FILE", help="a JWKS file of the client's public keys")
    keys.add_argument("--jwks-url", metavar="URL", help="where the client publishes its JWKS")
    add_client.add_argument(
        "--scope",
        action="append",
        help="a system/ scope it may be granted (repeat; default: a DTR client's)",
    )
    add_client.add_argument("--organization", help="the organization it acts for")
    add_client.add_argument(
        "--allow-wildcard", action="store_true",
        help="register a wildcard scope (system/*.rs, system/Questionnaire.*) all the same",
    )  # fmt: skip
    add_client.add_argument(
        "--cds-hooks", action="store_true",
        help="a CDS client (CRD): it calls /cds-services with a JWT signed by its keys",
    )  # fmt: skip
    add_client.add_argument(
        "--jku", action="append", metavar="URL",
        help="a JWKS URL its CDS JWT's jku header may name (https; repeat); none: its keys only",
    )  # fmt: skip
    add_client.add_argument(
        "--fetch-prefetch", action="store_true",
        help="let the CDS services fetch prefetch it leaves out from its EHR (fhirAuthorization)",
    )  # fmt: skip
    client_actions.add_parser("list", parents=[database], help="the registered clients")
    for action, text in (("suspend", "refuse its token requests"), ("resume", "accept them again")):
        toggle = client_actions.add_parser(action, parents=[database], help=text)
        toggle.add_argument("id")
    clients.set_defaults(func=cmd_clients)

    users = commands.add_parser("users", help="portal users")
    user_actions = users.add_subparsers(dest="action", required=True)
    add_user = user_actions.add_parser("add", parents=[database], help="add a portal user")
    add_user.add_argument("username")
    add_user.add_argument("--name", help="the person's name")
    add_user.add_argument("--role", required=True, choices=["office", "pharmacist"])
    add_user.add_argument("--organization", help="the provider organization (office users)")
    add_user.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of stdin (default: make one and print it)",
    )  # fmt: skip
    user_actions.add_parser("list", parents=[database], help="the portal users")
    for action, text in (
        ("disable", "refuse the user's sign-in and end their sessions"),
        ("enable", "allow the user to sign in again"),
    ):
        user_actions.add_parser(action, parents=[database], help=text).add_argument("username")
    reset = user_actions.add_parser(
        "reset-password", parents=[database],
        help="a new password (made and printed once, or read from stdin); ends their sessions",
    )  # fmt: skip
    reset.add_argument("username")
    reset.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of stdin (default: make one and print it)",
    )  # fmt: skip
    users.set_defaults(func=cmd_users)
    return top


def _refusals() -> tuple[type[Exception], ...]:
    """The errors that refuse a policy or a build (exit 2, the message names
    the file, the section and the field); imported only when one is raised."""
    from builder.artifacts import VersionNotBumped
    from builder.prepopulation import PrepopulationError
    from builder.questionnaire import BuildError
    from policies.loader import PolicyError
    from questionnaires.checks import QuestionnaireError

    return (PolicyError, QuestionnaireError, VersionNotBumped, BuildError, PrepopulationError)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Refused as exc:
        print(f"dtr: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not isinstance(exc, _refusals()):
            raise
        print(f"dtr: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
