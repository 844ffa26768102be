"""The impact table's store and policy edits (tests/cases/impact.yaml), for
the tests of ``dtr impact`` and of the pharmacist's impact pages: the
table's requests submitted through the API, and the bundled policy file
changed and given a new version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qpackage.catalog import Catalog
from scoring.fill import fill
from tests.support.callers import People
from tests.support.cases import base_answers, package_for, table
from tests.support.paths import ROOT
from tests.support.policy_edits import edit

TABLE = table("impact.yaml")
POLICY = TABLE["policy"]
SOURCE = ROOT / "policies" / f"{POLICY}.yaml"


def edited(folder: Path, changes: dict[str, Any], version: str = TABLE["version"]) -> Path:
    """The bundled policy file with ``changes`` applied, at ``version``,
    written into ``folder`` under its own name (no worked examples beside it)."""
    data = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    edit(data, "policy.version", version)
    for dotted, value in changes.items():
        edit(data, dotted, value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SOURCE.name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def submit_table(people: People, catalog: Catalog) -> dict[str, str]:
    """The table's requests submitted by the office: record id → name."""
    names = {}
    for number, request in enumerate(TABLE["stored"]):
        answers = base_answers(POLICY, request["base"]) | request.get("set", {})
        package = package_for(catalog, POLICY, request["request"])
        response = people.submit(fill(package, answers, response_id=f"qr-{number}"))
        assert response.status_code == 201, response.text
        names[response.json()["id"]] = request["name"]
    return names


def database(app: Any) -> str:
    """The SQLite file of an in-process service's store."""
    return str(app.state.store.connections.path)
