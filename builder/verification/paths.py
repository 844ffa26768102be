"""A form's approval paths: the ways through its criteria an approval can take.

One notion, shared by the two checks that need it: the worked examples'
coverage (:mod:`qpackage.examples`: every path has an approved example) and
the build's exploration of each form (:mod:`builder.verification.routing`:
every path reaches approved on its own in some state a provider can fill).

A form's paths are the alternatives of its any-ofs (``any_of``, or the
children of a ``logic: any`` criterion), the criteria asked only on some
answers (``enable_when``), the branches with a length of their own, and for
a ``combine: or`` criterion its two ways: by its own condition, or by its
criteria.
"""

from __future__ import annotations

from collections.abc import Mapping

from policies.model import AnyOf, Criterion, Node, Policy, RequestKind, walk

OWN = "by its own condition"
CHILDREN = "by its criteria"


def approval_paths(policy: Policy, kind: RequestKind, tree: list[Node]) -> list[str]:
    """The sections an approval of a form (its request ``tree``) may go
    through, in policy order."""
    criteria = list(walk(tree))
    paths = alternatives(tree)
    paths += [
        c.id for c in criteria if (c.enable_when or c.enable_when_expression) and c.id not in paths
    ]
    decided = {c.id for c in criteria}
    branches = [b.section for b in policy.authorization.term(kind).branches]
    paths += [b for b in branches if b in decided and b not in paths]
    for criterion in criteria:
        if criterion.combine == "or" and criterion.children:
            paths += [f"{criterion.id} {OWN}", f"{criterion.id} {CHILDREN}"]
    return paths


def taken_paths(
    policy: Policy, kind: RequestKind, tree: list[Node], statuses: Mapping[str, str]
) -> set[str]:
    """The paths of :func:`approval_paths` an approval with these criterion
    ``statuses`` went through: a section met; a ``combine: or`` criterion met
    by its criteria when they are all met (or by the one of them met, for
    ``logic: any``), else by its own condition."""
    taken = {p for p in approval_paths(policy, kind, tree) if statuses.get(p) == "met"}
    for criterion in walk(tree):
        if criterion.combine != "or" or not criterion.children:
            continue
        if statuses.get(criterion.id) != "met":
            continue
        children = [statuses.get(c.id) for c in members(criterion.children)]
        applying = [s for s in children if s != "not-applicable"]
        if criterion.logic == "any":
            by_children = "met" in applying
        else:
            by_children = bool(applying) and all(s == "met" for s in applying)
        taken.add(f"{criterion.id} {CHILDREN if by_children else OWN}")
    return taken


def members(nodes: list[Node]) -> list[Criterion]:
    """The criteria directly in a list of nodes (an any-of's members too)."""
    return [m for n in nodes for m in (n.any_of if isinstance(n, AnyOf) else [n])]


def alternatives(nodes: list[Node]) -> list[str]:
    """The criteria of which one suffices, anywhere in a tree: the members of
    an any-of and the children of a criterion decided by ``logic: any``."""
    out: list[str] = []

    def visit(items: list[Node], any_of: bool) -> None:
        for node in items:
            if isinstance(node, AnyOf):
                visit(list(node.any_of), True)
            else:
                if any_of:
                    out.append(node.id)
                visit(node.children, node.logic == "any")

    visit(nodes, False)
    return out


def alternative_groups(nodes: list[Node]) -> list[list[str]]:
    """The alternatives of :func:`alternatives` by group: the criteria of one
    any-of, or the children of one ``logic: any`` criterion (an any-of among
    them joining its members to that group), in policy order."""
    groups: list[list[str]] = []

    def visit(items: list[Node], group: list[str] | None) -> None:
        for node in items:
            if isinstance(node, AnyOf):
                inner = group if group is not None else []
                if group is None:
                    groups.append(inner)
                visit(list(node.any_of), inner)
            else:
                if group is not None:
                    group.append(node.id)
                if node.logic == "any" and node.children:
                    children: list[str] = []
                    groups.append(children)
                    visit(node.children, children)
                else:
                    visit(node.children, None)

    visit(nodes, None)
    return [g for g in groups if g]
