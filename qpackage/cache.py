"""The compiled catalog ``dtr score`` needs, kept between runs.

Scoring one response from the command line builds the catalog of its policy
(the policy files read and verified, its forms and their definitions
compiled, every definition parsed) and throws it away: most of a run. This
keeps that catalog, pickled, in a per-user cache folder, under a key that is
the SHA-256 of everything it was built from:

- the code that builds and scores (every file of ``builder``, ``cql_like``,
  ``qpackage``, ``scoring`` and the Python files of ``policies`` and
  ``questionnaires``), the Python version, and the installed fhirpathpy and
  pydantic (the parse trees are fhirpathpy's, the policy objects pydantic's);
- what the catalog reads: the policy folder's files, its archive of released
  versions, the CQL translations and the release times;
- the form the response names (the catalog holds that form's policy only).

A change to any of these is a different key, so a cached catalog is never
used for inputs it was not built from: the catalog read back is the one the
same inputs would build. Anything wrong with a cache file (unreadable, of
another format, not owned by the user, written to by others, a different
key inside) makes the catalog be built again as if there were no cache; a
cache that cannot be written is skipped. The folder is ``DTR_CACHE`` when
set (``off``: no cache), else ``$XDG_CACHE_HOME/dtr-pa`` or
``~/.cache/dtr-pa``.

A pickle runs code when read: the folder is the user's own (created 0700),
and a file is read only when the user owns it and no one else can write it.
The service does not use this: it builds its catalog once at start.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from cql_like.gateway import parse_trees, seed_trees
from qpackage.catalog import Catalog

FORMAT = 1  # the layout of a cache file; bumped when it changes
# the packages whose every file is code (templates included)
_CODE = ("builder", "cql_like", "qpackage", "scoring")
# the packages that also hold data: their Python files are code; the data
# the catalog reads is hashed as the policy folder's below
_CODE_BESIDE_DATA = ("policies", "questionnaires")


def cache_folder() -> Path | None:
    """Where cached catalogs are kept; None when caching is off."""
    chosen = os.environ.get("DTR_CACHE", "")
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dtr-pa"


def catalog_for(resource: Mapping[str, Any], folder: Path | None = None) -> Catalog:
    """:meth:`Catalog.for_response`, read from the cache when it was built
    from the same inputs, else built and kept."""
    where = cache_folder()
    if where is None:
        return Catalog.for_response(resource, folder)
    key = cache_key(resource, folder)
    path = where / f"catalog-{key}.pickle"
    found = _read(path, key)
    if found is not None:
        catalog, trees = found
        seed_trees(trees)
        return catalog
    catalog = Catalog.for_response(resource, folder)
    # pickled before anything is evaluated: a definition compiled by
    # fhirpathpy holds closures, which do not pickle (and are rebuilt in a
    # moment from the parse tree kept beside it)
    sources = {
        expression.source
        for package in catalog.packages.values()
        for expression in package.expressions.values()
    }
    _write(where, path, (FORMAT, key, catalog, parse_trees(sources)))
    return catalog


def cache_key(resource: Mapping[str, Any], folder: Path | None) -> str:
    """The SHA-256 of everything the response's catalog is built from."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("format", str(FORMAT).encode())
    add("python", sys.version.encode())
    for library in ("fhirpathpy", "pydantic"):
        add(library, _installed(library).encode())
    root = Path(__file__).resolve().parent.parent
    for package in _CODE:
        _add_tree(add, root / package, "*")
    for package in _CODE_BESIDE_DATA:
        _add_tree(add, root / package, "*.py")
    policies = folder if folder is not None else root / "policies"
    generated = folder / "questionnaires" if folder is not None else root / "questionnaires"
    _add_tree(add, policies, "*.yaml", recursive=False)
    _add_tree(add, generated / "released", "*")
    _add_tree(add, generated / "cql", "*")
    released_at = generated / "released-at.json"
    add("released-at", released_at.read_bytes() if released_at.is_file() else b"")
    canonical = resource.get("questionnaire")
    add("questionnaire", str(canonical).split("|")[0].encode())
    return digest.hexdigest()


def _installed(library: str) -> str:
    """Which copy of a library is installed, without importing it (reading
    its metadata costs more than the rest of the key): its path, and the
    size and modification time of its ``__init__``, as Python's own
    bytecode cache tells a changed source file."""
    spec = find_spec(library)
    if spec is None or spec.origin is None:
        return "absent"
    found = os.stat(spec.origin)
    return f"{spec.origin}:{found.st_size}:{found.st_mtime_ns}"


def _add_tree(add: Any, top: Path, pattern: str, *, recursive: bool = True) -> None:
    """Every file under ``top`` matching ``pattern``, by its path relative
    to ``top`` and its bytes (compiled bytecode and hidden folders left out)."""
    if not top.is_dir():
        add(f"missing {top.name}", b"")
        return
    found = top.rglob(pattern) if recursive else top.glob(pattern)
    for path in sorted(found):
        relative = path.relative_to(top)
        if (
            path.is_file()
            and path.suffix != ".pyc"
            and not any(part.startswith(".") or part == "__pycache__" for part in relative.parts)
        ):
            add(f"{top.name}/{relative.as_posix()}", path.read_bytes())


def _read(path: Path, key: str) -> tuple[Catalog, dict[str, Any]] | None:
    """The cached catalog and parse trees at ``path`` when the file is the
    user's own, of this format and key; else None (built again)."""
    try:
        with path.open("rb") as file:
            found = os.fstat(file.fileno())
            if found.st_uid != os.getuid() or found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return None
            content = pickle.load(file)
    except FileNotFoundError:
        return None
    except Exception:  # a damaged, truncated or foreign file: as if absent
        return None
    if not (isinstance(content, tuple) and len(content) == 4):
        return None
    version, stored_key, catalog, trees = content
    if version != FORMAT or stored_key != key or not isinstance(catalog, Catalog):
        return None
    if not isinstance(trees, dict):
        return None
    return catalog, trees


def _write(where: Path, path: Path, content: tuple[Any, ...]) -> None:
    """Written whole or not at all (a temporary file renamed into place);
    a folder that cannot be written leaves the run uncached."""
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=where, prefix=".catalog-")
        try:
            with os.fdopen(handle, "wb") as file:
                pickle.dump(content, file, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    # what pickle raises for an object it cannot write
    except (OSError, pickle.PicklingError, AttributeError, TypeError):
        return
    _prune(where)


KEPT = 32  # cached catalogs kept: every change of code or policy makes a new one


def _prune(where: Path) -> None:
    """The oldest cached catalogs beyond :data:`KEPT` removed."""
    try:
        cached = sorted(where.glob("catalog-*.pickle"), key=lambda p: p.stat().st_mtime_ns)
        for old in cached[:-KEPT]:
            old.unlink(missing_ok=True)
    except OSError:
        return
