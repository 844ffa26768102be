"""Approvals still running when the same member asks again under the same policy.

A request that arrives while this plan's approval of the same policy for the
same member still runs is either an early renewal (a renewal form sent before
the approval ends) or a duplicate (another initial request). Neither changes
the determination — the policy decides the request on its answers — but the
office should see it before it waits on a decision it already has, and the
pharmacist before deciding a second authorization on top of the first.

Pure: over the stored approvals' authorization periods (start and end, both
days included, as :class:`scoring.determination.Authorization` writes them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from policies.model import RequestKind

Overlap = Literal["early-renewal", "duplicate"]


@dataclass(frozen=True)
class RunningApproval:
    """An approval running on the day a request was received."""

    record_id: str
    questionnaire: str
    start: date
    end: date
    overlap: Overlap

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "questionnaire": self.questionnaire,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "overlap": self.overlap,
        }

    def sentence(self) -> str:
        """The overlap in the words the office and the pharmacist read."""
        runs = (
            f"This member already holds an approval under this policy, from"
            f" {self.start:%d %B %Y} to {self.end:%d %B %Y}."
        )
        if self.overlap == "early-renewal":
            return runs + " This renewal was sent while it still runs (an early renewal)."
        return runs + " This request may duplicate it."


def running_approvals(
    approvals: Iterable[tuple[str, str, dict[str, Any]]],
    received: date,
    kind: RequestKind,
    this: str,
) -> list[RunningApproval]:
    """Of a member's approvals under one policy — (record id, questionnaire,
    determination JSON) — those whose authorization covers ``received``, the
    day the request ``this`` arrived (never itself), earliest end first. An
    approval without an authorization period (none stored) runs no term and is
    left out."""
    running = []
    for record_id, questionnaire, determination in approvals:
        term = determination.get("authorization") if record_id != this else None
        if not isinstance(term, dict):
            continue
        start, end = date.fromisoformat(term["start"]), date.fromisoformat(term["end"])
        if start <= received <= end:
            overlap: Overlap = "early-renewal" if kind == "renewal" else "duplicate"
            running.append(RunningApproval(record_id, questionnaire, start, end, overlap))
    return sorted(running, key=lambda r: (r.end, r.record_id))
