"""Offline bundles: pack verified sources on a connected machine, import them all-or-nothing."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from http_server import PAYLOAD, PAYLOAD_SHA

from benchpipe.contracts import registry
from benchpipe.contracts.errors import DatasetError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.datasets.bundle import MANIFEST, bundle, import_bundle

DIGITS = registry.get("digits").sources[0]


def two_sources(served) -> dict:
    return {"digits": (DIGITS,), "served": (served.source("data.bin"),)}


def cache_listing(cache: Path) -> dict[str, str]:
    """Every file under the cache (temporaries included) with its sha256."""
    if not cache.exists():
        return {}
    return {str(p.relative_to(cache)): sha256_file(p) for p in sorted(cache.rglob("*")) if p.is_file()}


def bundle_members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        stream = tar.extractfile(name)
        assert stream is not None
        return stream.read()


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def rebuilt(original: Path, out: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]], keep=lambda m: True) -> Path:
    """A copy of ``original`` (members ``keep`` selects), then the ``extra`` members appended."""
    with tarfile.open(original) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            if keep(member):
                dst.addfile(member, src.extractfile(member))
        for info, data in extra:
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["benchpipe", *args], env=env, capture_output=True, text=True, timeout=300)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if " error: " in line]


# --- bundle ------------------------------------------------------------------------------


def test_bundle_of_digits_and_a_served_source(tmp_path, served):
    cache = tmp_path / "cache"
    out = tmp_path / "datasets.tar"
    entries = bundle(two_sources(served), out, cache_dir=cache)

    assert served.state.requests == 1  # fetched into the cache, then bundled from it
    members = bundle_members(out)
    hashes = sorted([DIGITS.sha256, PAYLOAD_SHA])
    assert [m.name for m in members] == [MANIFEST, *(f"sha256/{h}" for h in hashes)]
    assert all(m.isreg() and m.mtime == 0 and m.uid == m.gid == 0 and m.mode == 0o644 for m in members)

    manifest = json.loads(read_member(out, MANIFEST))
    assert manifest["format"] == "benchpipe-datasets-bundle" and manifest["version"] == 1
    assert manifest["entries"] == [
        {"benchmark": "digits", "source": "digits.csv.gz", "sha256": DIGITS.sha256,
         "size": (cache / "sha256" / DIGITS.sha256).stat().st_size, "urls": [DIGITS.url]},
        {"benchmark": "served", "source": "data.bin", "sha256": PAYLOAD_SHA, "size": len(PAYLOAD), "urls": [served.url]},
    ]
    assert [e.sha256 for e in entries] == [DIGITS.sha256, PAYLOAD_SHA]
    assert read_member(out, f"sha256/{PAYLOAD_SHA}") == PAYLOAD
    assert read_member(out, f"sha256/{DIGITS.sha256}") == (cache / "sha256" / DIGITS.sha256).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "datasets.tar"]

    # Same sources, same bytes: a bundle can itself be checksummed and compared.
    again = tmp_path / "again.tar"
    bundle(two_sources(served), again, cache_dir=cache)
    assert again.read_bytes() == out.read_bytes()
    assert served.state.requests == 1


def test_content_shared_by_two_sources_is_bundled_once(tmp_path, served):
    sources = {"a": (served.source("one.bin"),), "b": (served.source("two.bin"),)}
    out = tmp_path / "b.tar"
    entries = bundle(sources, out, cache_dir=tmp_path / "cache")
    assert [(e.benchmark, e.source) for e in entries] == [("a", "one.bin"), ("b", "two.bin")]
    assert [m.name for m in bundle_members(out)] == [MANIFEST, f"sha256/{PAYLOAD_SHA}"]


def test_failed_bundle_leaves_the_previous_file_alone(tmp_path, served):
    served.state.default = "404"
    out = tmp_path / "datasets.tar"
    out.write_bytes(b"an earlier bundle")
    with pytest.raises(DatasetError, match="HTTP 404"):
        bundle({"digits": (DIGITS,), "served": (served.source(),)}, out, cache_dir=tmp_path / "cache")
    assert out.read_bytes() == b"an earlier bundle"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "datasets.tar"]


def test_bundle_cli_with_sources_json(tmp_path, served, cli_env):
    overrides = {"digits": {"digits.csv.gz": {"urls": [served.url], "sha256": PAYLOAD_SHA}}}
    out = tmp_path / "x.tar"
    proc = cli(cli_env, "datasets", "bundle", "--benchmarks", "digits", "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--sources-json", json.dumps(overrides))
    assert proc.returncode == 0, proc.stderr
    assert served.state.requests == 1
    assert f"{out}: 1 sources of digits in 1 files, {len(PAYLOAD)} bytes" in proc.stdout
    (entry,) = json.loads(read_member(out, MANIFEST))["entries"]
    assert entry["sha256"] == PAYLOAD_SHA and entry["urls"] == [served.url]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--benchmarks", "nope"], "unknown benchmark 'nope'"),
        (["--benchmarks", "digits", "--sources-json", "{"], "--sources-json: not valid JSON"),
        (["--benchmarks", "digits", "--sources-json", '{"other": {}}'], "--sources-json: 'other' is not among the benchmarks digits"),
        (["--benchmarks", "digits", "--sources-json", '{"digits": {"digits.csv.gz": {}}}'],
         "digits.digits.csv.gz.urls"),
        (["--benchmarks", "digits", "--sources-json", '{"digits": {"x.gz": {"urls": ["http://h/x"]}}}'],
         "no source named 'x.gz'"),
    ],
)
def test_bundle_cli_errors_are_one_line(tmp_path, cli_env, args, expected):
    out = tmp_path / "x.tar"
    proc = cli(cli_env, "datasets", "bundle", *args, "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 1
    (line,) = error_lines(proc)
    assert line.startswith("benchpipe datasets: error: ") and expected in line
    assert not out.exists()


# --- import ------------------------------------------------------------------------------


@pytest.fixture
def bundled(tmp_path, served) -> tuple[Path, Path]:
    """A bundle of digits and the served file, and the cache it was made from."""
    cache = tmp_path / "origin"
    out = tmp_path / "datasets.tar"
    bundle(two_sources(served), out, cache_dir=cache)
    return out, cache


def test_import_into_an_empty_cache(tmp_path, bundled):
    out, origin = bundled
    cache = tmp_path / "offline"
    report = import_bundle(out, cache_dir=cache)

    assert sorted(e.sha256 for e in report.added) == sorted([DIGITS.sha256, PAYLOAD_SHA])
    assert report.present == ()
    assert cache_listing(cache) == cache_listing(origin)  # no temporaries left either
    for entry in report.added:
        path = cache / "sha256" / entry.sha256
        assert path.read_bytes() == (origin / "sha256" / entry.sha256).read_bytes()
        assert path.stat().st_mode & 0o777 == 0o644


def test_bundle_unpacked_and_repacked_with_tar_gzip_imports(tmp_path, bundled):
    out, origin = bundled
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(out), "-C", str(unpacked)], check=True)
    repacked = tmp_path / "repacked.tar.gz"
    # tar adds a member for the sha256/ directory itself, which import accepts.
    subprocess.run(["tar", "-czf", str(repacked), "-C", str(unpacked), MANIFEST, "sha256"], check=True)
    cache = tmp_path / "offline"
    report = import_bundle(repacked, cache_dir=cache)
    assert len(report.added) == 2
    assert cache_listing(cache) == cache_listing(origin)


def test_reimport_adds_nothing_and_leaves_entries_alone(tmp_path, bundled):
    out, _ = bundled
    cache = tmp_path / "offline"
    import_bundle(out, cache_dir=cache)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache / "sha256").iterdir()}

    report = import_bundle(out, cache_dir=cache)
    assert report.added == ()
    assert sorted(e.sha256 for e in report.present) == sorted([DIGITS.sha256, PAYLOAD_SHA])
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache / "sha256").iterdir()} == before


def test_import_adds_only_what_is_missing(tmp_path, bundled):
    out, origin = bundled
    cache = tmp_path / "offline"
    (cache / "sha256").mkdir(parents=True)
    (cache / "sha256" / PAYLOAD_SHA).write_bytes(PAYLOAD)
    report = import_bundle(out, cache_dir=cache)
    assert [e.sha256 for e in report.added] == [DIGITS.sha256]
    assert [e.sha256 for e in report.present] == [PAYLOAD_SHA]
    assert cache_listing(cache) == cache_listing(origin)


def test_tampered_member_fails_and_adds_nothing(tmp_path, bundled, cli_env):
    out, _ = bundled
    # The last member: the one before it has already been checked and staged when this fails.
    last = bundle_members(out)[-1]
    flip_byte(out, last.offset_data + 100)
    cache = tmp_path / "offline"

    with pytest.raises(DatasetError) as error:
        import_bundle(out, cache_dir=cache)
    message = str(error.value)
    corrupt = hashlib.sha256(read_member(out, last.name)).hexdigest()
    assert f"member '{last.name}' is corrupt" in message
    assert f"say sha256 {last.name.removeprefix('sha256/')}" in message and f"has sha256 {corrupt}" in message
    assert cache_listing(cache) == {}

    proc = cli(cli_env, "datasets", "import", str(out), "--cache-dir", str(cache))
    assert proc.returncode == 1
    (line,) = error_lines(proc)
    assert line.startswith("benchpipe datasets: error: ") and last.name in line
    assert cache_listing(cache) == {}


def test_damaged_header_is_caught_by_the_manifest(tmp_path, bundled):
    out, _ = bundled
    last = bundle_members(out)[-1]
    flip_byte(out, last.offset + 10)  # inside the member's name: its header checksum fails
    cache = tmp_path / "offline"
    with pytest.raises(DatasetError, match=f"lists {last.name} but the bundle has no such member"):
        import_bundle(out, cache_dir=cache)
    assert cache_listing(cache) == {}


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def _hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


def _device(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info, None


def _directory(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


UNLISTED = "0" * 64


@pytest.mark.parametrize(
    "extra, name, reason",
    [
        (file_info("../evil", b"x"), "../evil", "is not manifest.json or sha256/<64 hex digits>"),
        (file_info("/etc/evil", b"x"), "/etc/evil", "is not manifest.json or sha256/<64 hex digits>"),
        (file_info(f"sha256/{PAYLOAD_SHA}/../../evil", b"x"), f"sha256/{PAYLOAD_SHA}/../../evil", "is not manifest.json"),
        (_symlink(f"sha256/{PAYLOAD_SHA}", "/etc/passwd"), f"sha256/{PAYLOAD_SHA}", "is not a regular file"),
        (_hardlink(f"sha256/{PAYLOAD_SHA}", f"sha256/{DIGITS.sha256}"), f"sha256/{PAYLOAD_SHA}", "is not a regular file"),
        (_device(f"sha256/{PAYLOAD_SHA}"), f"sha256/{PAYLOAD_SHA}", "is not a regular file"),
        (_directory("sha256/sub"), "sha256/sub", "is not manifest.json"),
        (file_info(f"sha256/{UNLISTED}", b"x"), f"sha256/{UNLISTED}", "is not listed in manifest.json"),
        (file_info(MANIFEST, b"{}"), MANIFEST, "appears twice"),
    ],
    # Named, not numbered by their random payload's hash: every test process collects the same ids.
    ids=["parent", "absolute", "escape", "symlink", "hardlink", "device", "directory", "unlisted", "twice"],
)
def test_unsafe_or_unlisted_members_are_refused_by_name(tmp_path, bundled, extra, name, reason):
    out, _ = bundled
    # The served file is left out and the evil member takes its place at the end.
    evil = rebuilt(out, tmp_path / "evil.tar", [extra], keep=lambda m: m.name != f"sha256/{PAYLOAD_SHA}")
    cache = tmp_path / "offline"
    with pytest.raises(DatasetError) as error:
        import_bundle(evil, cache_dir=cache)
    assert f"member {name!r} {reason}" in str(error.value)
    assert cache_listing(cache) == {}
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_duplicate_member_is_refused(tmp_path, bundled):
    out, _ = bundled
    dup = rebuilt(out, tmp_path / "dup.tar", [file_info(f"sha256/{PAYLOAD_SHA}", PAYLOAD)])
    with pytest.raises(DatasetError, match="appears twice"):
        import_bundle(dup, cache_dir=tmp_path / "offline")
    assert cache_listing(tmp_path / "offline") == {}


def test_manifest_must_come_first(tmp_path, bundled):
    out, _ = bundled
    with tarfile.open(out) as src, tarfile.open(tmp_path / "late.tar", "w") as dst:
        members = src.getmembers()
        for member in [*members[1:], members[0]]:
            dst.addfile(member, src.extractfile(member))
    with pytest.raises(DatasetError, match=f"first member must be manifest.json, found 'sha256/"):
        import_bundle(tmp_path / "late.tar", cache_dir=tmp_path / "offline")
    assert cache_listing(tmp_path / "offline") == {}


def test_member_missing_from_the_bundle(tmp_path, bundled):
    out, _ = bundled
    short = rebuilt(out, tmp_path / "short.tar", [], keep=lambda m: m.name != f"sha256/{PAYLOAD_SHA}")
    with pytest.raises(DatasetError, match=f"lists sha256/{PAYLOAD_SHA} but the bundle has no such member"):
        import_bundle(short, cache_dir=tmp_path / "offline")
    assert cache_listing(tmp_path / "offline") == {}


@pytest.mark.parametrize(
    "manifest, expected",
    [
        (b"not json", "manifest.json is not valid JSON"),
        (json.dumps({"format": "other", "version": 1, "entries": []}).encode(), "not a benchpipe datasets bundle"),
        (json.dumps({"format": "benchpipe-datasets-bundle", "version": 9, "entries": []}).encode(), "version 9"),
        (json.dumps({"format": "benchpipe-datasets-bundle", "version": 1,
                     "entries": [{"benchmark": "a", "source": "b", "sha256": "xyz", "size": 1, "urls": []}]}).encode(),
         "entries[0]: key 'sha256'"),
    ],
)
def test_bad_manifest_is_refused(tmp_path, manifest, expected):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        info, data = file_info(MANIFEST, manifest)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        import_bundle(path, cache_dir=tmp_path / "offline")


def test_not_a_tar(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"hello" * 200)
    with pytest.raises(DatasetError, match="not a readable tar"):
        import_bundle(path, cache_dir=tmp_path / "offline")


# --- the workflow, air-gapped --------------------------------------------------------------


def test_offline_workflow_runs_after_importing_a_bundle(repo_root, tmp_path, cli_env, served):
    offline_cache = tmp_path / "offline-cache"
    offline_cache.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "submission": {"submitter": "a"},
        "datasets": {"offline": True, "cache_dir": str(offline_cache)},
    }))

    def dry_run() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(workdir), "-n", "submit",
             "--configfile", str(config)],
            env=cli_env, capture_output=True, text=True, timeout=600,
        )

    refused = dry_run()
    assert refused.returncode != 0
    message = refused.stderr + refused.stdout
    assert "digits.csv.gz" in message and DIGITS.sha256 in message
    assert "benchpipe datasets bundle --benchmarks digits" in message
    assert f"benchpipe datasets import datasets.tar --cache-dir {offline_cache}" in message
    assert not (workdir / "data").exists() and not (workdir / "runs").exists()
    assert list(offline_cache.iterdir()) == []

    # On the connected machine, then carried over.
    out = tmp_path / "datasets.tar"
    packed = cli(cli_env, "datasets", "bundle", "--benchmarks", "digits", "--out", str(out),
                 "--cache-dir", str(tmp_path / "connected-cache"))
    assert packed.returncode == 0, packed.stderr
    imported = cli(cli_env, "datasets", "import", str(out), "--cache-dir", str(offline_cache))
    assert imported.returncode == 0, imported.stderr
    assert f"{out}: 1 added to {offline_cache}, 0 already there" in imported.stdout

    accepted = dry_run()
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert "rule datasets:" in accepted.stdout + accepted.stderr

    # The only place named for the data answers 404: a request would fail the prepare.
    served.state.default = "404"
    elsewhere = json.dumps({"digits.csv.gz": {"urls": [served.url]}})
    data = tmp_path / "data" / "digits"
    prepared = cli(cli_env, "datasets", "prepare", "--benchmark", "digits", "--offline",
                   "--cache-dir", str(offline_cache), "--out", str(data), "--sources-json", elsewhere)
    assert prepared.returncode == 0, prepared.stderr
    assert served.state.requests == 0
    assert (data / "manifest.json").is_file()
    assert (data / "raw" / "digits.csv.gz").read_bytes() == (offline_cache / "sha256" / DIGITS.sha256).read_bytes()


def test_offline_hint_carries_the_configured_sources(tmp_path: Path) -> None:
    from benchpipe.contracts.benchmark import Source
    from benchpipe.datasets.offline import require_cached

    source = Source(name="mnist.npz", url="http://127.0.0.1:9/mnist.npz", sha256="ab" * 32)
    overrides = {"mnist": {"mnist.npz": {"urls": ["http://127.0.0.1:9/mnist.npz"], "sha256": "ab" * 32}},
                 "digits": {}}
    with pytest.raises(DatasetError) as caught:
        require_cached({"mnist": [source]}, tmp_path, overrides)
    message = str(caught.value)
    assert "mnist/mnist.npz (sha256 " + "ab" * 32 in message
    assert "--benchmarks mnist --out datasets.tar --sources-json '{\"mnist\": {\"mnist.npz\"" in message
