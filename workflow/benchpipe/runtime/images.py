"""Container images as workflow outputs: a wheelhouse checked against the hash lock, an
image built from it with the network off, and a record of exactly what went in.

    images/<engine>/<image>.json   ImageRecord: id, digest, base, lock and wheel hashes
    images/apptainer/<image>.sif   converted from the docker (or podman) image
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchpipe.contracts.atomic import atomic_dir, atomic_file
from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.contracts.hashing import sha256_file

_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
# Wheels are zip files whose entries carry timestamps: a fixed one makes the benchpipe
# wheel, and with it the image, the same bytes for the same source.
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest a zip entry can say


@dataclass(frozen=True)
class ImageRecord:
    engine: str
    image: str
    tag: str
    image_id: str
    digest: str
    base_image: str
    base_image_id: str
    lock_sha256: str
    wheels: dict[str, str]  # wheel file name -> sha256, benchpipe's own included
    built_at: str
    sif: str | None = None
    sif_sha256: str | None = None
    engine_version: str = ""

    def write(self, path: Path) -> None:
        with atomic_file(path) as f:
            json.dump(asdict(self), f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def read(cls, path: Path) -> "ImageRecord":
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError as exc:
            raise RuntimeSetupError(f"{path}: no image record: build it with the workflow's image rule") from exc
        except (json.JSONDecodeError, TypeError) as exc:
            raise RuntimeSetupError(f"{path}: not an image record: {exc}") from exc


@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str
    hashes: frozenset[str]


def read_lock(lock: Path) -> list[LockEntry]:
    """Every `name==version` with its --hash lines; a pin without a hash is an error."""
    entries: list[LockEntry] = []
    current: tuple[str, str, int] | None = None
    hashes: set[str] = set()

    def close() -> None:
        if current is not None:
            if not hashes:
                raise RuntimeSetupError(f"{lock}:{current[2]}: {current[0]}=={current[1]} has no --hash")
            entries.append(LockEntry(current[0], current[1], frozenset(hashes)))

    for number, line in enumerate(lock.read_text().splitlines(), 1):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        if match := _REQUIREMENT.match(stripped):
            close()
            current, hashes = (match.group(1), match.group(2), number), set()
        elif current is None and not stripped.startswith("-"):
            raise RuntimeSetupError(f"{lock}:{number}: not a pinned requirement: {stripped}")
        hashes.update(_HASH.findall(stripped))
    close()
    if not entries:
        raise RuntimeSetupError(f"{lock}: no pinned requirements")
    return entries


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheel_pin(filename: str) -> tuple[str, str]:
    """(normalized name, version) of `name-version[-build]-python-abi-platform.whl`."""
    parts = filename.removesuffix(".whl").split("-")
    return (_normalize(parts[0]), parts[1]) if len(parts) >= 5 else ("", "")


def verify_wheelhouse(lock: Path, wheelhouse: Path) -> dict[str, str]:
    """Each pin of the lock has exactly one wheel in the wheelhouse whose sha256 the lock lists."""
    entries = read_lock(lock)
    wheels = {w.name: w for w in wheelhouse.glob("*.whl")}
    hashes: dict[str, str] = {}
    for entry in entries:
        found = [w for n, w in wheels.items() if _wheel_pin(n) == (_normalize(entry.name), entry.version)]
        if len(found) != 1:
            raise RuntimeSetupError(
                f"{wheelhouse}: {len(found)} wheels for {entry.name}=={entry.version} from {lock} "
                "(expected one): rebuild the wheelhouse"
            )
        digest = sha256_file(found[0])
        if digest not in entry.hashes:
            raise RuntimeSetupError(
                f"{found[0]}: sha256 {digest} is not one that {lock} lists for {entry.name}=={entry.version}"
            )
        hashes[found[0].name] = digest
    if extra := sorted(set(wheels) - set(hashes)):
        raise RuntimeSetupError(f"{wheelhouse}: wheels not in {lock}: {', '.join(extra)}")
    return hashes


def fill_wheelhouse(lock: Path, out: Path) -> dict[str, str]:
    """Download every wheel of the lock, checked against its hashes; written atomically."""
    with atomic_dir(out) as tmp:
        argv = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
            "--only-binary=:all:", "--dest", str(tmp), "--requirement", str(lock),
        ]
        if subprocess.run(argv).returncode != 0:
            raise RuntimeSetupError(f"pip could not download the wheels of {lock}: see the log above")
        return verify_wheelhouse(lock, tmp)


def build_benchpipe_wheel(project: Path, dest: Path) -> Path:
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
            "--wheel-dir", str(dest), str(project)]
    if subprocess.run(argv, env=env).returncode != 0:
        raise RuntimeSetupError(f"could not build the benchpipe wheel from {project}")
    built = sorted(dest.glob("benchpipe-*.whl"))
    if len(built) != 1:
        raise RuntimeSetupError(f"expected one benchpipe wheel in {dest}, found {len(built)}")
    return built[0]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_image(
    engine: str, image: str, recipe: Path, wheelhouse: Path, project: Path, base_image: str, out: Path,
) -> ImageRecord:
    """Build containers/<image>/ on the engine with the network off; write its record."""
    from benchpipe.runtime import for_engine

    runtime = for_engine(engine)
    runtime.check()
    base_id = runtime.image_id(base_image)
    if base_id is None:
        raise RuntimeSetupError(
            f"{engine} has no base image {base_image}: build it with containers/base/build.sh {engine}"
        )
    lock = recipe / "requirements.lock"
    wheels = verify_wheelhouse(lock, wheelhouse)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Beside the record, on the wheelhouse's filesystem as a rule, so wheels are hard-linked.
    with tempfile.TemporaryDirectory(prefix=f".build-{image}-", dir=out.parent) as tmp:
        context = Path(tmp)
        shutil.copyfile(recipe / "Dockerfile", context / "Dockerfile")
        shutil.copyfile(lock, context / "requirements.lock")
        (context / "wheels").mkdir()
        for name in wheels:
            _link_or_copy(wheelhouse / name, context / "wheels" / name)
        own = build_benchpipe_wheel(project, context)
        wheels[own.name] = sha256_file(own)
        lock_sha = sha256_file(lock)
        tag = f"benchpipe/{image}:{_content_tag(base_id, lock_sha, sha256_file(recipe / 'Dockerfile'), wheels)}"
        runtime.build(context, tag, {"BASE_IMAGE": base_image, "LOCK_SHA256": lock_sha})
    image_id, digest = runtime.inspect(tag)
    record = ImageRecord(
        engine=engine, image=image, tag=tag, image_id=image_id, digest=digest,
        base_image=base_image, base_image_id=base_id, lock_sha256=lock_sha,
        wheels=dict(sorted(wheels.items())), built_at=_now(), engine_version=runtime.version(),
    )
    record.write(out)
    return record


def convert_to_sif(source_record: Path, out: Path) -> ImageRecord:
    """An apptainer SIF from the docker or podman image of ``source_record``, recorded beside it."""
    from benchpipe.runtime import for_engine

    source = ImageRecord.read(source_record)
    builder, apptainer = for_engine(source.engine), for_engine("apptainer")
    apptainer.check()
    sif = out.with_suffix(".sif")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        archive = Path(tmp) / "image.tar"
        builder.save(source.image_id, archive)
        apptainer.convert(archive, sif)
    _, sif_sha = apptainer.inspect(str(sif))  # a SIF's digest is its file's sha256
    record = ImageRecord(
        **{**asdict(source), "engine": "apptainer", "sif": str(sif), "sif_sha256": sif_sha,
           "built_at": _now(), "engine_version": apptainer.version()},
    )
    record.write(out)
    return record


def _content_tag(base_id: str, lock_sha: str, dockerfile_sha: str, wheels: dict[str, str]) -> str:
    import hashlib

    text = json.dumps([base_id, lock_sha, dockerfile_sha, sorted(wheels.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
