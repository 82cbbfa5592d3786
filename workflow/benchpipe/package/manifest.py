"""manifest.json: the sha256 of every file in a submission tree, and its verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchpipe.errors import ManifestError
from benchpipe.hashing import sha256_file

MANIFEST = "manifest.json"
FORMAT = "benchpipe-manifest/1"


def _files(tree: Path) -> list[str]:
    return sorted(
        p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file() and p.name != MANIFEST
    )


def write_manifest(tree: Path) -> dict[str, Any]:
    manifest = {"format": FORMAT, "files": {rel: sha256_file(tree / rel) for rel in _files(tree)}}
    (tree / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def verify_manifest(tree: Path) -> int:
    """Every listed file present with its sha256, and no file unlisted; returns the count."""
    path = tree / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        listed: dict[str, str] = manifest["files"]
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: not a benchpipe manifest: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ManifestError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    problems = []
    for rel, expected in sorted(listed.items()):
        file = tree / rel
        if not file.is_file():
            problems.append(f"{rel}: missing")
        elif (actual := sha256_file(file)) != expected:
            problems.append(f"{rel}: sha256 {actual}, manifest says {expected}")
    problems += [f"{rel}: not in the manifest" for rel in _files(tree) if rel not in listed]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ManifestError(f"{path}: {len(problems)} problem(s): {shown}")
    return len(listed)
