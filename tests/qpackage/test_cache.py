"""`dtr score`'s catalog cache (qpackage.cache): a catalog read back decides
every clinical case as the catalog built afresh; a change of any input it was
built from is another key; a damaged, foreign or shared cache file is never
used; no cache at all (off, or unwritable) still scores."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qpackage import cache
from qpackage.cache import cache_key, catalog_for
from qpackage.catalog import Catalog, score_json
from scoring import InvalidInput
from scoring.fill import fill
from tests.support.cases import AS_OF, load_scoring_cases, package_for
from tests.support.paths import ROOT, TESTS

EXAMPLE = ROOT / "examples" / "eocco329-initial-approved.json"


@pytest.fixture()
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DTR_CACHE", str(folder))
    yield folder


def _example() -> dict[str, Any]:
    import json

    loaded: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return loaded


def _cached(folder: Path) -> list[Path]:
    return sorted(folder.glob("catalog-*.pickle"))


def test_a_catalog_read_back_decides_every_case_as_a_fresh_one(cache_folder: Path) -> None:
    """Every worked example of every policy (bundled and fixture folders),
    scored with the catalog the cache gives back and with one built afresh:
    the same whole determination."""
    read_back: dict[tuple[str | None, str], Catalog] = {}
    fresh: dict[tuple[str | None, str], Catalog] = {}
    compared = 0
    for param in load_scoring_cases():
        (case,) = param.values
        folder = TESTS / case["folder"] if case.get("folder") else None
        built = Catalog.from_folder(folder) if folder else None
        key = (case.get("folder"), f"{case['policy']} {case['request']} {case.get('drug')}")
        if key not in fresh:
            whole = built if built is not None else Catalog.bundled()
            package = package_for(whole, case["policy"], case["request"], case.get("drug"))
            probe = fill(package, {})
            fresh[key] = Catalog.for_response(probe, folder)
            catalog_for(probe, folder)  # built and written
            read_back[key] = catalog_for(probe, folder)  # read back
        package = package_for(fresh[key], case["policy"], case["request"], case.get("drug"))
        response = fill(package, case["answers"])
        as_of = case.get("as_of", AS_OF)
        expected = score_json(fresh[key], response, as_of).to_json()
        assert score_json(read_back[key], response, as_of).to_json() == expected, param.id
        compared += 1
    assert compared > 100
    assert len(_cached(cache_folder)) == len(fresh)


def _copy_of_the_bundled_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "payer"
    shutil.copytree(ROOT / "policies", folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "questionnaires",
        folder / "questionnaires",
        ignore=shutil.ignore_patterns("__pycache__", "*.py"),
    )
    return folder


@pytest.mark.parametrize(
    "changed",
    [
        "eocco329.yaml",
        "questionnaires/released-at.json",
        "questionnaires/released/policy-eocco329-1.0.0.yaml",
        "questionnaires/cql/eocco329-1.2.1-r4.json",
    ],
)
def test_a_change_of_any_input_is_another_key(tmp_path: Path, changed: str) -> None:
    folder = _copy_of_the_bundled_folder(tmp_path)
    response = _example()
    before = cache_key(response, folder)
    assert cache_key(response, folder) == before  # the same inputs, the same key
    path = folder / changed
    assert path.is_file(), changed
    path.write_bytes(path.read_bytes() + b"\n")
    assert cache_key(response, folder) != before


def test_another_form_is_another_key(tmp_path: Path) -> None:
    response = _example()
    other = dict(
        response, questionnaire=str(response["questionnaire"]).replace("initial", "renewal")
    )
    assert cache_key(response, None) != cache_key(other, None)


def test_an_edited_policy_is_decided_by_its_edit(tmp_path: Path, cache_folder: Path) -> None:
    """Scored once (cached), the policy's approval period edited in its
    file: the next run builds again and decides under the edit, never from
    the cached catalog."""
    folder = _copy_of_the_bundled_folder(tmp_path)
    response = _example()
    first = score_json(catalog_for(response, folder), response, AS_OF).to_json()
    assert first["outcome"] == "approved"
    policy = folder / "eocco329.yaml"
    text = policy.read_text(encoding="utf-8")
    six = '  initial: {months: 6, source_quote: "Initial: Six months"}'
    assert six in text
    policy.write_text(text.replace(six, six.replace("months: 6", "months: 3")), encoding="utf-8")
    edited = score_json(catalog_for(response, folder), response, AS_OF).to_json()
    assert edited["outcome"] == "approved"
    assert edited["authorization"] != first["authorization"]
    assert edited["authorization"]["months"] == 3
    assert len(_cached(cache_folder)) == 2


def _planted(cache_folder: Path, key: str, catalog: Catalog, mode: int) -> Path:
    cache_folder.mkdir(parents=True, exist_ok=True)
    path = cache_folder / f"catalog-{key}.pickle"
    path.write_bytes(pickle.dumps((cache.FORMAT, key, catalog, {})))
    path.chmod(mode)
    return path


def test_a_cache_file_others_may_write_is_not_read(cache_folder: Path) -> None:
    """A catalog planted under the right key (here a catalog of another
    policy, which cannot decide the response): read when the file is the
    user's own and private, refused when others may write it."""
    response = _example()
    key = cache_key(response, None)
    wrong = Catalog.for_response(
        dict(
            response,
            questionnaire="https://pa-dtr.example.org/fhir/Questionnaire/wha-mektovi-initial",
        )
    )
    assert all(p.policy.id == "wha-mektovi" for p in wrong.packages.values())
    _planted(cache_folder, key, wrong, 0o600)
    with pytest.raises(InvalidInput):  # read: the planted catalog lacks the form
        score_json(catalog_for(response), response, AS_OF)
    _planted(cache_folder, key, wrong, 0o664)
    assert score_json(catalog_for(response), response, AS_OF).outcome == "approved"


@pytest.mark.parametrize(
    "content",
    [b"", b"not a pickle", pickle.dumps(("another format", 1)), pickle.dumps((99, "k", None, {}))],
    ids=["empty", "garbage", "another shape", "another format"],
)
def test_a_damaged_cache_file_is_built_again(cache_folder: Path, content: bytes) -> None:
    response = _example()
    cache_folder.mkdir(parents=True)
    path = cache_folder / f"catalog-{cache_key(response, None)}.pickle"
    path.write_bytes(content)
    path.chmod(0o600)
    assert score_json(catalog_for(response), response, AS_OF).outcome == "approved"
    assert path.read_bytes() != content  # written again, whole


def test_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTR_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    response = _example()
    assert score_json(catalog_for(response), response, AS_OF).outcome == "approved"
    assert list(tmp_path.rglob("catalog-*")) == []


def test_a_cache_that_cannot_be_written_still_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("DTR_CACHE", str(blocked / "cache"))
    response = _example()
    assert score_json(catalog_for(response), response, AS_OF).outcome == "approved"


def test_the_cache_folder_is_private(cache_folder: Path) -> None:
    response = _example()
    catalog_for(response)
    (written,) = _cached(cache_folder)
    assert cache_folder.stat().st_mode & 0o777 == 0o700
    assert written.stat().st_mode & 0o777 == 0o600
