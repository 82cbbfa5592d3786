"""The hash lock and the wheelhouse an image is built from: nothing unverified goes in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.runtime.images import ImageRecord, read_lock, verify_wheelhouse

REPO = Path(__file__).resolve().parents[1]


def _wheel(folder: Path, name: str, content: bytes) -> str:
    (folder / name).write_bytes(content)
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def house(tmp_path) -> tuple[Path, Path]:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    a = _wheel(wheels, "absl_py-2.5.1-py3-none-any.whl", b"absl")
    b = _wheel(wheels, "PyYAML-6.0.4-cp311-cp311-manylinux_2_17_x86_64.whl", b"yaml")
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# generated\n"
        f"absl-py==2.5.1 \\\n    --hash=sha256:{'0' * 64} \\\n    --hash=sha256:{a}\n"
        "    # via tensorflow\n"
        f"pyyaml==6.0.4 ; python_version >= '3.8' \\\n    --hash=sha256:{b}\n"
    )
    return lock, wheels


def test_lock_entries_with_their_hashes(house):
    lock, _ = house
    entries = read_lock(lock)
    assert [(e.name, e.version, len(e.hashes)) for e in entries] == [("absl-py", "2.5.1", 2), ("pyyaml", "6.0.4", 1)]


def test_pin_without_hash_is_refused(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("absl-py==2.5.1\n")
    with pytest.raises(RuntimeSetupError, match=r"requirements.lock:1: absl-py==2.5.1 has no --hash"):
        read_lock(lock)


def test_wheelhouse_matches_lock(house):
    lock, wheels = house
    hashes = verify_wheelhouse(lock, wheels)
    assert set(hashes) == {"absl_py-2.5.1-py3-none-any.whl", "PyYAML-6.0.4-cp311-cp311-manylinux_2_17_x86_64.whl"}


def test_tampered_wheel_is_named(house):
    lock, wheels = house
    (wheels / "absl_py-2.5.1-py3-none-any.whl").write_bytes(b"evil")
    with pytest.raises(RuntimeSetupError, match=r"absl_py-2.5.1-py3-none-any.whl: sha256 .* is not one that"):
        verify_wheelhouse(lock, wheels)


def test_missing_and_extra_wheels_are_named(house):
    lock, wheels = house
    (wheels / "absl_py-2.5.1-py3-none-any.whl").unlink()
    with pytest.raises(RuntimeSetupError, match=r"0 wheels for absl-py==2.5.1"):
        verify_wheelhouse(lock, wheels)
    _wheel(wheels, "absl_py-2.5.1-py3-none-any.whl", b"absl")
    _wheel(wheels, "six-1.17.0-py2.py3-none-any.whl", b"six")
    with pytest.raises(RuntimeSetupError, match=r"wheels not in .*: six-1.17.0"):
        verify_wheelhouse(lock, wheels)


def test_record_round_trip_and_clear_errors(tmp_path):
    record = ImageRecord(
        engine="docker", image="tensorflow-cpu", tag="benchpipe/tensorflow-cpu:abc", image_id="sha256:1",
        digest="sha256:1", base_image="benchpipe/debian:bookworm", base_image_id="sha256:2",
        lock_sha256="3", wheels={"a.whl": "4"}, built_at="2026-11-28T00:00:00Z",
    )
    record.write(tmp_path / "r.json")
    assert ImageRecord.read(tmp_path / "r.json") == record
    with pytest.raises(RuntimeSetupError, match="no image record"):
        ImageRecord.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(RuntimeSetupError, match="bad.json: not an image record"):
        ImageRecord.read(tmp_path / "bad.json")


@pytest.mark.parametrize("image", ["tensorflow-cpu", "tensorflow-cuda"])
def test_shipped_image_locks_are_fully_hashed(image):
    lock = REPO / "containers" / image / "requirements.lock"
    if not lock.exists():
        pytest.fail(f"{lock} is missing")
    names = {e.name.lower() for e in read_lock(lock)}
    assert "mlcommons-loadgen" in names and "mlperf-logging" in names
    assert ("tensorflow-cpu" if image == "tensorflow-cpu" else "tensorflow") in names
    assert "snakemake" not in names  # the workflow engine stays on the host


@pytest.mark.engine
def test_a_sif_is_converted_from_podmans_image_where_docker_does_not_answer(tmp_path, monkeypatch):
    import json
    import tarfile

    from engines import BASE_IMAGE, require_engine

    from benchpipe.runtime import for_engine
    from benchpipe.runtime.launch import sif_source_engine

    require_engine("podman")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")  # a login node without Docker
    assert sif_source_engine() == "podman"
    # What apptainer build docker-archive:// reads: a docker-archive whose config is the image.
    podman = for_engine("podman")
    archive = tmp_path / "base.tar"
    podman.save(BASE_IMAGE, archive)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = tar.extractfile(manifest[0]["Config"]).read()
    assert f"sha256:{hashlib.sha256(config).hexdigest()}" == podman.image_id(BASE_IMAGE)

    monkeypatch.setenv("PATH", str(tmp_path))  # and no podman either
    with pytest.raises(RuntimeSetupError, match="converted from a docker or podman image, and neither answers"):
        sif_source_engine()
