"""FHIRPath text as the policy semantics write it: terms joined so that no
chain outgrows the evaluator's stack. Here, below both the tree that writes
definitions and the engine that compiles them."""

from __future__ import annotations

# fhirpathpy evaluates `a and b and c …` by recursion, one level per term: a
# chain of a few hundred terms exhausts Python's stack. Longer chains are
# written as a balanced tree of parenthesised halves (depth log2 of the terms).
CHAIN = 8


def join_terms(terms: list[str], operator: str) -> str:
    """``terms`` joined by ``and``/``or``, nested so that no chain is long."""
    if len(terms) <= CHAIN:
        return f" {operator} ".join(terms)
    middle = len(terms) // 2
    left = join_terms(terms[:middle], operator)
    right = join_terms(terms[middle:], operator)
    return f"({left}) {operator} ({right})"
