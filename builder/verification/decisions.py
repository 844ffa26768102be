"""Decision tables: a policy as logic a pharmacist can review, not as code.

For each policy and request type, from :meth:`builder.verification.explore.Explorer.run`:
the answer paths that lead to approval, and every other outcome grouped by
the sections it cites, with how many paths reach it and an example of the
answer that decided it. Rendered with jinja2 into ``docs/decision-tables.md``
by ``dtr build`` (and checked for drift like the other generated files).
"""

from __future__ import annotations

from typing import Any

from builder.artifacts import templates
from builder.verification.explore import explore_forms
from policies.model import Policy


def decision_context(policies: list[Policy]) -> dict[str, Any]:
    out = []
    for policy in policies:
        forms = []
        for explorer in explore_forms(policy):
            result = explorer.run()
            grouped: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
            for leaf in result.others:
                key = (leaf.outcome, tuple(leaf.sections))
                row = grouped.setdefault(
                    key,
                    {
                        "outcome": leaf.outcome,
                        "sections": list(leaf.sections),
                        "count": 0,
                        "last": leaf.path[-1] if leaf.path else None,
                    },
                )
                row["count"] += 1
            forms.append(
                {
                    "title": explorer.title,
                    "id": explorer.package.questionnaire["id"],
                    "evaluations": result.evaluations,
                    "merged": result.merged,
                    "complete": result.complete,
                    "approvals": result.approvals,
                    "others": sorted(grouped.values(), key=lambda r: (r["outcome"], r["sections"])),
                }
            )
        out.append(
            {
                "title": policy.policy.title,
                "number": policy.policy.number or policy.id,
                "version": policy.policy.version,
                "forms": forms,
            }
        )
    return {"policies": out}


def decision_tables_markdown(policies: list[Policy]) -> str:
    env = templates().overlay(trim_blocks=True, lstrip_blocks=True)
    template = env.get_template("decision-tables.md.j2")
    return template.render(decision_context(policies))
