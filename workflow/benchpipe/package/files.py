"""Writing into a tree being built: JSON with a stable layout, copies with their folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchpipe.contracts.paths import PACKAGE_DIR


def dump_json(path: Path, data: Any) -> None:
    """Sorted keys, two-space indent, a final newline: the same data always gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def copy_code(dst: Path) -> None:
    """benchpipe's own source, the code that ran, without caches."""
    shutil.copytree(PACKAGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
