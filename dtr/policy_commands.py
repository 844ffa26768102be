"""The ``dtr`` commands that read policy files: ``check``, ``lint``,
``build`` and ``impact``.

Kept apart from :mod:`dtr.cli`, which imports this module only when one of
them runs: the verifier, the builder and the CQL tools are most of what the
project imports, and ``dtr score`` (one response, against forms already
built) needs none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

from builder import prepopulation
from builder.artifacts import archived, coverage_markdown, generate, write
from builder.prepopulation import Compiled
from builder.verification.decisions import decision_tables_markdown
from builder.verification.examples import example_problems
from builder.verification.routing import exploration_warnings
from builder.verification.verify import verify_policy
from dtr.folders import DOCS, QUESTIONNAIRES, Refused, folder_of
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


def all_policies(args: argparse.Namespace) -> list[Policy]:
    """The folder's policies, or the bundled ones."""
    folder = folder_of(args)
    return load_folder(folder) if folder else bundled_policies()


def _selected(args: argparse.Namespace) -> tuple[list[Policy], list[Policy]]:
    """(the policies named on the command line, or all; all of the folder with
    those replacing their namesakes) — so building one file keeps the others'
    rows in the coverage and decision tables."""
    named = [load_policy(p) for p in getattr(args, "policy", [])]
    if not named:
        everything = all_policies(args)
        return everything, everything
    replaced = {p.id: p for p in named}
    others = [p for p in all_policies(args) if p.id not in replaced]
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


def verified_folder(args: argparse.Namespace, folder: Path) -> None:
    """A payer's own folder, verified as ``dtr check`` verifies it (its
    policies and worked examples); refused on any problem."""
    _verified(load_folder(folder), _sources(args))


def _sources(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for path in getattr(args, "policy", []):
        out[load_policy(path).id] = str(path)
    folder = folder_of(args)
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

    folder = folder_of(args) or Path(str(resources.files("policies")))
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
    folder = folder_of(args)
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
    folder = folder_of(args)
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
    import socket
    from contextlib import nullcontext

    from dtr.impact_workers import Setup, Workers
    from qpackage.impact import Impact, Stored, csv_header, report_path
    from service.migrations import LATEST
    from service.settings import Settings
    from service.store import open_store

    folder = folder_of(args)
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
        # a run is this policy re-scored under this content: one stopped
        # midway (killed, interrupted) takes up the parts not yet kept, and
        # processes on other machines given the same command share it
        run = hashlib.sha256(f"{args.policy}\n{new.model_dump_json()}".encode()).hexdigest()
        parts = store.impact_plan(run, args.policy, args.batch, new.policy.version)
        done_before = store.impact_state(run)[0]
        if done_before:
            print(f"dtr: resuming: {done_before} of {parts} parts already kept", file=sys.stderr)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        setup = Setup(archive, args.policy, new)
        started, mine = time.perf_counter(), 0
        progress = sys.stderr.isatty()
        with Workers(setup, args.workers) as workers:
            while True:
                with store.impact_claim(run, worker) as part:
                    if part is not None:
                        records = [
                            Stored(
                                id=r.id,
                                reference=r.reference,
                                questionnaire=r.questionnaire,
                                response=r.response,
                                decided=r.recommendation or r.determination,
                                evaluated_at=r.evaluated_at,
                            )
                            for r in store.impact_records(args.policy, part)
                        ]
                        report, lines = workers.rescore(records)
                        part.keep(report.to_json(), lines)
                        mine += len(records)
                if part is None:
                    done, planned = store.impact_state(run)
                    # every part kept, or the run already finished and dropped
                    # by the process that kept the last one
                    if done == planned:
                        break
                    time.sleep(0.5)  # parts held by other processes: one may give its back
                if progress:
                    done, _ = store.impact_state(run)
                    _progress(mine, done, parts, args.batch, time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        if progress:
            print(file=sys.stderr)
        if not store.impact_finisher(run, worker):
            print(
                f"dtr: re-scored {mine} requests of {args.policy} in {elapsed:.1f} s; the run"
                " is done and its report written by the process that finished it",
                file=sys.stderr,
            )
            return 0
        impact = Impact(args.policy, new_version=new.policy.version)
        for kept in store.impact_reports(run):
            impact.merge(Impact.from_json(kept))
        target = Path(args.out) if args.out else None
        part_file = target.with_name(target.name + ".part") if target else None
        with (
            part_file.open("w", encoding="utf-8", newline="")
            if part_file
            else nullcontext(sys.stdout) as out
        ):
            if args.format == "csv":
                out.write(csv_header())
                for line in store.impact_rows(run):
                    out.write(line)
            else:
                out.write(impact.html() if args.format == "html" else impact.text())
        if target and part_file:
            part_file.replace(target)
        # kept for the pharmacist's page; the run's progress dropped
        report_id = store.impact_finish(run, impact.to_json())
    finally:
        store.close()
    rate = mine / elapsed if elapsed else 0.0
    print(
        f"dtr: re-scored {mine} requests of {args.policy} in {elapsed:.1f} s"
        f" ({rate:.0f}/s, {args.workers} worker{'s' * (args.workers != 1)});"
        f" {impact.changed} of {impact.total} would be decided differently;"
        f" the report is kept for the pharmacist's page at {report_path(report_id)}",
        file=sys.stderr,
    )
    return 0


def _progress(mine: int, done: int, parts: int, size: int, elapsed: float) -> None:
    """How far a run is: ``mine`` requests re-scored by this process in
    ``elapsed`` seconds, ``done`` of ``parts`` parts of at most ``size``
    requests kept in all (by every process sharing the run)."""
    rate = mine / elapsed if elapsed else 0.0
    left = (parts - done) * size / rate if rate else 0.0
    print(
        f"\rdtr: {done}/{parts} parts re-scored, {rate:.0f} requests/s here,"
        f" about {left:.0f} s left",
        end="",
        file=sys.stderr,
        flush=True,
    )
