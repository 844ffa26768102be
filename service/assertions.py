"""The store's side of CRD: each coverage assertion the CDS services made.

An assertion is kept so that its id, the ``coverage-assertion-id`` the order
carries, can be sent to ``$questionnaire-package`` as ``context`` when the EHR
launches DTR: it names the forms asserted, for the member it was made for;
and so that an order re-sent with the extension is known for one the
payer made for that client and order (``made_for``, CRD ``resp-35``).
Plain SQL over the store's connection, as ``service.accounts``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from qpackage.crd import Assertion, coverage_information
from qpackage.package import CoverageAssertion
from service.store import Store


class Assertions:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, assertion: Assertion, client_id: str) -> None:
        with self.store.database() as db:
            m = db.mark
            db.execute(
                "INSERT INTO coverage_assertions (id, made_at, client_id, member, policy,"
                " order_ref, coverage_ref, questionnaires, extension)"
                f" VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})",
                (
                    assertion.id, datetime.now(UTC).isoformat(timespec="seconds"), client_id,
                    assertion.member, assertion.policy, assertion.order, assertion.coverage,
                    json.dumps(list(assertion.questionnaires)),
                    json.dumps(coverage_information(assertion)),
                ),
            )  # fmt: skip

    def get(self, assertion_id: str) -> CoverageAssertion | None:
        """The assertion as ``$questionnaire-package`` reads a ``context``."""
        with self.store.database() as db:
            rows = db.execute(
                f"SELECT id, member, questionnaires FROM coverage_assertions WHERE id = {db.mark}",
                (assertion_id,),
            )
        if not rows:
            return None
        rid, member, questionnaires = rows[0]
        return CoverageAssertion(
            id=str(rid),
            member=str(member) if member else None,
            questionnaires=tuple(json.loads(str(questionnaires))),
        )

    def made_for(self, assertion_id: str, client_id: str, order_ref: str) -> bool:
        """Whether this service made that assertion for this CDS client's
        order: an id the order carries that another client (or no one) was
        given proves nothing about what the payer said."""
        with self.store.database() as db:
            m = db.mark
            rows = db.execute(
                "SELECT 1 FROM coverage_assertions"
                f" WHERE id = {m} AND client_id = {m} AND order_ref = {m}",
                (assertion_id, client_id, order_ref),
            )
        return bool(rows)
