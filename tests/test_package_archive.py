"""Submission archives: the same tree packs to the same bytes under one top-level folder, and a
hostile archive unpacks to nothing."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard
from tar_members import add_members, file_member, special_member

from benchpipe.contracts.errors import ArchiveError, ManifestError
from benchpipe.package.archive import pack, unpack
from benchpipe.package.manifest import verify_tree, write_manifest

REPO = Path(__file__).resolve().parents[1]


def _make_tree(root: Path, *, file_mode: int, dir_mode: int, mtime: int) -> Path:
    (root / "code" / "lib").mkdir(parents=True)
    (root / "code" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "code" / "lib" / "mod.py").write_text("X = 1\n")
    (root / "results" / "ünï").mkdir(parents=True)
    (root / "results" / "ünï" / "log.txt").write_bytes(os.urandom(200_000))
    (root / "results" / ("long-" + "x" * 120 + ".json")).write_text("{}")  # needs a pax path record
    (root / "empty").mkdir()
    write_manifest(root)
    for path in root.rglob("*"):
        if path.is_dir():
            path.chmod(dir_mode)
        else:
            path.chmod(0o755 if path.name == "run.sh" else file_mode)
        os.utime(path, (mtime, mtime))
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return _make_tree(tmp_path / "tree", file_mode=0o644, dir_mode=0o755, mtime=1_700_000_000)


def test_same_tree_packs_to_identical_bytes(tmp_path, tree):
    # A copy elsewhere, in a folder of the same name, with other permissions and times, written in another order.
    other = _make_tree(tmp_path / "elsewhere" / "tree", file_mode=0o600, dir_mode=0o700, mtime=1_000)
    shutil.copyfile(tree / "results" / "ünï" / "log.txt", other / "results" / "ünï" / "log.txt")
    write_manifest(other)
    first, second = pack(tree, tmp_path / "a.tar.zst"), pack(other, tmp_path / "b.tar.zst")
    assert first.sha256 == second.sha256
    assert (tmp_path / "a.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()
    assert first.verified.root_sha256 == verify_tree(tree).root_sha256


def test_archive_members_are_normalised_and_sorted(tmp_path, tree):
    pack(tree, tmp_path / "x.tar.zst")
    raw = zstandard.ZstdDecompressor().stream_reader(open(tmp_path / "x.tar.zst", "rb")).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    # One top-level folder, named after the tree's: a plain `tar -x` writes nothing beside it.
    assert names[0] == "tree" and members[0].isdir() and all(n.startswith("tree/") for n in names[1:])
    assert names == sorted(names) and "tree/empty" not in names and names[1] == "tree/code"
    assert {"tree/manifest.json", "tree/code/run.sh", "tree/results/ünï/log.txt"} <= set(names)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.isdir() or m.isreg()
        assert m.mode == (0o755 if m.isdir() or m.name == "tree/code/run.sh" else 0o644)
        assert not any(k in m.pax_headers for k in ("mtime", "atime", "ctime"))


def test_unpack_roundtrip_verifies(tmp_path, tree):
    packed = pack(tree, tmp_path / "x.tar.zst")
    verified = unpack(tmp_path / "x.tar.zst", tmp_path / "out")
    assert verified.root_sha256 == packed.verified.root_sha256 and verified.files == 4
    assert (tmp_path / "out" / "code" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "code" / "lib" / "mod.py").read_text() == "X = 1\n"
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def _decompressed(archive: Path) -> bytes:
    with open(archive, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def test_another_folder_name_is_another_top_folder(tmp_path, tree):
    other = tmp_path / "renamed"
    shutil.copytree(tree, other)
    pack(tree, tmp_path / "a.tar.zst")
    pack(other, tmp_path / "b.tar.zst")
    with tarfile.open(fileobj=io.BytesIO(_decompressed(tmp_path / "b.tar.zst"))) as tar:
        assert {name.split("/")[0] for name in tar.getnames()} == {"renamed"}
    assert (tmp_path / "a.tar.zst").read_bytes() != (tmp_path / "b.tar.zst").read_bytes()


def test_plain_tar_extraction_writes_one_folder(tmp_path, tree):
    pack(tree, tmp_path / "x.tar.zst")
    here = tmp_path / "cwd"
    here.mkdir()
    subprocess.run(["tar", "-x"], input=_decompressed(tmp_path / "x.tar.zst"), cwd=here, check=True)
    assert [p.name for p in here.iterdir()] == ["tree"]
    assert verify_tree(here / "tree").root_sha256 == verify_tree(tree).root_sha256


def test_unpack_lifts_a_top_folder_holding_an_entry_of_its_own_name(tmp_path):
    # The tree's folder is "code", and the tree holds code/: moving code/code/ up must not collide.
    tree = _make_tree(tmp_path / "code", file_mode=0o644, dir_mode=0o755, mtime=0)
    packed = pack(tree, tmp_path / "x.tar.zst")
    verified = unpack(tmp_path / "x.tar.zst", tmp_path / "out")
    assert verified.root_sha256 == packed.verified.root_sha256
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["code", "manifest.json", "results"]


def test_unpack_accepts_an_archive_without_a_top_folder(tmp_path, tree):
    # As benchpipe packed before archives had a top-level folder: manifest.json at the top.
    members = []
    with tarfile.open(fileobj=io.BytesIO(_decompressed(pack(tree, tmp_path / "x.tar.zst").archive))) as tar:
        for m in tar.getmembers()[1:]:
            data = tar.extractfile(m).read() if m.isreg() else None
            m.name, m.pax_headers = m.name.removeprefix("tree/"), {}  # a pax path record would keep the old name
            members.append((m, data))
    archive = _hostile(tmp_path / "old.tar.zst", members)
    verified = unpack(archive, tmp_path / "out")
    assert verified.root_sha256 == verify_tree(tree).root_sha256
    assert (tmp_path / "out" / "code" / "run.sh").is_file()


def test_unpack_refuses_two_top_folders(tmp_path, tree):
    members = []
    with tarfile.open(fileobj=io.BytesIO(_decompressed(pack(tree, tmp_path / "x.tar.zst").archive))) as tar:
        for m in tar.getmembers():
            members.append((m, tar.extractfile(m).read() if m.isreg() else None))
    archive = _hostile(tmp_path / "two.tar.zst", [*members, file_member("stray/x.txt", b"beside")])
    with pytest.raises(ArchiveError, match="expected one top-level folder holding manifest.json.*found stray, tree"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))


def test_pack_refuses_a_tree_that_does_not_verify(tmp_path, tree):
    (tree / "code" / "lib" / "mod.py").write_text("X = 2\n")
    with pytest.raises(ManifestError, match="code/lib/mod.py: modified"):
        pack(tree, tmp_path / "x.tar.zst")
    assert list(tmp_path.glob("*.tar.zst")) == [] and list(tmp_path.glob(".x.tar.zst.partial*")) == []


def test_pack_refuses_to_write_inside_the_tree(tree):
    with pytest.raises(ArchiveError, match="inside the tree"):
        pack(tree, tree / "x.tar.zst")


def test_unpack_refuses_an_existing_target(tmp_path, tree):
    pack(tree, tmp_path / "x.tar.zst")
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match="already exists"):
        unpack(tmp_path / "x.tar.zst", tmp_path / "out")


def _hostile(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_members(tar, members)
    path.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    return path


@pytest.mark.parametrize(
    "member, message",
    [
        (file_member("../evil.txt"), "member '../evil.txt' would land outside the target"),
        (file_member("ok/../../evil.txt"), "member 'ok/../../evil.txt' would land outside the target"),
        (file_member("/etc/evil.txt"), "member '/etc/evil.txt' has an absolute path"),
        (special_member("up", tarfile.SYMTYPE, "../../etc"), "member 'up' is a symbolic link"),
        (special_member("in", tarfile.SYMTYPE, "ok.txt"), "member 'in' is a symbolic link"),
        (special_member("hard", tarfile.LNKTYPE, "ok.txt"), "member 'hard' is a hard link"),
        (special_member("tty", tarfile.CHRTYPE), "member 'tty' is a device"),
        (special_member("disk", tarfile.BLKTYPE), "member 'disk' is a device"),
        (special_member("pipe", tarfile.FIFOTYPE), "member 'pipe' is a FIFO"),
        (file_member("ok.txt", b"again"), "member 'ok.txt' appears twice"),
    ],
)
def test_unpack_refuses_hostile_members_and_leaves_nothing(tmp_path, member, message):
    archive = _hostile(tmp_path / "bad.tar.zst", [file_member("ok.txt", b"fine"), member])
    with pytest.raises(ArchiveError, match=message.replace(".", r"\.").replace("(", r"\(")):
        unpack(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.zst"]
    assert not (tmp_path.parent / "evil.txt").exists()


def test_unpack_refuses_a_tree_whose_manifest_does_not_verify(tmp_path, tree):
    pack(tree, tmp_path / "x.tar.zst")
    raw = zstandard.ZstdDecompressor().stream_reader(open(tmp_path / "x.tar.zst", "rb")).read()
    members = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read() if m.isreg() else None
            if m.name == "tree/code/lib/mod.py":
                data = b"X = 666\n"  # tampered after packing
            members.append((m, data))
    archive = _hostile(tmp_path / "tampered.tar.zst", members)
    with pytest.raises(ArchiveError, match="does not match its manifest: .*code/lib/mod.py: modified"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))


def test_unpack_refuses_a_corrupt_archive(tmp_path):
    (tmp_path / "junk.tar.zst").write_bytes(b"not zstd at all")
    with pytest.raises(ArchiveError, match="not a readable tar.zst"):
        unpack(tmp_path / "junk.tar.zst", tmp_path / "out")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    return subprocess.run([sys.executable, "-m", "benchpipe.cli", *args], env=env, capture_output=True, text=True)


def test_cli_pack_and_unpack(tmp_path, tree):
    root = verify_tree(tree).root_sha256
    done = _cli("pack", str(tree), "-o", str(tmp_path / "x.tar.zst"))
    assert done.returncode == 0, done.stderr
    assert f"root sha256 {root}" in done.stdout
    done = _cli("unpack", str(tmp_path / "x.tar.zst"), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'out'}: 4 files unpacked") and root in done.stdout
    done = _cli("unpack", str(tmp_path / "x.tar.zst"), "-o", str(tmp_path / "out"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "already exists" in done.stderr
