"""manifest.json: the sha256 of every file in a submission tree, a root hash over them, and
their verification.

Format ``benchpipe-manifest/2``::

    {"format": "benchpipe-manifest/2",
     "files": {"<path>": "<sha256>", ...},
     "root_sha256": "<sha256>",
     "tools": {"benchpipe": "0.1.0", "mlperf-logging": ..., "mlcommons-loadgen": ...,
               "tensorflow": ..., "python": "3.11.7"}}

``files`` lists every regular file of the tree except the top-level ``manifest.json``, by
its path relative to the tree (``/``-separated). ``tools`` holds the versions installed
where the manifest was written (``null`` for one that is absent).

The root hash is the sha256 of the lines ``"<sha256>  <path>\\n"`` (two spaces, as
``sha256sum`` prints them) in the byte order of the UTF-8 paths. It stands for the whole
tree: publish it, and anyone can check a copy against it. An auditor can recompute it with
standard tools, from the files themselves::

    cd TREE && find . -type f ! -path ./manifest.json -printf '%P\\n' | LC_ALL=C sort \\
        | xargs -r -d '\\n' sha256sum | sha256sum

or from the manifest (``python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["files"];
print("".join(f"{f[p]}  {p}\\n" for p in sorted(f)), end="")' manifest.json | sha256sum``).
Paths holding a newline or a backslash are refused, since ``sha256sum`` would escape them.

A tree holds regular files and directories only. Any symbolic link is a problem, whether
it points inside the tree or out: its content is not what the manifest hashes, and a link
out would make the tree depend on the machine it sits on. FIFOs, sockets and devices are
problems too, and so is a regular file with more than one name (a hard link): whoever holds
the other name, perhaps outside the tree, can change the file after it was verified.

``benchpipe-manifest/1`` manifests (``files`` only, no root hash) still verify. Format 1
skipped every file named ``manifest.json``, at any depth, so those are not reported as
extra in a format 1 tree.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from benchpipe.contracts.errors import ManifestError
from benchpipe.contracts.jsonfile import read_json
from benchpipe.contracts.hashing import sha256_files

MANIFEST = "manifest.json"
FORMAT = "benchpipe-manifest/2"
FORMAT_1 = "benchpipe-manifest/1"
# Distributions whose versions a manifest records; the first installed name of each is used
# (TensorFlow's CPU wheel is a distribution of its own).
TOOLS: dict[str, tuple[str, ...]] = {
    "benchpipe": ("benchpipe",),
    "mlperf-logging": ("mlperf-logging",),
    "mlcommons-loadgen": ("mlcommons-loadgen",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
}
_SHOWN_PROBLEMS = 5
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Problem:
    """One way a tree differs from its manifest: ``kind`` is modified, missing, extra, symlink,
    hardlink, special or root."""

    path: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class TreeMismatch(ManifestError):
    """The tree does not match its manifest; ``problems`` lists every difference found."""

    def __init__(self, manifest: Path, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:_SHOWN_PROBLEMS])
        if len(problems) > _SHOWN_PROBLEMS:
            shown += f"; and {len(problems) - _SHOWN_PROBLEMS} more"
        super().__init__(f"{manifest}: {len(problems)} problem(s): {shown}")


@dataclass(frozen=True)
class Verified:
    """A tree that matches its manifest."""

    tree: Path
    format: str
    files: int
    root_sha256: str | None  # None for a format 1 manifest, which records none
    tools: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _Walk:
    files: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # path -> link target
    special: dict[str, str] = field(default_factory=dict)  # path -> kind
    hardlinks: dict[str, int] = field(default_factory=dict)  # path -> number of names of the file


def root_sha256(files: Mapping[str, str]) -> str:
    """sha256 of ``"<sha256>  <path>\\n"`` per file, paths in UTF-8 byte order (``sha256sum`` lines)."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.encode()):
        digest.update(f"{files[path]}  {path}\n".encode())
    return digest.hexdigest()


def tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {name: _installed(dists) for name, dists in TOOLS.items()}
    versions["python"] = platform.python_version()
    return versions


