"""One way to run a Node script of the project on a JSON request: the
request on stdin, the script's JSON answer on stdout (the CQL engine, the
reference client's steps, fhirpath.js). A failing script fails the caller
with its stderr."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def run_node(script: Path, request: Any, timeout: float = 120) -> Any:
    done = subprocess.run(
        ["node", str(script)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{script.name}: {done.stderr}"
    return json.loads(done.stdout)
