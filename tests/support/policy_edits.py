"""Editing a policy's YAML data at a dotted path, as the case tables of
malformed and wrong policy files describe an edit (``set``, ``delete``)."""

from __future__ import annotations

from typing import Any


def edit(data: Any, dotted: str, value: Any = None, delete: bool = False) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if delete:
        del node[key]
    else:
        node[key] = value
