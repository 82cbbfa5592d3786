"""Reading a small JSON file benchpipe or a tool wrote, with one error that names the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import BenchpipeError


def read_json(path: Path, error: type[BenchpipeError], *, missing: str = "") -> Any:
    """The JSON value in ``path``; ``error`` naming ``path`` when it is missing (``missing`` says
    what to do about it), unreadable, or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{path}: missing{': ' + missing if missing else ''}") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not JSON: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not JSON: {exc}") from exc
