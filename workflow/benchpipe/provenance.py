"""Which software produced a result: recorded by every training run, LoadGen test and Mobile run.

Two halves meet in `provenance.json`. `benchpipe run` knows the runtime, its version, the
image record and the host's GPU driver, and hands them to the job in one environment
variable; the job adds what only it can see (its Python, TensorFlow and the CUDA that
TensorFlow was built with) and writes the file into its output before that output exists.

``config_sha256`` names the part of the workflow config that the job reads: the sha256 of the
canonical JSON (``canonical_config``) of its kind's CONFIG_SECTIONS, taken from the validated
config that packaging later writes to the tree's ``benchpipe/config.json``. Only those
sections: a changed inference setting must not retrain, nor a changed dataset cache folder
rerun anything. The workflow hands the hash to each job in CONFIG_SHA256_ENV; an auditor
recomputes a training run's from the tree alone (``inference`` for a LoadGen test's, ``mobile``
for a Mobile run's)::

    python3 -c 'import hashlib, json, sys; c = json.load(open(sys.argv[1])); print(hashlib.sha256(json.dumps(
        {k: c.get(k) for k in ("containers", "submission", "training")}, sort_keys=True,
        separators=(",", ":")).encode()).hexdigest())' benchpipe/config.json

A job started by hand, outside the workflow, has no config: it records null.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ParseError
from benchpipe.contracts.jsonfile import read_json
from benchpipe.contracts.layout import DATASET_MANIFEST

# The runtime's half, handed by `benchpipe run` to the job in this one variable.
PROVENANCE_ENV = "BENCHPIPE_PROVENANCE"
PROVENANCE_FILE = "provenance.json"
# Keys of provenance.json, in the provenance table's column order (wheels become JSON text).
FIELDS = (
    "runtime", "runtime_version", "image", "image_tag", "image_id", "image_digest", "base_image",
    "base_image_id", "lock_sha256", "wheels", "sif_sha256", "host_driver_version", "host_cuda_version",
    "python_version", "tensorflow_version", "tensorflow_cuda_build", "packages_sha256",
    "dataset_manifest_sha256", "benchpipe_version", "loadgen_version", "mlperf_logging_version",
    "code_commit", "code_dirty", "config_sha256", "slurm_job_id", "attempts",
)
# Fields an older benchpipe did not write, read as null (the others must be there).
_ADDED_SINCE = ("slurm_job_id", "attempts")
# Set by the workflow's rules for every job (the Snakefile's validated config, canonical_config).
CONFIG_SHA256_ENV = "BENCHPIPE_CONFIG_SHA256"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Distributions whose versions every job records, as the fields above name them.
VERSIONED = {"benchpipe_version": "benchpipe", "loadgen_version": "mlcommons-loadgen",
             "mlperf_logging_version": "mlperf-logging"}


def host_gpu() -> dict[str, str | None]:
    """The NVIDIA driver and the CUDA version it supports, where the host has them."""
    driver = cuda = None
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        if match := re.search(r"Kernel Module\s+(\S+)", text):
            driver = match.group(1)
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
            if match := re.search(r"CUDA Version:\s*([\d.]+)", out):
                cuda = match.group(1)
            if driver is None and (match := re.search(r"Driver Version:\s*([\d.]+)", out)):
                driver = match.group(1)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {"host_driver_version": driver, "host_cuda_version": cuda}


def code_state() -> dict[str, Any]:
    """The git commit of the benchpipe checkout and whether it has changes, or None for both.

    Read on the host (`benchpipe run`), where the checkout is: an image holds no git. An
    installed package outside any checkout records None, as does a machine without git.
    """
    from benchpipe.contracts.paths import SOURCE_ROOT

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"code_commit": None, "code_dirty": None}
    status = git("status", "--porcelain")
    return {"code_commit": commit.strip(), "code_dirty": None if status is None else bool(status.strip())}


def slurm_job_id() -> str | None:
    """The SLURM job the result was made in (an auditor's `sacct -j` finds it); None outside SLURM."""
    value = os.environ.get("SLURM_JOB_ID") or None
    if value is not None and not value.isdigit():
        from benchpipe.contracts.errors import RuntimeSetupError

        raise RuntimeSetupError(f"SLURM_JOB_ID={value!r}: not a SLURM job id (digits)")
    return value


def canonical_config(settings: Any) -> bytes:
    """The config as one byte string: sorted keys, no whitespace, ASCII (json.dumps' escapes)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


# What each kind of job reads from the config (calibration is part of inference). Other inputs
# (the dataset, the target file, the trained model) reach jobs as files Snakemake tracks.
CONFIG_SECTIONS = {
    "train": ("containers", "submission", "training"),
    "infer": ("containers", "inference", "submission"),
    # The Mobile family's runs (mobile/<precision>/<task>/<mode>) read its own section.
    "mobile": ("containers", "mobile", "submission"),
}
_KIND_OF_JOB = {"train": "train", "infer": "infer", "calibrate": "infer", "mobile": "mobile"}


def job_kind(job: str) -> str:
    """train/run_0 -> train; infer/Server/TEST01 and calibrate/Server -> infer; mobile/int8/<task>/<mode> -> mobile."""
    kind = _KIND_OF_JOB.get(job.split("/", 1)[0])
    if kind is None:
        raise ValueError(f"job {job!r}: not a train, calibrate, infer or mobile job")
    return kind


def config_sha256(settings: dict[str, Any], kind: str) -> str:
    """The hash of the sections of ``settings`` that a ``kind`` job reads."""
    part = {section: settings.get(section) for section in CONFIG_SECTIONS[kind]}
    return hashlib.sha256(canonical_config(part)).hexdigest()


def handed_config_sha256() -> str | None:
    """The workflow's config hash from the environment; None outside the workflow."""
    value = os.environ.get(CONFIG_SHA256_ENV)
    if not value:
        return None
    if not _SHA256.match(value):
        from benchpipe.contracts.errors import RuntimeSetupError

        # A malformed hash would be recorded as if it named a config: refuse it here.
        raise RuntimeSetupError(f"{CONFIG_SHA256_ENV}={value!r}: not a sha256 (64 lowercase hex digits)")
    return value


def local_runtime_version() -> str:
    """The local runtime's version: the interpreter and the platform that run the job."""
    return f"{platform.python_implementation()} {platform.python_version()} on {platform.platform()}"


def runtime_fields(runtime: str, runtime_version: str, record: Any | None) -> dict[str, Any]:
    """The host side's half: handed to the job through the environment."""
    fields: dict[str, Any] = {"runtime": runtime, "runtime_version": runtime_version, **host_gpu(), **code_state(),
                              "config_sha256": handed_config_sha256(), "slurm_job_id": slurm_job_id()}
    if record is not None:
        fields.update({
            "image": record.image, "image_tag": record.tag, "image_id": record.image_id,
            "image_digest": record.digest, "base_image": record.base_image,
            "base_image_id": record.base_image_id, "lock_sha256": record.lock_sha256,
            "wheels": record.wheels, "sif_sha256": record.sif_sha256,
        })
    return fields


def _packages_sha256() -> str:
    """One hash over every installed distribution and version: the environment, as a whole."""
    pins = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]})
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for field, dist in VERSIONED.items():
        try:
            found[field] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[field] = None
    return found


