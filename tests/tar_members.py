"""Hand-built tar members for the unpacking tests (datasets' archives, submission archives)."""

from __future__ import annotations

import io
import tarfile


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special_member(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def add_members(tar: tarfile.TarFile, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    for info, data in members:
        if data is not None:
            info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data is not None else None)
