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
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import prepopulation
from builder.artifacts import VersionNotBumped, archived, coverage_markdown, generate, write
from builder.prepopulation import Compiled, PrepopulationError
from builder.questionnaire import BuildError
from builder.verification.decisions import decision_tables_markdown
from builder.verification.examples import example_problems
from builder.verification.routing import exploration_warnings
from builder.verification.verify import verify_policy
from policies.examples import examples_file
from policies.lint import Report as LintReport
from policies.lint import lint
from policies.loader import (
    PolicyError,
    bundled_policies,
    bundled_policy_files,
    load_examples,
    load_folder,
    load_policy,
    older_versions,
    policy_files,
    stray_examples,
)
from policies.model import Policy
from policies.names import questionnaire_version
from questionnaires.checks import QuestionnaireError

if TYPE_CHECKING:  # the service is imported by the commands that need it, when they run
    from service.accounts import Accounts
    from service.settings import Settings
    from service.store import Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUESTIONNAIRES = PROJECT_ROOT / "questionnaires"
DOCS = PROJECT_ROOT / "docs"


def _folder(args: argparse.Namespace) -> Path | None:
    folder = args.policies or os.environ.get("DTR_POLICIES") or None
    return Path(folder) if folder else None


def _all_policies(args: argparse.Namespace) -> list[Policy]:
    folder = _folder(args)
    return load_folder(folder) if folder else bundled_policies()


def _selected(args: argparse.Namespace) -> tuple[list[Policy], list[Policy]]:
    """(the policies named on the command line, or all; all of the folder with
    those replacing their namesakes) — so building one file keeps the others'
    rows in the coverage and decision tables."""
    named = [load_policy(p) for p in getattr(args, "policy", [])]
    if not named:
        everything = _all_policies(args)
        return everything, everything
    replaced = {p.id: p for p in named}
    others = [p for p in _all_policies(args) if p.id not in replaced]
    return named, sorted([*others, *named], key=lambda p: p.id)


def _verified(policies: list[Policy], sources: dict[str, str]) -> dict[str, str]:
    """Every policy verified and its worked examples run (refused on any
    problem); what each policy's examples cover, by policy id."""
    problems = [
        problem
        for policy in policies
        for problem in verify_policy(policy, sources.get(policy.id, policy.id))
    ]
    if problems:
        raise PolicyError("policy check", problems)
    covered = {}
    for policy in policies:
        found = _examples_checked(policy, sources.get(policy.id))
        problems += found[0]
        covered[policy.id] = found[1]
    if problems:
        raise PolicyError("policy check", problems)
    return covered


def _examples_checked(policy: Policy, source: str | None) -> tuple[list[str], str]:
    """The problems of a policy's worked examples (beside its file): each
    checked against the forms, then run; with what they cover."""
    found = load_examples(source) if source else None
    if found is None:
        beside = examples_file(Path(source)).name if source else "<policy file>.examples.yaml"
        return [], f"no worked examples ({beside} beside the policy runs them)"
    path, examples = found
    problems = example_problems(policy, examples, str(path))
    if problems:
        return problems, ""
    # imported here: only a policy with examples needs the scorer
    from qpackage.examples import run_examples

    report = run_examples(policy, examples, str(path))
    return [*report.problems, *report.coverage_problems(str(path))], report.summary()


