"""manifest.json: every tampering is caught and named, and the root hash is the one an
auditor recomputes with sha256sum."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchpipe.contracts.errors import ManifestError
from benchpipe.contracts.hashing import sha256_file, sha256_files
from benchpipe.package.manifest import FORMAT, TreeMismatch, verify_manifest, verify_tree, write_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "a" / "one.txt").write_text("one")
    (root / "a" / "deep" / "manifest.json").write_text('{"nested": true}')  # hashed like any file
    (root / "two.txt").write_text("two")
    (root / "b-c.txt").write_bytes(b"\x00" * 3000)
    write_manifest(root)
    return root


def _manifest(tree: Path) -> dict:
    return json.loads((tree / "manifest.json").read_text())


def _problems(tree: Path) -> list[tuple[str, str]]:
    with pytest.raises(TreeMismatch) as err:
        verify_tree(tree)
    assert "\n" not in str(err.value)
    return [(p.path, p.kind) for p in err.value.problems]


def test_roundtrip_lists_every_file_and_versions(tree):
    manifest = _manifest(tree)
    assert manifest["format"] == FORMAT == "benchpipe-manifest/2"
    assert set(manifest["files"]) == {"a/one.txt", "a/deep/manifest.json", "two.txt", "b-c.txt"}
    assert manifest["files"]["two.txt"] == hashlib.sha256(b"two").hexdigest()
    assert manifest["tools"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert manifest["tools"]["benchpipe"] and set(manifest["tools"]) >= {"mlperf-logging", "mlcommons-loadgen", "tensorflow"}
    verified = verify_tree(tree)
    assert (verified.files, verified.root_sha256) == (4, manifest["root_sha256"])
    assert verify_manifest(tree) == 4  # the count-only call keeps working


def test_root_hash_is_sha256_of_sha256sum_lines(tree):
    files = {p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in tree.rglob("*") if p.is_file() and p != tree / "manifest.json"}
    lines = "".join(f"{files[p]}  {p}\n" for p in sorted(files, key=str.encode))
    assert _manifest(tree)["root_sha256"] == hashlib.sha256(lines.encode()).hexdigest()


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="needs GNU coreutils")
def test_root_hash_matches_the_documented_shell_recipe(tree):
    recipe = ("find . -type f ! -path ./manifest.json -printf '%P\\n' | LC_ALL=C sort"
              " | xargs -r -d '\\n' sha256sum | sha256sum")
    out = subprocess.run(["sh", "-c", recipe], cwd=tree, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == _manifest(tree)["root_sha256"]


def test_flipped_byte_is_modified(tree):
    data = bytearray((tree / "b-c.txt").read_bytes())
    data[1500] ^= 0x01
    (tree / "b-c.txt").write_bytes(bytes(data))
    assert _problems(tree) == [("b-c.txt", "modified")]
    with pytest.raises(ManifestError, match=r"b-c.txt: modified: sha256 [0-9a-f]{64}, manifest says"):
        verify_tree(tree)


def test_added_file_is_extra(tree):
    (tree / "a" / "new.txt").write_text("new")
    assert _problems(tree) == [("a/new.txt", "extra")]


def test_removed_file_is_missing(tree):
    (tree / "two.txt").unlink()
    assert _problems(tree) == [("two.txt", "missing")]


def test_renamed_file_is_missing_and_extra_with_a_hint(tree):
    (tree / "two.txt").rename(tree / "a" / "two.txt")
    assert _problems(tree) == [("a/two.txt", "extra"), ("two.txt", "missing")]
    with pytest.raises(ManifestError, match="same content as the missing two.txt: renamed"):
        verify_tree(tree)


def test_symlink_out_of_the_tree_is_named(tree, tmp_path):
    (tmp_path / "secret").write_text("s")
    (tree / "a" / "escape").symlink_to(tmp_path / "secret")
    (tree / "a" / "up").symlink_to("../../secret")
    assert _problems(tree) == [("a/escape", "symlink"), ("a/up", "symlink")]
    with pytest.raises(ManifestError, match=r"a/up: symlink to '\.\./\.\./secret', outside the tree"):
        verify_tree(tree)


def test_symlink_inside_the_tree_is_refused_too(tree):
    (tree / "alias.txt").symlink_to("two.txt")
    with pytest.raises(ManifestError, match="alias.txt: symlink to 'two.txt'; a tree holds regular files only"):
        verify_tree(tree)


def test_symlinked_folder_is_not_followed(tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "one.txt").write_text("one")
    shutil.rmtree(tree / "a")
    (tree / "a").symlink_to(outside)
    problems = _problems(tree)
    assert ("a", "symlink") in problems
    assert ("a/one.txt", "missing") in problems  # never hashed through the link


def test_fifo_is_refused(tree):
    os.mkfifo(tree / "pipe")
    assert _problems(tree) == [("pipe", "special")]


def test_root_hash_that_does_not_match_the_files_is_an_error(tree):
    manifest = _manifest(tree)
    manifest["root_sha256"] = "0" * 64
    (tree / "manifest.json").write_text(json.dumps(manifest))
    assert _problems(tree) == [("manifest.json", "root")]


def test_consistently_edited_manifest_still_fails_on_the_file(tree):
    # Rewriting one hash and the root hash together passes the root check, not the file check.
    (tree / "two.txt").write_text("TWO")
    manifest = _manifest(tree)
    manifest["files"]["two.txt"] = "f" * 64
    from benchpipe.package.manifest import root_sha256

    manifest["root_sha256"] = root_sha256(manifest["files"])
    (tree / "manifest.json").write_text(json.dumps(manifest))
    assert _problems(tree) == [("two.txt", "modified")]


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "a/./one.txt", "a\\b"])
def test_manifest_paths_outside_the_tree_are_refused(tree, path):
    manifest = _manifest(tree)
    manifest["files"][path] = "0" * 64
    (tree / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="listed path"):
        verify_tree(tree)


def test_write_refuses_a_tree_with_links(tmp_path):
    (tmp_path / "x").write_text("x")
    (tmp_path / "y").symlink_to("/etc/hostname")
    with pytest.raises(ManifestError, match="y: symlink to '/etc/hostname', outside the tree"):
        write_manifest(tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_format_1_still_verifies(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "sub" / "manifest.json").write_text("{}")  # format 1 skipped these
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": "benchpipe-manifest/1", "files": {"x.txt": hashlib.sha256(b"x").hexdigest()}}))
    verified = verify_tree(tmp_path)
    assert (verified.format, verified.files, verified.root_sha256) == ("benchpipe-manifest/1", 1, None)
    (tmp_path / "x.txt").write_text("y")
    with pytest.raises(ManifestError, match="x.txt: modified"):
        verify_tree(tmp_path)


def test_unknown_format_and_no_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json: missing"):
        verify_tree(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other/9", "files": {}}')
    with pytest.raises(ManifestError, match="format 'other/9'"):
        verify_tree(tmp_path)


def test_parallel_hashes_equal_one_by_one(tmp_path):
    paths = []
    for i, size in enumerate([0, 1, 4095, 1 << 20, (1 << 20) + 7, 3 << 20]):
        path = tmp_path / f"f{i}"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    expected = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert sha256_files(paths, workers=3) == expected == [sha256_file(p) for p in paths]
    assert sha256_files(paths, workers=1) == expected


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    return subprocess.run([sys.executable, "-m", "benchpipe.cli", *args], env=env, capture_output=True, text=True)


def test_cli_verify_prints_the_root_hash(tree):
    done = _cli("verify", str(tree))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tree}: 4 files match manifest.json; root sha256 {_manifest(tree)['root_sha256']}\n"


def test_cli_verify_tampered_tree_is_one_line_and_non_zero(tree):
    (tree / "a" / "one.txt").write_text("ONE")
    done = _cli("verify", str(tree))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("benchpipe verify: error: ") and "a/one.txt: modified" in done.stderr
