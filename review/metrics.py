"""The plan's prior-authorization metrics for a period: per policy and for
all policies together, in the shape of the public-reporting list of
CMS-0057-F (42 CFR 422.122(c), 438.210(f), 440.230(e), 457.732,
45 CFR 156.223). That rule leaves drugs out; plans report drug PA the same
way. Beside it, the plan's own measures of its pends and its pharmacists'
review. Pure: records and policies in, a JSON-ready dict (or CSV) out.

The rules
---------

- **Period.** A month (``2026-11``), a quarter (``2026-Q4``) or a year
  (``2026``), read by :func:`parse_period` as the UTC instants [start, end).
  A request belongs to the period it was **received** in; its decision counts
  there even when it was made after the period ended. The figures are those
  of the store when the report is made: a request still pended then is
  counted as undecided, and may be decided by a later run.
- **Priority.** ``standard`` and ``expedited`` are reported apart (a record of
  any other priority, which the service does not make, counts as standard).
- **Decided.** A request is decided when its current outcome is approved,
  denied or investigational. The **denominator** of every share is the
  decided requests of that priority received in the period. A request whose
  outcome is pended (for information, or awaiting a pharmacist) is in no
  share: it is counted as ``undecided`` beside the shares, and in the plan's
  measures.
- **Approved**: outcome approved (by the scorer or by a pharmacist),
  including an approval for less than was requested (a quantity modified to
  the policy's limit): CMS-0057-F counts approved and denied requests and
  has no third category, and the request is authorized. **Denied**: outcome
  denied *or investigational* (an investigational use is not covered: it is
  a denial to the member).
- **Approved modified** (the plan's own): approvals for less than was
  requested (``quantity.modified``), counted apart as well, since for the
  member they are adverse determinations with appeal rights.
- **Approved after appeal** and **approved after an extended timeframe** are
  ``null``: this service records no appeals and no extensions of a review
  timeframe, so it cannot count them (a zero would claim it did).
- **Time to decision**: from ``received_at`` to ``decided_at`` of each
  decided request, in hours; average (mean) and median, standard and
  expedited apart; ``null`` with no decided request. An automatic decision
  takes no time (it is made when the request is received). The office's
  reply to a pend joins the same record (``service/replies.py``): one
  request, timed from its first receipt.
- **Pended for information**: outcome pended for anything but a
  pharmacist's review — the scorer's pend for missing answers, or a
  pharmacist's pend asking the office for something.
  **Pended for review**: awaiting a pharmacist (state ``awaiting-review``,
  or a pend whose reason is review).
- **Time in review**: from ``received_at`` to ``decided_at`` of each record a
  pharmacist acted on (state ``reviewed``, whatever the action: approve,
  deny or pend), in hours; average and median.
- **Denial reasons**: for each denied or investigational request, each
  policy section its determination cites (``sections.unmet``,
  ``sections.excluded``, ``sections.investigational``) counted once; the
  counts by section.
- **Percent** is rounded to one decimal, hours to two.
- **Policies**: every policy of the catalog, with its drugs (each requires
  PA), even without a request in the period; then any policy a record names
  that the catalog no longer has (``"current": false``).

CSV (:func:`to_csv`): one flat table, one row per scope (a policy, or
``all``) by priority by measure (and section, for denial reasons), columns
:data:`CSV_COLUMNS`; a ``null`` figure is an empty cell with a note.
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from policies.model import Policy

PRIORITIES = ("standard", "expedited")
DECIDED = ("approved", "denied", "investigational")
NO_APPEALS = "null: this service records no appeals, so it cannot count approvals after appeal"
NO_EXTENSIONS = (
    "null: this service records no extensions of a review timeframe,"
    " so it cannot count approvals after one"
)
NOTES = [
    "A request belongs to the period it was received in; figures are the store's when the"
    " report was made.",
    "Shares are of the decided requests (approved, denied or investigational) of that"
    " priority received in the period; requests still pended are counted as undecided and"
    " are in no share.",
    "Denied counts denied and investigational determinations.",
    "Approved includes approvals for less than was requested (a quantity modified to the"
    " limit); the plan's approvedModified counts them apart.",
    "approvedAfterAppeal is " + NO_APPEALS + ".",
    "approvedAfterExtendedTimeframe is " + NO_EXTENSIONS + ".",
    "Times are hours from receipt to the decision; an automatic decision takes none. A reply"
    " to a pended request is the same request, counted once and timed from its first receipt.",
    "Time in review is from receipt to the pharmacist's action, for every record a"
    " pharmacist acted on.",
]
CSV_COLUMNS = (
    "period", "policy", "policy_number", "policy_title", "drugs", "priority", "measure",
    "section", "count", "of", "value", "unit", "note",
)  # fmt: skip

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
FIRST_YEAR, LAST_YEAR = 1970, 2999


class MetricRecord(Protocol):
    """What the metrics read of a stored record (``service.store.Record``)."""

    @property
    def received_at(self) -> str: ...
    @property
    def decided_at(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def policy(self) -> str: ...
    @property
    def determination(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime
    end: datetime


def parse_period(text: str) -> Period:
    """A month ``2026-11``, a quarter ``2026-Q4`` or a year ``2026`` as
    [start, end) in UTC; anything else is a ValueError saying what is accepted."""
    text = text.strip() if isinstance(text, str) else ""
    expected = (
        f"{text!r} is not a period: give a month (2026-11), a quarter (2026-Q4)"
        f" or a year (2026), years {FIRST_YEAR} to {LAST_YEAR}"
    )
    if match := _MONTH.match(text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise ValueError(expected)
        start_month, months = month, 1
    elif match := _QUARTER.match(text):
        year, quarter = int(match[1]), int(match[2])
        start_month, months = 3 * (quarter - 1) + 1, 3
    elif match := _YEAR.match(text):
        year, start_month, months = int(match[1]), 1, 12
    else:
        raise ValueError(expected)
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(expected)
    end_index = year * 12 + (start_month - 1) + months
    start = datetime(year, start_month, 1, tzinfo=UTC)
    end = datetime(end_index // 12, end_index % 12 + 1, 1, tzinfo=UTC)
    return Period(text, start, end)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hours(record: MetricRecord) -> float | None:
    if record.decided_at is None:
        return None
    elapsed = _instant(record.decided_at) - _instant(record.received_at)
    return elapsed.total_seconds() / 3600


def _share(count: int, of: int) -> dict[str, Any]:
    return {"count": count, "of": of, "percent": round(100 * count / of, 1) if of else None}


def _times(hours: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(hours),
        "averageHours": round(statistics.fmean(hours), 2) if hours else None,
        "medianHours": round(statistics.median(hours), 2) if hours else None,
    }


def _priority(record: MetricRecord) -> str:
    return "expedited" if record.priority == "expedited" else "standard"


def _for_review(record: MetricRecord) -> bool:
    return record.state == "awaiting-review" or record.determination.get("pendReason") == "review"


def _modified(record: MetricRecord) -> bool:
    quantity = record.determination.get("quantity") or {}
    return record.outcome == "approved" and bool(quantity.get("modified"))


def _cited(record: MetricRecord) -> list[str]:
    sections = record.determination.get("sections") or {}
    out: list[str] = []
    for key in ("unmet", "excluded", "investigational"):
        for section in sections.get(key) or []:
            if section not in out:
                out.append(section)
    return out


def measures(records: Sequence[MetricRecord]) -> dict[str, Any]:
    """The measures of a set of records (one policy's, or all)."""
    out: dict[str, Any] = {"received": len(records)}
    for priority in PRIORITIES:
        mine = [r for r in records if _priority(r) == priority]
        decided = [r for r in mine if r.outcome in DECIDED]
        approved = sum(r.outcome == "approved" for r in decided)
        denied = sum(r.outcome in ("denied", "investigational") for r in decided)
        block: dict[str, Any] = {
            "received": len(mine),
            "decided": len(decided),
            "undecided": len(mine) - len(decided),
            "approved": _share(approved, len(decided)),
            "denied": _share(denied, len(decided)),
        }
        if priority == "standard":
            block["approvedAfterAppeal"] = None
            block["approvedAfterExtendedTimeframe"] = None
        times = [h for h in (_hours(r) for r in decided) if h is not None]
        block["decisionTime"] = _times(times)
        out[priority] = block
    pended = [r for r in records if r.outcome == "pended"]
    reviewed = [h for h in (_hours(r) for r in records if r.state == "reviewed") if h is not None]
    reasons: Counter[str] = Counter(
        section
        for r in records
        if r.outcome in ("denied", "investigational")
        for section in _cited(r)
    )
    out["plan"] = {
        "approvedModified": sum(_modified(r) for r in records),
        "pendedForInformation": sum(not _for_review(r) for r in pended),
        "pendedForReview": sum(_for_review(r) for r in pended),
        "reviewTime": _times(reviewed),
        "denialReasons": dict(sorted(reasons.items())),
    }
    return out


def _policy_entry(policy: Policy | None, policy_id: str) -> dict[str, Any]:
    if policy is None:
        return {"id": policy_id, "number": None, "title": None, "drugs": [], "current": False}
    return {
        "id": policy.id,
        "number": policy.policy.number,
        "title": policy.policy.title,
        "drugs": [drug.name for drug in policy.drugs],
        "current": True,
    }


def metrics(
    records: Iterable[MetricRecord],
    policies: Iterable[Policy],
    period_start: datetime,
    period_end: datetime,
    label: str | None = None,
) -> dict[str, Any]:
    """The report of the records received in [period_start, period_end)
    (others are left out), for these policies (the catalog's)."""
    in_period = [r for r in records if period_start <= _instant(r.received_at) < period_end]
    known = {p.id: p for p in sorted(policies, key=lambda p: p.id)}
    others = sorted({r.policy for r in in_period} - set(known))
    return {
        "period": {
            "label": label or f"{period_start.isoformat()}/{period_end.isoformat()}",
            "start": period_start.isoformat(),
            "end": period_end.isoformat(),
        },
        "notes": list(NOTES),
        "all": measures(in_period),
        "policies": [
            {
                "policy": _policy_entry(known.get(pid), pid),
                **measures([r for r in in_period if r.policy == pid]),
            }
            for pid in [*known, *others]
        ],
    }


def _rows(period: str, scope: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    base = {
        "period": period,
        "policy": scope["id"],
        "policy_number": scope.get("number") or "",
        "policy_title": scope.get("title") or "",
        "drugs": "; ".join(scope.get("drugs") or []),
    }
    rows: list[dict[str, Any]] = []

    def row(priority: str, measure: str, unit: str, **values: Any) -> None:
        rows.append({**base, "priority": priority, "measure": measure, "unit": unit, **values})

    row("", "received", "requests", count=entry["received"])
    for priority in PRIORITIES:
        block = entry[priority]
        for measure in ("received", "decided", "undecided"):
            row(priority, measure, "requests", count=block[measure])
        for measure in ("approved", "denied"):
            share = block[measure]
            note = "denied and investigational" if measure == "denied" else ""
            row(priority, measure, "percent", count=share["count"], of=share["of"],
                value=share["percent"], note=note)  # fmt: skip
        if priority == "standard":
            row(priority, "approved_after_appeal", "percent", note=NO_APPEALS)
            row(priority, "approved_after_extended_timeframe", "percent", note=NO_EXTENSIONS)
        times = block["decisionTime"]
        row(priority, "decision_time_average", "hours", count=times["count"],
            value=times["averageHours"])  # fmt: skip
        row(priority, "decision_time_median", "hours", count=times["count"],
            value=times["medianHours"])  # fmt: skip
    plan = entry["plan"]
    row("", "approved_modified", "requests", count=plan["approvedModified"],
        note="approved for less than requested; also counted as approved")  # fmt: skip
    row("", "pended_for_information", "requests", count=plan["pendedForInformation"])
    row("", "pended_for_review", "requests", count=plan["pendedForReview"])
    review = plan["reviewTime"]
    row("", "review_time_average", "hours", count=review["count"], value=review["averageHours"])
    row("", "review_time_median", "hours", count=review["count"], value=review["medianHours"])
    for section, count in plan["denialReasons"].items():
        row("", "denial_reason", "denials", section=section, count=count)
    return rows


def to_csv(report: dict[str, Any]) -> str:
    """The report as one flat table (see the module docstring): the ``all``
    rows first, then each policy's."""
    period = report["period"]["label"]
    rows = _rows(period, {"id": "all", "title": "All policies"}, report["all"])
    for entry in report["policies"]:
        rows += _rows(period, entry["policy"], entry)
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c, "") for c in CSV_COLUMNS})
    return out.getvalue()
