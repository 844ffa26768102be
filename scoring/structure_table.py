"""The element table the structure check walks (``scoring/structure.py``),
derived from the ``fhir.resources`` R4B models' own field metadata.

Each datatype or backbone element reachable from a QuestionnaireResponse
(contained resources aside: they are checked by their own model) is one row:
its elements by JSON name, each with its type (a FHIR primitive such as
``dateTime``, a datatype such as ``Coding``, or ``Resource``), whether it is
a list, whether it is required, and the choice group (``value`` of
``value[x]``) it belongs to. A primitive's extension sibling (``_status``)
is an element of type ``_`` (id and extensions).

The table is committed (``scoring/r4b_structure.json``) so the scorer never
imports the FHIR models (about 150 ms) nor walks them at start; a test
derives it again and compares, so a new ``fhir.resources`` cannot drift from
it unseen. Regenerate with ``python -m scoring.structure_table``.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).with_name("r4b_structure.json")
ROOT_TYPE = "QuestionnaireResponse"

# The FHIR primitive types the check knows a format for; the table is refused
# (derive raises) if a model uses any other.
PRIMITIVES = frozenset(
    {
        "boolean", "integer", "unsignedInt", "positiveInt", "integer64", "decimal", "string",
        "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid", "base64Binary",
        "date", "dateTime", "instant", "time", "xhtml",
    }
)  # fmt: skip


def _unwrapped(annotation: Any) -> tuple[Any, bool]:
    """The element type of a field annotation, and whether it is a list."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                raise ValueError(f"an element of several types: {annotation}")
            annotation = inner[0]
        elif origin in (list, typing.List):  # noqa: UP006 - the models spell it so
            is_list = True
            (annotation,) = typing.get_args(annotation)
        else:
            return annotation, is_list


def _primitive(annotation: Any) -> str | None:
    """The FHIR primitive type an annotation stands for, if it is one."""
    if annotation is bool:
        return "boolean"
    if typing.get_origin(annotation) is typing.Annotated:
        for meta in typing.get_args(annotation)[1:]:
            name = getattr(meta, "__visit_name__", None)
            if isinstance(name, str):
                return name
        base = typing.get_args(annotation)[0]
        if getattr(base, "__name__", "") == "UUID":  # pydantic's UUID4
            return "uuid"
    return None


def _model_of(annotation: Any) -> Any:
    """The model class behind a ``fhirtypes`` type (``abc.CodingType``)."""
    from pydantic.v1.utils import import_string

    path = getattr(annotation, "_model_klass", None)
    if not isinstance(path, str):
        raise ValueError(f"not a FHIR model type: {annotation!r}")
    return import_string(path)


def derive() -> dict[str, Any]:
    """The table, from the models (imports ``fhir.resources``)."""
    from fhir.resources.R4B.questionnaireresponse import (
        QuestionnaireResponse,
    )

    table: dict[str, Any] = {}
    pending: list[Any] = [QuestionnaireResponse]
    while pending:
        model = pending.pop()
        name = model.__name__
        if name in table:
            continue
        elements: dict[str, list[Any]] = {}
        choices: dict[str, dict[str, Any]] = {}
        for field_name, info in model.model_fields.items():
            key = info.alias or field_name
            if key == "fhir_comments":
                continue
            annotation, is_list = _unwrapped(info.annotation)
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if field_name.endswith("__ext"):
                elements[key] = ["_", is_list, False, None]
                continue
            primitive = _primitive(annotation)
            if primitive is not None:
                if primitive not in PRIMITIVES:
                    raise ValueError(f"{name}.{key}: primitive {primitive} has no format here")
                kind = primitive
            else:
                target = _model_of(annotation)
                kind = target.__name__
                if kind == "Resource":
                    pass  # contained: each checked by its own model
                elif kind not in table:
                    pending.append(target)
            required = bool(extra.get("element_required")) or info.is_required()
            group = extra.get("one_of_many")
            elements[key] = [kind, is_list, required, group]
            if isinstance(group, str):
                entry = choices.setdefault(group, {"of": [], "required": False})
                entry["of"].append(key)
                entry["required"] = entry["required"] or extra.get("one_of_many_required") is True
        table[name] = {
            "resource": bool(model.has_resource_base()),
            "elements": dict(sorted(elements.items())),
            "choices": dict(sorted(choices.items())),
        }
    return dict(sorted(table.items()))


def write(path: Path = TABLE_PATH) -> None:
    path.write_text(json.dumps(derive(), indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
    print(f"wrote {TABLE_PATH}")
