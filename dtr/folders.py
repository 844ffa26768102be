"""Where the ``dtr`` commands find policies and put what they generate, and
the refusal every command reports the same way. Imports nothing heavy: every
command reads it, ``dtr score`` included."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUESTIONNAIRES = PROJECT_ROOT / "questionnaires"
DOCS = PROJECT_ROOT / "docs"


class Refused(Exception):
    """Input a command refuses as it is (exit 2), its message for the user."""


def folder_of(args: argparse.Namespace) -> Path | None:
    """The payer's own policy folder (``--policies`` or ``DTR_POLICIES``);
    None for the bundled policies."""
    folder = getattr(args, "policies", None) or os.environ.get("DTR_POLICIES") or None
    return Path(folder) if folder else None
