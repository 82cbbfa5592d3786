"""Dataset archives are unpacked only when every member stays inside the target."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from benchpipe.datasets.archive import extract_archive, is_archive
from benchpipe.errors import DatasetError


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_good_tar_unpacks_with_inner_links(tmp_path):
    archive = _tar(tmp_path / "good.tar.gz", [
        _special("data", tarfile.DIRTYPE), _file("data/train.csv", b"1,2\n"),
        _special("data/latest.csv", tarfile.SYMTYPE, "train.csv"),
        _special("data/copy.csv", tarfile.LNKTYPE, "data/train.csv"),
    ])
    names = extract_archive(archive, tmp_path / "out")
    assert names == ["data", "data/copy.csv", "data/latest.csv", "data/train.csv"]
    assert (tmp_path / "out" / "data" / "latest.csv").read_bytes() == b"1,2\n"
    assert (tmp_path / "out" / "data" / "copy.csv").read_bytes() == b"1,2\n"


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("../evil.txt"), "member '../evil.txt' would land outside the target"),
        (_file("ok/../../evil.txt"), "member 'ok/../../evil.txt' would land outside the target"),
        (_file("/etc/evil.txt"), "member '/etc/evil.txt' has an absolute path"),
        (_special("up", tarfile.SYMTYPE, "../../etc"), "member 'up' links outside the target ('../../etc')"),
        (_special("abs", tarfile.SYMTYPE, "/etc/passwd"), "member 'abs' links to the absolute path '/etc/passwd'"),
        (_special("hard", tarfile.LNKTYPE, "../secret"), "member 'hard' links outside the target"),
        (_special("tty", tarfile.CHRTYPE), "member 'tty' is a device"),
        (_special("disk", tarfile.BLKTYPE), "member 'disk' is a device"),
        (_special("pipe", tarfile.FIFOTYPE), "member 'pipe' is a FIFO"),
    ],
)
def test_bad_tar_member_is_named_and_nothing_is_written(tmp_path, member, message):
    archive = _tar(tmp_path / "bad.tar", [_file("fine.txt"), member], mode="w")
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