def _sources(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for path in getattr(args, "policy", []):
        out[load_policy(path).id] = str(path)
    folder = _folder(args)
    files = policy_files(folder) if folder else bundled_policy_files()
    stray = stray_examples(folder or Path(str(resources.files("policies"))))
    if stray:
        raise PolicyError("policy check", stray)
    for path in files:
        out.setdefault(load_policy(path).id, str(path))
    return out


def cmd_check(args: argparse.Namespace) -> int:
    policies, everything = _selected(args)
    started = time.perf_counter()
    sources = _sources(args)
    covered = _verified(policies, sources)
    for policy in policies:
        # what a bound of the exploration left unseen: a warning, not a pass
        warnings = exploration_warnings(policy, sources.get(policy.id, policy.id))
        several = "s" * (len(warnings) != 1)
        status = f"verified where explored ({len(warnings)} warning{several})"
        print(f"{policy.id} {policy.policy.version}: {status if warnings else 'verified'}")
        print(f"  {covered[policy.id]}")
        # what dtr lint would say, counted: the acknowledgements are the
        # policy's words the data chose not to quote, each with its reason.
        # A source text that cannot be read is dtr lint's to refuse, not the
        # check's: the policy still decides as verified.
        try:
            counts = _lint_counts(_linted(policy, Path(sources[policy.id])))
        except PolicyError as exc:
            counts = f"not run: {'; '.join(exc.problems)}"
        print(f"  lint: {counts} (dtr lint)")
        for warning in warnings:
            print(f"  warning: {warning}")
    if not _payers_checked(args, policies, everything):
        return 2
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


def _linted(policy: Policy, policy_file: Path) -> LintReport:
    """A policy's lint report against the source text it names (none named:
    every criterion's quote is a finding)."""
    text, name = "", str(policy_file)
    if policy.source_text is not None:
        path = policy_file.parent / policy.source_text.file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(
                str(policy_file), [f"source_text.file: {path} cannot be read ({exc.strerror})"]
            ) from None
        name = str(path)
    return lint(policy, text, name)


def _lint_counts(report: LintReport) -> str:
    findings = len(report.findings)
    return (
        f"{report.quotes} quote{'s' * (report.quotes != 1)}, {len(report.acknowledged)}"
        f" acknowledged, {findings} finding{'s' * (findings != 1)}"
    )


def cmd_lint(args: argparse.Namespace) -> int:
    """Each policy's data against its own words (``source_text``): the
    findings, then what was quoted and acknowledged; 1 on any finding."""
    policies, _everything = _selected(args)
    sources = _sources(args)
    findings = acknowledged = 0
    for policy in policies:
        policy_file = Path(sources[policy.id])
        report = _linted(policy, policy_file)
        for finding in report.findings:
            print(f"{policy_file}: {finding}")
        print(f"{policy.id}: {_lint_counts(report)}")
        for quote, reason in report.acknowledged:
            print(f"  acknowledged {quote!r}: {reason}")
        findings += len(report.findings)
        acknowledged += len(report.acknowledged)
    print(f"{findings} finding{'s' * (findings != 1)}, {acknowledged} acknowledged")
    return 1 if findings else 0


def _payers_checked(
    args: argparse.Namespace, policies: list[Policy], everything: list[Policy]
) -> bool:
    """The payer files beside the policies fit their model, and the sections
    they let a pharmacist approve are criteria of the folder's policies; a
    payer without one is named (its decisions are automatic, its notices
    carry no appeal rights)."""
    from policies.model import REQUEST_KINDS, walk
    from review.config import PayerConfigError, approval_problems, load_payers

    folder = _folder(args) or Path(str(resources.files("policies")))
    try:
        payers = load_payers(folder / "payers")
    except PayerConfigError as exc:
        print(f"dtr: {exc}", file=sys.stderr)
        return False
    for identifier, payer in sorted(payers.items()):
        criteria = {
            p.id: {c.id for kind in REQUEST_KINDS for c in walk(p.request(kind).criteria)}
            for p in everything
            if p.policy.payer.identifier == identifier
        }
        problems = approval_problems(payer, criteria)
        if problems:
            print(f"dtr: {PayerConfigError(str(folder / 'payers' / f'{identifier}.yaml'), problems)}",
                  file=sys.stderr)  # fmt: skip
            return False
    for identifier in sorted({p.policy.payer.identifier for p in policies}):
        if identifier in payers:
            print(
                f"payer {identifier}: configured (review of {', '.join(payers[identifier].review.outcomes) or 'nothing'})"
            )
        else:
            print(f"payer {identifier}: no configuration in {folder / 'payers'}: decisions are"
                  " automatic and notices carry no appeal rights")  # fmt: skip
    return True


def cmd_build(args: argparse.Namespace) -> int:
    policies, everything = _selected(args)
    sources = _sources(args)
    _verified(policies, sources)
    for policy in policies:
        for warning in exploration_warnings(policy, sources.get(policy.id, policy.id)):
            print(f"warning: {warning}")
    folder = _folder(args)
    out = Path(args.out) if args.out else (folder / "questionnaires" if folder else QUESTIONNAIRES)
    docs = Path(args.docs) if args.docs else (folder / "docs" if folder else DOCS)
    out.mkdir(parents=True, exist_ok=True)
    compiled, translated = _prepopulation(policies, [out, QUESTIONNAIRES])
    # the archive's older policy versions are rebuilt by today's builder when
    # the service starts (their records still open and re-score): their CQL
    # is translated for today's revision too
    translated += _prepopulation(
        older_versions(archived(out), everything)[0], [out, QUESTIONNAIRES]
    )[1]
    written = [*translated, *write(out, generate(policies, compiled), policies)]
    docs.mkdir(parents=True, exist_ok=True)
    coverage = docs / "coverage.md"
    coverage.write_text(coverage_markdown(everything), encoding="utf-8")
    tables = docs / "decision-tables.md"
    tables.write_text(decision_tables_markdown(everything), encoding="utf-8")
    for path in [*written, coverage, tables]:
        print(f"wrote {path}")
    return 0


def _prepopulation(
    policies: list[Policy], folders: list[Path]
) -> tuple[dict[str, Compiled], list[Path]]:
    """Each policy's prepopulation Library, translated to ELM only when its
    CQL changed (the translation is kept in the first folder); the files
    written."""
    compiled: dict[str, Compiled] = {}
    written: list[Path] = []
    out = folders[0]
    for policy in policies:
        if not prepopulation.sources(policy):
            continue
        version = questionnaire_version(policy)
        found = prepopulation.load(policy, version, folders)
        if found is None:
            print(f"translating the prepopulation CQL of {policy.id} {version}", flush=True)
            found = prepopulation.compile_policy(policy, version)
        if prepopulation.load(policy, version, [out]) is None:
            written.append(prepopulation.save(out, policy, found))
        cql = prepopulation.cql_file(out, found)
        if not cql.exists() or cql.read_text(encoding="utf-8") != found.cql:
            cql.write_text(found.cql, encoding="utf-8")
            written.append(cql)
        compiled[policy.id] = found
    return compiled, written


def cmd_score(args: argparse.Namespace) -> int:
    # imported here: `dtr build` must work even while a policy change leaves
    # the scoring package unable to compile
    from qpackage.catalog import Catalog, score_json
    from review.notice import render_notice
    from scoring import InvalidInput
    from scoring.fhir_outputs import claim_response
    from scoring.response import parse_json

    try:
        body = Path(args.response).read_bytes() if args.response != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        print(f"dtr: cannot read {args.response}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        folder = _folder(args)
        resource = parse_json(body)
        # one response: only its policy, each definition compiled only if evaluated
        determination = score_json(Catalog.for_response(resource, folder), resource, args.as_of)
    except InvalidInput as exc:
        print(json.dumps(exc.outcome(), indent=2))
        return 1
    # which version decided it, on stderr so the output stays the format asked for
    print(f"dtr: decided under {determination.questionnaire}", file=sys.stderr)
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
        print(json.dumps(claim_response(determination), indent=2))
    else:
        print(render_notice(determination, args.format), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from service import server
    from service.app import create_app
    from service.settings import Settings

    folder = _folder(args)
    if folder:
        # a payer's own folder is served only once its policies verify (the
        # bundled ones are verified when they are built)
        _verified(load_folder(folder), _sources(args))
    settings = Settings.from_env(
        host=args.host, port=args.port, database=args.db, policies=str(folder) if folder else None
    )
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
    from review.metrics import metrics, to_csv
    from service.casework import Casework
    from service.settings import Settings
    from service.store import open_store

    period = args.period
    # the catalog's current policies, as `dtr serve` would load them (nothing compiled)
    policies = _all_policies(args)
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


class Refused(Exception):
    """Input a command refuses as it is (exit 2), its message for the user."""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def _proposed(args: argparse.Namespace, archive: Path) -> tuple[Policy, str]:
    """The new version ``--to`` names, and the file it was read from: a
    policy file given by path, or the version of the folder's own file of
    the policy when it is newer than every version released (edited and
    bumped, not yet built by ``dtr build``, which releases it)."""
    to = args.to
    released = sorted(
        (p.name.removeprefix(f"policy-{args.policy}-").removesuffix(".yaml")
         for p in archive.glob(f"policy-{args.policy}-*.yaml")),
        key=_version_key,
    )  # fmt: skip
    if to.endswith((".yaml", ".yml")) or os.sep in to or Path(to).is_file():
        path = Path(to)
        if not path.is_file():
            raise Refused(f"{to}: no such policy file")
        policy = load_policy(path)
        if policy.id != args.policy:
            raise Refused(f"{to}: policy.id is {policy.id}, not {args.policy}")
        return policy, str(path)
    folder = _folder(args)
    files = policy_files(folder) if folder else bundled_policy_files()
    found = {(p := load_policy(path)).id: (p, path) for path in files}
    if args.policy not in found:
        raise Refused(f"{args.policy}: no policy file of it in the folder (only archived versions)")
    policy, path = found[args.policy]
    version = policy.policy.version
    if to != version:
        raise Refused(
            f"{args.policy} has no version {to}: its file {path} is version {version}"
            f" (released: {', '.join(released) or 'none'})"
        )
    if released and (version in released or _version_key(version) < _version_key(released[-1])):
        raise Refused(
            f"{args.policy} {version} is not newer than the versions released"
            f" ({', '.join(released)}): bump policy.version in its file, or give a policy file"
            " by path"
        )
    return policy, str(path)


def cmd_impact(args: argparse.Namespace) -> int:
    """Every stored request of a policy re-scored under a new version; what
    would change. Bad input (an unknown policy or version, a version that
    does not verify, an empty archive) exits 2 with nothing written."""
    import hashlib
    from contextlib import nullcontext

    from qpackage.catalog import Catalog
    from qpackage.impact import Impact, Stored, csv_header, csv_line, proposed_forms, rescore
    from service.migrations import LATEST
    from service.settings import Settings
    from service.store import open_store

    folder = _folder(args)
    policies = load_folder(folder) if folder else bundled_policies()
    archive = archived(folder / "questionnaires") if folder else archived(QUESTIONNAIRES)
    known = sorted(
        {p.id for p in policies}
        | {load_policy(p).id for p in archive.glob("policy-*.yaml")}
    )  # fmt: skip
    if args.policy not in known:
        raise Refused(f"no policy {args.policy} (known: {', '.join(known)})")
    new, source = _proposed(args, archive)
    # the verification `dtr check` runs: the policy, then its worked examples
    _verified([new], {new.id: source})
    database = Settings.from_env(database=args.db).database
    postgres = database.startswith(("postgresql://", "postgres://"))
    if not postgres and not Path(database.removeprefix("sqlite:///")).is_file():
        raise Refused(f"no store at {database}")
    # opening the store migrates a store of an older schema, as every command does
    store = open_store(database)
    try:
        found = store.migrated[0]
        if found > LATEST:
            raise Refused(
                f"the store {database} has schema version {found}, newer than this release"
                f" knows ({LATEST}): use the release that wrote it"
            )
        total = store.count(args.policy)
        if not total:
            raise Refused(f"no stored request of {args.policy} in {database}: nothing to re-score")
        old = Catalog([], archive, eager=False, only=args.policy)
        forms = proposed_forms(new)
        # a run is this policy re-scored under this content: one stopped
        # midway (killed, interrupted) resumes where its last batch was kept
        run = hashlib.sha256(f"{args.policy}\n{new.model_dump_json()}".encode()).hexdigest()
        kept = store.impact_progress(run)
        after, impact = "", Impact(args.policy, new_version=new.policy.version)
        if kept is not None:
            after, impact = kept[0], Impact.from_json(kept[1])
            print(f"dtr: resuming after {impact.total} of {total} requests", file=sys.stderr)
        started, resumed_at = time.perf_counter(), impact.total
        progress = sys.stderr.isatty()
        for batch in store.records_of(args.policy, args.batch, after):
            lines = []
            for record in batch:
                stored = Stored(
                    id=record.id,
                    reference=record.reference,
                    questionnaire=record.questionnaire,
                    response=record.response,
                    decided=record.recommendation or record.determination,
                    evaluated_at=record.evaluated_at,
                )
                change = rescore(old, forms, stored)
                impact.add(change)
                lines.append((record.id, csv_line(change)))
            store.impact_checkpoint(run, args.policy, batch[-1].id, impact.to_json(), lines)
            if progress:
                _progress(
                    impact.total - resumed_at, impact.total, total, time.perf_counter() - started
                )
        elapsed = time.perf_counter() - started
        if progress:
            print(file=sys.stderr)
        target = Path(args.out) if args.out else None
        part = target.with_name(target.name + ".part") if target else None
        with (
            part.open("w", encoding="utf-8", newline="") if part else nullcontext(sys.stdout) as out
        ):
            if args.format == "csv":
                out.write(csv_header())
                for line in store.impact_rows(run):
                    out.write(line)
            else:
                out.write(impact.html() if args.format == "html" else impact.text())
        if target and part:
            part.replace(target)
        store.impact_finish(run)
    finally:
        store.close()
    done = impact.total - resumed_at
    rate = done / elapsed if elapsed else 0.0
    print(
        f"dtr: re-scored {done} requests of {args.policy} in {elapsed:.1f} s"
        f" ({rate:.0f}/s); {impact.changed} of {impact.total} would be decided differently",
        file=sys.stderr,
    )
    return 0


def _progress(done: int, reached: int, total: int, elapsed: float) -> None:
    """How far a run is: ``done`` re-scored by this process in ``elapsed``
    seconds, ``reached`` of ``total`` in all."""
    rate = done / elapsed if elapsed else 0.0
    left = (total - reached) / rate if rate else 0.0
    print(
        f"\rdtr: {reached}/{total} re-scored, {rate:.0f}/s, about {left:.0f} s left",
        end="",
        file=sys.stderr,
        flush=True,
    )


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
        help="run the FHIR API and portal (env: DTR_HOST, DTR_PORT, DTR_DB, DTR_POLICIES)",
    )
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--db", help="SQLite file or postgresql:// URL (default var/dtr.sqlite3)")
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
        "--batch", type=int, default=500, help="records read from the store at a time"
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (
        PolicyError,
        QuestionnaireError,
        VersionNotBumped,
        BuildError,
        PrepopulationError,
        Refused,
    ) as exc:
        print(f"dtr: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
