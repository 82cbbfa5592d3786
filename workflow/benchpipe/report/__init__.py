"""``benchpipe report TREE``: one self-contained HTML page that shows a submission at a glance.

What the tree is (a banner when it is a development tree), the audit's verdicts with the
checks behind each, the system it ran on, time to train per run and target, eval accuracy by
epoch against the target, latency distributions per scenario, throughput per scenario, and
the reproduction's verdicts when ``<tree>.reproduce.json`` is about this tree. It reads the
tree alone (tables, LoadGen logs, manifest, config, checks, systems, user.conf). The verdicts
come from an audit report about this very tree (its root sha256 must match the manifest's),
or from an audit run now. An MLCommons folder benchpipe did not make gets a page of its own
kind (report.foreign), its verdicts tied to the root sha256 of its files as found.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import BenchpipeError


@dataclass(frozen=True)
class Written:
    path: Path
    plots: list[str]  # ids of the plots in the page
    audit_passed: bool
    audit_source: str


def default_audit_path(tree: Path) -> Path:
    tree = Path(tree).resolve()
    return tree.parent / f"{tree.name}.audit.json"


def enclosing_tree(path: Path) -> Path | None:
    """The benchpipe tree that ``path`` lies in (a folder above it with manifest.json and
    benchpipe/config.json), or None."""
    from benchpipe.contracts.layout import CONFIG_JSON

    for folder in Path(path).resolve().parents:
        if (folder / "manifest.json").is_file() and (folder / CONFIG_JSON).is_file():
            return folder
    return None


def beside(tree: Path, suffix: str, option: str) -> Path:
    """``<tree><suffix>`` beside ``tree``: a command's default output. Refused inside another
    tree, where a new file would break that tree's manifest; ``option`` names the way out."""
    tree = Path(tree).resolve()
    out = tree.parent / f"{tree.name}{suffix}"
    inside = enclosing_tree(out)
    if inside is not None:
        raise BenchpipeError(f"{out}: would be written inside the tree {inside} and break its manifest: "
                             f"give {option} a path outside it")
    if not writable(out.parent):  # a published folder on a read-only share: say so before the audit
        raise BenchpipeError(f"{out}: cannot write beside the folder ({out.parent} is not writable): "
                             f"give {option} a path elsewhere")
    return out


def writable(folder: Path) -> bool:
    """Whether a file may be written in ``folder``: its mode must allow it, even to root, who
    could write anyway; a folder made read-only for everyone is meant to stay as it is."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & 0o222)


def read_audit(path: Path, root_sha256: str | None) -> dict[str, Any]:
    """An audit report, refused unless it is about the tree whose manifest root is ``root_sha256``."""
    try:
        report = json.loads(Path(path).read_text())
        items, audited = report["items"], report.get("root_sha256")
    except OSError as exc:
        raise BenchpipeError(f"{path}: cannot read the audit report: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise BenchpipeError(f"{path}: not a benchpipe audit report: {exc}") from exc
    if not isinstance(items, list):
        raise BenchpipeError(f"{path}: 'items' must be a list")
    if root_sha256 is None or audited != root_sha256:
        raise BenchpipeError(f"{path}: audits the tree with root sha256 {audited}, not this one ({root_sha256}): "
                             "run benchpipe audit again")
    return report


def audit_for(tree: Path, root_sha256: str | None, audit_path: Path | None,
              inference_checker: Path | None) -> tuple[dict[str, Any], str]:
    """(the audit report, where it came from): the one named, else the one beside the tree if it
    is about this tree, else a new audit."""
    from benchpipe.audit import audit

    if audit_path is not None:
        return read_audit(audit_path, root_sha256), f"Verdicts from {Path(audit_path).name}."
    beside = default_audit_path(tree)
    if beside.is_file():
        try:
            return read_audit(beside, root_sha256), f"Verdicts from {beside.name}."
        except BenchpipeError:
            pass  # stale or foreign: audit again rather than show verdicts about another tree
    return audit(tree, inference_checker=inference_checker).to_dict(), "Verdicts from an audit run for this report."


def write_report(tree: Path, out: Path, *, audit_path: Path | None = None,
                 inference_checker: Path | None = None, published: Path | None = None) -> Written:
    """``published``: a published table's folder (benchpipe published import), whose results the
    tree's are set among, in a section and a plot per benchmark and scenario."""
    from benchpipe import __version__
    from benchpipe.audit.foreign import foreign_kind, is_benchpipe_tree
    from benchpipe.report.data import load
    from benchpipe.report.figures import draw_all
    from benchpipe.report.page import render

    # A folder that is neither kind is refused by load, as a tree without tables.
    if not is_benchpipe_tree(Path(tree)) and Path(tree).is_dir() and foreign_kind(Path(tree)) is not None:
        return _write_foreign(Path(tree), Path(out), audit_path, inference_checker)
    data = load(tree)
    if published is not None:
        from benchpipe.report.compare import compare_data

        data.comparison = compare_data(data, published)
    audit, source = audit_for(tree, data.root_sha256, audit_path, inference_checker)
    plots = draw_all(data)
    _write(Path(out), render(data, plots, audit, source, __version__))
    return Written(Path(out), [p.id for p in plots], bool(audit.get("passed")), source)


def _write_foreign(folder: Path, out: Path, audit_path: Path | None, inference_checker: Path | None) -> Written:
    """The page of an MLCommons folder benchpipe did not make; its audit must be about the files as found."""
    from benchpipe import __version__
    from benchpipe.report.foreign import draw_foreign, load_foreign, render_foreign

    data = load_foreign(folder)
    audit, source = audit_for(folder, data.root_sha256, audit_path, inference_checker)
    plots = draw_foreign(data, audit)
    _write(out, render_foreign(data, plots, audit, source, __version__))
    return Written(out, [p.id for p in plots], bool(audit.get("passed")), source)


def _write(out: Path, html: str) -> None:
    from benchpipe.contracts.atomic import atomic_file

    try:
        with atomic_file(out) as f:
            f.write(html)
    except OSError as exc:
        raise BenchpipeError(f"{out}: cannot write the page: {exc.strerror or exc}") from exc
