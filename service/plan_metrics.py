"""The plan's PA metrics over HTTP, for the payer's staff: a person signed
in with a payer role (the pharmacist, ``MeasureReport`` read), never a
system, whatever its token's scopes.

- ``GET /metrics?period=2026-11&format=json|csv``: the report of
  :mod:`review.metrics` for a month, a quarter (``2026-Q4``) or a year
  (``2026``); JSON by default, or the flat CSV table.
- ``GET /metrics/chart?period=…``: the same as a page — a bar chart drawn on
  the server (SVG, no script) beside a table of every figure; without a
  period, the current month (UTC).

A period that is not one of those is a 400 OperationOutcome. The figures
are the store's when the report is made (nothing is cached).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from access.identity import Identity
from review.metrics import Period, metrics, parse_period, to_csv
from scoring.outcome import InvalidInput, Issue
from service.auth import requires
from service.casework import Casework
from service.http import Service

FORMATS = ("json", "csv")
NO_STORE = {"Cache-Control": "no-store"}
# the chart: one bar per share, its length the percent
CHART_WIDTH, LABEL_WIDTH, TEXT_WIDTH, BAR_HEIGHT, BAR_GAP = 560, 150, 140, 18, 8
BARS = (
    ("standard", "approved", "Standard approved"),
    ("standard", "denied", "Standard denied"),
    ("expedited", "approved", "Expedited approved"),
    ("expedited", "denied", "Expedited denied"),
)

# the caller of each route, allowed what it does
MetricsReader = Annotated[Identity, requires("MeasureReport", "r", staff=True)]


def _period(text: str | None) -> Period:
    if text is None or not text.strip():
        raise InvalidInput(
            [Issue("required", "give the period: ?period=2026-11, 2026-Q4 or 2026", "period")],
            400,
        )
    try:
        return parse_period(text)
    except ValueError as exc:
        raise InvalidInput([Issue("invalid", str(exc), "period")], 400) from None


def _bars(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bar of a scope's chart: its label, length and text."""
    room = CHART_WIDTH - LABEL_WIDTH - TEXT_WIDTH
    bars = []
    for index, (priority, measure, label) in enumerate(BARS):
        share = entry[priority][measure]
        percent = share["percent"]
        bars.append(
            {
                "label": label,
                "kind": measure,
                "y": index * (BAR_HEIGHT + BAR_GAP),
                "width": round(room * percent / 100, 1) if percent is not None else 0,
                "text": (
                    f"{percent}% ({share['count']} of {share['of']})"
                    if percent is not None
                    else "no decided request"
                ),
            }
        )
    return bars


def router(service: Service) -> APIRouter:
    api = APIRouter()
    casework = Casework(service.store)
    templates = Environment(
        loader=PackageLoader("service", "templates"), autoescape=select_autoescape(["html", "j2"])
    )

    def report(period: Period) -> dict[str, Any]:
        records = casework.received_between(period.start.isoformat(), period.end.isoformat())
        policies = sorted(service.catalog.policies.values(), key=lambda p: p.id)
        return metrics(records, policies, period.start, period.end, period.label)

    @api.get("/metrics")
    def read_report(
        caller: MetricsReader, period: str | None = None, format: str = "json"
    ) -> Response:
        if format not in FORMATS:
            raise InvalidInput(
                [Issue("invalid", f"format must be json or csv, not {format!r}", "format")], 400
            )
        chosen = _period(period)
        body = report(chosen)
        if format == "csv":
            return Response(
                to_csv(body),
                media_type="text/csv; charset=utf-8",
                headers={
                    **NO_STORE,
                    "Content-Disposition": f'attachment; filename="pa-metrics-{chosen.label}.csv"',
                },
            )
        return JSONResponse(body, headers=NO_STORE)

    @api.get("/metrics/chart", response_class=HTMLResponse)
    def chart(caller: MetricsReader, period: str | None = None) -> Response:
        if period is None:
            period = service.now().strftime("%Y-%m")
        chosen = _period(period)
        body = report(chosen)
        scopes = [("All policies", None, body["all"])] + [
            (entry["policy"]["title"] or entry["policy"]["id"], entry["policy"], entry)
            for entry in body["policies"]
        ]
        page = templates.get_template("metrics.html.j2").render(
            report=body,
            period=chosen.label,
            user=caller,
            scopes=[
                {"title": title, "policy": policy, "entry": entry, "bars": _bars(entry)}
                for title, policy, entry in scopes
            ],
            chart={
                "width": CHART_WIDTH,
                "label_width": LABEL_WIDTH,
                "room": CHART_WIDTH - LABEL_WIDTH - TEXT_WIDTH,
                "bar_height": BAR_HEIGHT,
                "height": len(BARS) * (BAR_HEIGHT + BAR_GAP),
            },
        )
        return HTMLResponse(page, headers=NO_STORE)

    return api
