"""Dataset archives are unpacked only when every member stays inside the target."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest
from tar_members import add_members, file_member, special_member

from benchpipe.contracts.errors import DatasetError
from benchpipe.datasets.archive import extract_archive, is_archive


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        add_members(tar, members)
    return path


def test_good_tar_unpacks_with_inner_links(tmp_path):
    archive = _tar(tmp_path / "good.tar.gz", [
        special_member("data", tarfile.DIRTYPE), file_member("data/train.csv", b"1,2\n"),
        special_member("data/latest.csv", tarfile.SYMTYPE, "train.csv"),
        special_member("data/copy.csv", tarfile.LNKTYPE, "data/train.csv"),
    ])
    names = extract_archive(archive, tmp_path / "out")
    assert names == ["data", "data/copy.csv", "data/latest.csv", "data/train.csv"]
    assert (tmp_path / "out" / "data" / "latest.csv").read_bytes() == b"1,2\n"
    assert (tmp_path / "out" / "data" / "copy.csv").read_bytes() == b"1,2\n"


@pytest.mark.parametrize(
    "member, message",
    [
        (file_member("../evil.txt"), "member '../evil.txt' would land outside the target"),
        (file_member("ok/../../evil.txt"), "member 'ok/../../evil.txt' would land outside the target"),
        (file_member("/etc/evil.txt"), "member '/etc/evil.txt' has an absolute path"),
        (special_member("up", tarfile.SYMTYPE, "../../etc"), "member 'up' links outside the target ('../../etc')"),
        (special_member("abs", tarfile.SYMTYPE, "/etc/passwd"), "member 'abs' links to the absolute path '/etc/passwd'"),
        (special_member("hard", tarfile.LNKTYPE, "../secret"), "member 'hard' links outside the target"),
        (special_member("tty", tarfile.CHRTYPE), "member 'tty' is a device"),
        (special_member("disk", tarfile.BLKTYPE), "member 'disk' is a device"),
        (special_member("pipe", tarfile.FIFOTYPE), "member 'pipe' is a FIFO"),
    ],
)
def test_bad_tar_member_is_named_and_nothing_is_written(tmp_path, member, message):
    archive = _tar(tmp_path / "bad.tar", [file_member("fine.txt"), member], mode="w")
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar"]


def test_zip_unpacks_and_refuses_escapes_and_links(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("labels/train.txt", "0\n1\n")
    assert extract_archive(good, tmp_path / "out") == ["labels/train.txt"]
    assert (tmp_path / "out" / "labels" / "train.txt").read_text() == "0\n1\n"

    for name, message in (("../evil.txt", "would land outside"), ("/abs.txt", "absolute path")):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr(name, "x")
        with pytest.raises(DatasetError, match=f"member '{name}' .*{message}"):
            extract_archive(bad, tmp_path / "bad-out")

    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("passwd")
        info.external_attr = (0o120777 << 16)  # a symlink, as Info-ZIP stores one
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="member 'passwd' is not a regular file"):
        extract_archive(link, tmp_path / "bad-out")
    assert not (tmp_path / "bad-out").exists()


def test_corrupt_archive_is_one_clear_error(tmp_path):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match="broken.tar.gz: not a readable .tar.gz"):
        extract_archive(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archive_names():
    assert all(is_archive(n) for n in ("a.tar", "a.tar.gz", "a.tgz", "a.zip"))
    assert not is_archive("a.csv")
