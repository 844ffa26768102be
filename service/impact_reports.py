"""The impact reports of new policy versions, for the pharmacist: pages over
what ``dtr impact`` keeps in the store (:mod:`qpackage.impact`).

- ``GET /impact``: every run the store holds — those in progress (parts
  kept of parts planned: a run stopped midway resumes when its command is
  given again) and the finished ones' reports, latest first, each with its
  policy, the versions it re-scored from and under, when it started and
  finished, which process finished it, and how many requests would be
  decided differently of how many.
- ``GET /impact/{id}``: a finished run's report (:meth:`Impact.html`, the
  command's own HTML report) under the review's navigation; its examples
  link to the pharmacist's case page, where every read is audited as any.
- ``GET /impact/{id}.csv``: its CSV, each request's row as ``dtr impact
  --format csv`` wrote it.

The page reads; it starts nothing. A run re-scores every stored request of a
policy in worker processes and may take minutes: it belongs to the command,
which resumes after a kill and shares a run between machines on PostgreSQL.
With no run kept, the page says how to make one.

The pages are the pharmacist's, as the review's are (:func:`service.pharmacist.reviewer`):
a browser not signed in is sent to sign in; a system's token or a person of
another role is refused (403); an unknown report is a 404 OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from access.identity import Identity
from qpackage.impact import Impact, csv_header, report_path
from service.auth import Caller
from service.http import Service, not_found
from service.pharmacist import reviewer
from service.store import ImpactRun

NO_STORE = {"Cache-Control": "no-store"}


def router(service: Service) -> APIRouter:
    api = APIRouter()
    # the service's pages, and the command's own HTML report they extend
    templates = Environment(
        loader=ChoiceLoader(
            [PackageLoader("service", "templates"), PackageLoader("qpackage", "templates")]
        ),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def page(name: str, caller: Identity, **values: Any) -> HTMLResponse:
        html = templates.get_template(name).render(user=caller, csrf=caller.csrf, **values)
        return HTMLResponse(html, headers=NO_STORE)

    def kept(report_id: str) -> tuple[ImpactRun, dict[str, Any]]:
        found = service.store.impact_report(report_id)
        if found is None:
            raise not_found("impact report", report_id)
        return found

    @api.get("/impact", response_class=HTMLResponse)
    def runs_page(request: Request, identity: Caller) -> Response:
        caller = reviewer(request, identity)
        if isinstance(caller, Response):
            return caller
        runs = service.store.impact_runs()
        return page("impact_runs.html.j2", caller, runs=runs, report_path=report_path)

    # before the report's own route, which would take "{id}.csv" as an id
    @api.get("/impact/{report_id}.csv")
    def report_csv(report_id: str, request: Request, identity: Caller) -> Response:
        caller = reviewer(request, identity)
        if isinstance(caller, Response):
            return caller
        run, _ = kept(report_id)

        def lines() -> Iterator[str]:
            yield csv_header()
            yield from service.store.impact_rows(run.id)

        name = f"impact-{run.policy}-{run.new_version}-{run.id[:8]}.csv"
        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    @api.get("/impact/{report_id}", response_class=HTMLResponse)
    def report_page(report_id: str, request: Request, identity: Caller) -> Response:
        caller = reviewer(request, identity)
        if isinstance(caller, Response):
            return caller
        run, report = kept(report_id)
        impact = Impact.from_json(report)
        return page(
            "impact_report.html.j2",
            caller,
            run=run,
            csv=f"{report_path(run.id)}.csv",
            **impact.context(),
        )

    return api
