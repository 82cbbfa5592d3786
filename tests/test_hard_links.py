"""A file of a tree with another name (a hard link) is a problem for verify and the audit, and the
archive writer packs such a file as a plain file, never as a tar hard-link member."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from benchpipe.audit import audit
from benchpipe.package.archive import write_members
from benchpipe.package.manifest import TreeMismatch, verify_tree, write_manifest

SCENARIO_LOG = Path("benchpipe/inference/closed/benchpipe-ci/results/local-cpu/digits/Offline/"
                    "performance/run_1/mlperf_log_detail.txt")


def small_tree(root: Path) -> Path:
    (root / "results").mkdir(parents=True)
    (root / "results" / "log.txt").write_text("accuracy=0.97\n")
    (root / "README.md").write_text("a tree\n")
    write_manifest(root)
    return root


def link_to_outside_copy(tree: Path, rel: Path, outside: Path) -> Path:
    """Replace ``tree/rel`` by a second name of ``outside``, a byte-identical copy: the hashes still match."""
    shutil.copyfile(tree / rel, outside)
    (tree / rel).unlink()
    os.link(outside, tree / rel)
    return outside


def test_verify_names_a_file_hard_linked_from_outside(tmp_path):
    tree = small_tree(tmp_path / "tree")
    outside = link_to_outside_copy(tree, Path("results/log.txt"), tmp_path / "elsewhere.txt")
    with pytest.raises(TreeMismatch) as caught:
        verify_tree(tree)
    assert [str(p) for p in caught.value.problems] == [
        "results/log.txt: hard link (2 names): another name outside the manifest can change it"]
    # What the rule guards against: the other name changes the tree's file.
    outside.write_text("accuracy=0.99\n")
    assert (tree / "results" / "log.txt").read_text() == "accuracy=0.99\n"


def test_write_manifest_refuses_a_hard_link(tmp_path):
    tree = small_tree(tmp_path / "tree")
    os.link(tree / "README.md", tmp_path / "other-name")
    with pytest.raises(TreeMismatch, match="README.md: hard link \\(2 names\\)"):
        write_manifest(tree)


def test_cli_verify_fails_on_a_hard_link(tmp_path, cli_env):
    tree = small_tree(tmp_path / "tree")
    link_to_outside_copy(tree, Path("README.md"), tmp_path / "readme-elsewhere")
    done = subprocess.run(["benchpipe", "verify", str(tree)], env=cli_env, capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "README.md: hard link (2 names): another name outside the manifest can change it" in done.stderr


def test_audit_manifest_item_fails_on_a_hard_link(submitted, tmp_path):
    tree = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", tree, symlinks=True)
    link_to_outside_copy(tree, SCENARIO_LOG, tmp_path / "detail.txt")
    items = {item.name: item for item in audit(tree).items}
    assert items["manifest"].status == "fail"
    assert f"{SCENARIO_LOG}: hard link (2 names): another name outside the manifest can change it" \
        in items["manifest"].reasons


def test_archive_writer_never_writes_hard_link_members(tmp_path):
    tree = small_tree(tmp_path / "tree")
    os.link(tree / "results" / "log.txt", tree / "results" / "same.txt")
    listed = {"README.md": None, "results/log.txt": None, "results/same.txt": None}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        write_members(tar, tree, "tree", listed)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert not any(m.islnk() or m.issym() for m in members.values())
        for name in ("tree/results/log.txt", "tree/results/same.txt"):
            assert members[name].isreg()
            assert tar.extractfile(members[name]).read() == b"accuracy=0.97\n"
