"""The questions and sections the builder generates from a policy's data (its
quantity limits, authorization term and renewal cap, its documentation
requirements): their names, which a policy file may read
(``%requested_quantity``) but not define. Kept apart from the data model,
which only refuses them, and from the tree that makes them."""

from __future__ import annotations

# Questions and sections the builder generates from the policy data; a policy
# file may read them (``%requested_quantity``) but not define them.
REQUESTED_PRODUCT = "requested_product"
REQUESTED_QUANTITY = "requested_quantity"
REQUESTED_DAILY_DOSE = "requested_daily_dose"
PLANNED_MONTHS = "planned_months"
PRIOR_RENEWALS = "prior_renewals"
THERAPY_START = "therapy_start"
GENERATED_QUESTIONS = frozenset(
    {
        REQUESTED_PRODUCT,
        REQUESTED_QUANTITY,
        REQUESTED_DAILY_DOSE,
        PLANNED_MONTHS,
        PRIOR_RENEWALS,
        THERAPY_START,
    }
)
DOCUMENT_PREFIX = "document_"
TERM_SECTION = "Term"
CAP_SECTION = "Cap"
GENERATED_SECTIONS = frozenset({"QL", TERM_SECTION, CAP_SECTION})
