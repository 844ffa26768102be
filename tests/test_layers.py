"""The import graph of every first-party package has no cycle.

The layers contract in ``pyproject.toml`` (run by ``lint-imports``) orders
the top-level packages, but it does not see a cycle between two modules of
one package, nor one between two sub-packages of the same parent. This
builds the graph with grimp, the library import-linter itself uses, and
asks it for each import whether the imported module leads back to the
importer; and, for each pair of sibling packages, whether each reaches the
other. Imports inside functions and under ``TYPE_CHECKING`` count: grimp
reads them all, so a cycle cannot hide there.
"""

from __future__ import annotations

import itertools
import tomllib

import grimp
import pytest

from tests.support.paths import ROOT

PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]["root_packages"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def module_cycles(graph: grimp.ImportGraph) -> dict[frozenset[str], tuple[str, ...]]:
    """Each cycle through a direct import, keyed by the modules on it, as the
    shortest chain back to the importer."""
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.setdefault(frozenset(back), (importer, *back))
    return cycles


def sibling_packages(graph: grimp.ImportGraph) -> list[list[str]]:
    """The children of each package that are packages themselves, and the
    top-level packages, as groups of siblings."""
    groups = [list(PACKAGES)]
    for module in sorted(graph.modules):
        children = sorted(c for c in graph.find_children(module) if graph.find_children(c))
        if len(children) > 1:
            groups.append(children)
    return groups


def test_no_module_imports_itself_back(graph: grimp.ImportGraph) -> None:
    cycles = [" -> ".join(chain) for chain in module_cycles(graph).values()]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def package_cycles(graph: grimp.ImportGraph) -> list[str]:
    """Each pair of sibling packages of which each imports the other, with
    a chain each way."""
    both_ways = []
    for group in sibling_packages(graph):
        for one, other in itertools.combinations(group, 2):
            there = graph.find_shortest_chain(importer=one, imported=other, as_packages=True)
            back = graph.find_shortest_chain(importer=other, imported=one, as_packages=True)
            if there is not None and back is not None:
                both_ways.append(f"{one} <-> {other}: {' -> '.join(there)}; {' -> '.join(back)}")
    return both_ways


def test_no_two_sibling_packages_import_each_other(graph: grimp.ImportGraph) -> None:
    cycles = package_cycles(graph)
    assert not cycles, "package cycles:\n" + "\n".join(cycles)


def test_the_checks_see_a_cycle() -> None:
    # the graph as it would be if the policy model imported the engine again,
    # as the builder's model and cql_like once imported each other
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    graph.add_import(importer="policies.model", imported="cql_like.engine")
    assert any("policies.model" in key for key in module_cycles(graph))
    assert any(cycle.startswith("cql_like <-> policies") for cycle in package_cycles(graph))
