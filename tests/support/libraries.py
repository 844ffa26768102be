"""A published scoring Library (``text/fhirpath``) read as another
evaluator would read it: its answers (name → linkId), the names it declares
absent and its definitions in order. For the differential test against
fhirpath.js and the benchmark's fhirpath.js anchor."""

from __future__ import annotations

import base64
import re
from typing import Any

ANSWER = re.compile(r"^answer (\w+): '((?:[^'\\]|\\.)*)'$")
ABSENT = re.compile(r"^absent (\w+)$")
DEFINE = re.compile(r'^define "((?:[^"\\]|\\.)*)": (.*)$')


def read_library(library: dict[str, Any]) -> dict[str, Any]:
    """A published Library's text as its answers, absent names and
    definitions, in order."""
    text = base64.b64decode(library["content"][0]["data"]).decode("utf-8")
    answers: dict[str, str] = {}
    absent: list[str] = []
    definitions: list[list[str]] = []
    for line in text.splitlines():
        if found := ANSWER.match(line):
            answers[found.group(1)] = found.group(2)
        elif found := ABSENT.match(line):
            absent.append(found.group(1))
        elif found := DEFINE.match(line):
            definitions.append([found.group(1), found.group(2)])
        else:
            assert line == "" or line.startswith(("//", "library ")), line
    return {"answers": answers, "absent": absent, "definitions": definitions}