def _tensorflow() -> dict[str, str | None]:
    """The installed TensorFlow's version and CUDA build, read without importing it where the
    job has not: a Mobile run serves LiteRT alone, and TensorFlow's import costs it seconds."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        build = tf.sysconfig.get_build_info()
        return {"tensorflow_version": tf.__version__, "tensorflow_cuda_build": build.get("cuda_version") or None}
    spec = importlib.util.find_spec("tensorflow")
    dists = metadata.packages_distributions().get("tensorflow", [])
    if spec is None or not spec.submodule_search_locations or not dists:
        return {"tensorflow_version": None, "tensorflow_cuda_build": None}
    # The module tf.sysconfig.get_build_info reads: generated at build time, a dict and nothing else.
    info = Path(next(iter(spec.submodule_search_locations))) / "python" / "platform" / "build_info.py"
    build = runpy.run_path(str(info))["build_info"] if info.is_file() else {}
    return {"tensorflow_version": metadata.version(dists[0]),
            "tensorflow_cuda_build": build.get("cuda_version") or None}


def collect(dataset_dir: Path | None = None) -> dict[str, Any]:
    """This job's provenance: what `benchpipe run` handed over, plus what the job sees.

    ``dataset_dir``: the prepared dataset the job read; its manifest lists the sha256 of
    every source and shard, so the manifest's own hash names the exact bytes used.
    """
    handed = os.environ.get(PROVENANCE_ENV)
    if handed:
        fields = json.loads(handed)
    else:
        # Started without `benchpipe run`: on the host, as the local runtime would.
        fields = runtime_fields("local", local_runtime_version(), None)
    fields.update(python_version=platform.python_version(), packages_sha256=_packages_sha256(), **_tensorflow(),
                  **_versions())
    if dataset_dir is not None:
        from benchpipe.contracts.hashing import sha256_file

        fields["dataset_manifest_sha256"] = sha256_file(Path(dataset_dir) / DATASET_MANIFEST)
    return {key: fields.get(key) for key in FIELDS}


def write(directory: Path, dataset_dir: Path | None = None, attempts: list[dict] | None = None) -> dict[str, Any]:
    """``attempts``: a performance run's LoadGen attempts and the corrections between them
    (infer.loadgen_run.performance_attempts); null for every other job."""
    record = collect(dataset_dir)
    record["attempts"] = attempts
    (directory / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def read(directory: Path) -> dict[str, Any]:
    path = directory / PROVENANCE_FILE
    data = read_json(path, ParseError, missing=f"the job that wrote {directory} recorded no provenance")
    if not isinstance(data, dict):
        raise ParseError(f"{path}: not a JSON object")
    # Recorded since jobs run on clusters; files from before ran outside SLURM.
    for key in _ADDED_SINCE:
        data.setdefault(key, None)
    if missing := [k for k in FIELDS if k not in data]:
        # An older benchpipe's file (before config_sha256, say): trees are regenerated, not patched.
        raise ParseError(f"{path}: missing key(s) {', '.join(missing)}: re-run the job that wrote {directory}")
    return data


def summary(fields: dict[str, Any]) -> str:
    """One line for a system description's sw_notes."""
    text = f"runtime {fields['runtime']} {fields['runtime_version']}"
    if fields.get("image_id"):
        text += (f"; image {fields['image']} {fields['image_id']} (digest {fields['image_digest']}), "
                 f"base {fields['base_image']} {fields['base_image_id']}, lock sha256 {fields['lock_sha256']}")
    if fields.get("host_driver_version"):
        text += f"; NVIDIA driver {fields['host_driver_version']}, CUDA {fields['host_cuda_version']}"
    return text