def _installed(dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _walk(tree: Path, *, skip_nested_manifests: bool = False) -> _Walk:
    """Every entry under ``tree`` without following links, sorted by path."""
    found = _Walk()
    stack = [(tree, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            raise ManifestError(f"{folder}: cannot list: {exc.strerror}") from exc
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_symlink():
                found.links[rel] = os.readlink(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                if rel == MANIFEST or (skip_nested_manifests and entry.name == MANIFEST):
                    continue
                found.files.append(rel)
                names = entry.stat(follow_symlinks=False).st_nlink
                if names > 1:
                    found.hardlinks[rel] = names
            else:
                found.special[rel] = _kind(entry.stat(follow_symlinks=False).st_mode)
    found.files.sort()
    return found


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _link_problem(rel: str, target: str) -> Problem:
    if _points_outside(rel, target):
        return Problem(rel, "symlink", f"symlink to '{target}', outside the tree")
    return Problem(rel, "symlink", f"symlink to '{target}'; a tree holds regular files only")


def _points_outside(rel: str, target: str) -> bool:
    if os.path.isabs(target):
        return True
    depth = len(PurePosixPath(rel).parts) - 1  # folders between the tree and the link
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def _entry_problems(walk: _Walk) -> list[Problem]:
    return [_link_problem(rel, target) for rel, target in walk.links.items()] + [
        Problem(rel, "special", f"a {kind}; a tree holds regular files only") for rel, kind in walk.special.items()
    ] + [
        Problem(rel, "hardlink", f"hard link ({names} names): another name outside the manifest can change it")
        for rel, names in walk.hardlinks.items()
    ]


def _check_path(rel: str) -> str | None:
    """Why ``rel`` cannot be a manifest path, or None."""
    if not rel or "\n" in rel or "\\" in rel or "\r" in rel:
        return "holds a newline or backslash, which sha256sum would escape"
    try:
        rel.encode()
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or rel == MANIFEST:
        return "is not a plain path inside the tree"
    return None


def write_manifest(tree: Path, workers: int | None = None) -> dict[str, Any]:
    """Hash every file of ``tree`` (on ``workers`` threads, default every core) into its manifest.json."""
    walk = _walk(tree)
    problems = _entry_problems(walk)
    problems += [Problem(rel, "path", f"path {why}") for rel in walk.files if (why := _check_path(rel))]
    if problems:
        raise TreeMismatch(tree / MANIFEST, problems)
    digests = sha256_files([tree / rel for rel in walk.files], workers)
    files = dict(zip(walk.files, digests))
    manifest = {"format": FORMAT, "files": files, "root_sha256": root_sha256(files), "tools": tool_versions()}
    (tree / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(tree: Path) -> dict[str, Any]:
    """The manifest of ``tree``, its shape checked; files are not looked at."""
    path = tree / MANIFEST
    manifest = read_json(path, ManifestError)
    try:
        listed = manifest["files"]
        fmt = manifest.get("format")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{path}: not a benchpipe manifest: {exc}") from exc
    if fmt not in (FORMAT, FORMAT_1):
        raise ManifestError(f"{path}: format {fmt!r}, expected {FORMAT!r} or {FORMAT_1!r}")
    if not isinstance(listed, dict):
        raise ManifestError(f"{path}: 'files' must be an object of path: sha256")
    for rel, digest in listed.items():
        # A hostile manifest must not make verification read outside the tree.
        if why := _check_path(rel):
            raise ManifestError(f"{path}: listed path {rel!r} {why}")
        if not _is_sha256(digest):
            raise ManifestError(f"{path}: {rel}: {digest!r} is not a sha256")
    if fmt == FORMAT and not _is_sha256(manifest.get("root_sha256")):
        raise ManifestError(f"{path}: root_sha256 missing or not a sha256")
    return manifest


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def verify_tree(tree: Path, workers: int | None = None) -> Verified:
    """Check ``tree`` against its manifest; raise TreeMismatch naming every difference.

    Modified, missing and extra files, links (hard links too) and special files are all
    reported, and in format 2 a root hash that does not match the listed hashes.
    """
    manifest = read_manifest(tree)
    fmt: str = manifest["format"]
    listed: dict[str, str] = manifest["files"]
    root = root_sha256(listed) if fmt == FORMAT else None
    root_problems = []
    if root is not None and root != manifest["root_sha256"]:
        root_problems.append(Problem(MANIFEST, "root", f"root sha256 {manifest['root_sha256']} does not match "
                                                  f"its listed files, which give {root}"))
    walk = _walk(tree, skip_nested_manifests=fmt == FORMAT_1)
    problems = _entry_problems(walk)
    present = set(walk.files)
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed))
    both = sorted(present & set(listed))
    actual = dict(zip(both, sha256_files([tree / rel for rel in both], workers)))
    problems += [
        Problem(rel, "modified", f"modified: sha256 {actual[rel]}, manifest says {listed[rel]}")
        for rel in both if actual[rel] != listed[rel]
    ]
    problems += [Problem(rel, "missing", "missing") for rel in missing]
    problems += _extra_problems(tree, extra, {listed[rel]: rel for rel in missing}, workers)
    problems = root_problems + sorted(problems, key=lambda p: (p.path, p.kind))
    if problems:
        raise TreeMismatch(tree / MANIFEST, problems)
    return Verified(tree, fmt, len(listed), root, manifest.get("tools", {}))


def _extra_problems(tree: Path, extra: list[str], missing_by_hash: dict[str, str], workers: int | None) -> list[Problem]:
    # Extra files are hashed only when some are missing: then a match says "renamed".
    digests = sha256_files([tree / rel for rel in extra], workers) if missing_by_hash else [""] * len(extra)
    problems = []
    for rel, digest in zip(extra, digests):
        was = missing_by_hash.get(digest)
        hint = f" (same content as the missing {was}: renamed?)" if was else ""
        problems.append(Problem(rel, "extra", f"extra, not in the manifest{hint}"))
    return problems


def verify_manifest(tree: Path) -> int:
    """Every listed file present with its sha256, and no file unlisted; returns the count.

    Kept for callers that need only the count; ``verify_tree`` also gives the root hash.
    """
    return verify_tree(tree).files
