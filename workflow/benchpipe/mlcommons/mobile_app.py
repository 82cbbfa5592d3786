"""MLCommons' Mobile app (mlcommons/mobile_app_open): its task file, read through its own proto, and
its extended result schema.

benchpipe reads three of the app's files, never copies them into the project, and takes them
from a checkout the user names (``mobile.app``) or from the app's repository at one pinned
commit, through the dataset machinery's checksummed cache (``benchpipe mobile app``):

    flutter/assets/tasks.pbtxt             the tasks: model, dataset, scenario, and the
                                           min_query_count / min_duration of each run mode
    flutter/cpp/proto/mlperf_task.proto    the schema of tasks.pbtxt (message MLPerfConfig)
    tools/extended_result_schema.json      the JSON schema (draft-06) of the app's result file

tasks.pbtxt is parsed as the app parses it: protoc (the ``grpcio-tools`` wheel's) compiles
mlperf_task.proto to a descriptor set, protobuf builds MLPerfConfig from it, and
``text_format`` reads the file. No field is read by hand, so a task file the proto refuses is
refused here, naming the line.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import ConfigError, ValidationError

TASKS_PBTXT = "flutter/assets/tasks.pbtxt"
TASK_PROTO = "flutter/cpp/proto/mlperf_task.proto"
RESULT_SCHEMA = "tools/extended_result_schema.json"
APP_FILES = (TASKS_PBTXT, TASK_PROTO, RESULT_SCHEMA)
TASK_MESSAGE = "mlperf.mobile.MLPerfConfig"
RUN_MODES = ("normal", "quick", "rapid")
# A task's datasets: full for accuracy runs, lite for performance runs, tiny for the app's tests.
DATASET_SIZES = ("full", "lite", "tiny")
DATASET_FILE_KEYS = ("input_path", "input_checksum", "groundtruth_path", "groundtruth_checksum")

# Mobile app 6.0's files: mlcommons/mobile_app_open at this commit (2026-07-17).
APP_REPOSITORY = "https://github.com/mlcommons/mobile_app_open"
APP_COMMIT = "051a47af2b9a19a7bc35aa9ccff8e4fe386276f2"
APP_SHA256 = {
    TASKS_PBTXT: "c24f821630dbf6e34999eefde4d90c5b54a4c6a271043f8f47218ec58ff116e0",
    TASK_PROTO: "5e76de09ae70650580a0633b424e3715ec3b543e6adf6babc379c6e4234782e1",
    RESULT_SCHEMA: "f0b613969dab77b767d4d0f54ddceb1c71c0b38599f42138127dd166add3d09f",
}
RAW_BASE = f"https://raw.githubusercontent.com/mlcommons/mobile_app_open/{APP_COMMIT}"


def app_sources(mirrors: tuple[str, ...] = ()) -> tuple[Source, ...]:
    """The three files at the pinned commit; each mirror is a base URL holding them at the same
    relative paths (a local copy's ``file:///...`` base, say)."""
    return tuple(Source(name=rel.replace("/", "__"), url=f"{RAW_BASE}/{rel}", sha256=APP_SHA256[rel],
                        mirrors=tuple(f"{m.rstrip('/')}/{rel}" for m in mirrors)) for rel in APP_FILES)


@dataclass(frozen=True)
class RunMode:
    """One run mode of a task (OneRunConfig): the performance run's minimums, in queries and seconds."""

    min_query_count: int
    min_duration_s: float
    max_duration_s: float


@dataclass(frozen=True)
class MobileTask:
    """One ``task`` of tasks.pbtxt, as benchpipe uses it."""

    id: str
    name: str
    scenario: str  # SingleStream or Offline
    max_throughput: float
    max_accuracy: float
    runs: dict[str, RunMode]  # by run mode: normal, quick, rapid
    dataset_type: str  # IMAGENET, SQUAD, COCO, ADE20K, SNUSR, ...
    dataset_name: str  # the full (accuracy) dataset's name
    lite_dataset_name: str  # the performance run's
    model_id: str
    model_name: str
    model_offset: int
    image_width: int | None
    image_height: int | None
    num_classes: int | None
    # By dataset size (full, lite, tiny: OneDatasetConfig): its input_path, input_checksum,
    # groundtruth_path and groundtruth_checksum (MD5), as the app downloads and checks them.
    dataset_files: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MobileTask:
        return cls(**{**data, "runs": {k: RunMode(**v) for k, v in data["runs"].items()}})


def app_file(app_dir: Path, rel: str) -> Path:
    path = Path(app_dir) / rel
    if not path.is_file():
        raise ConfigError(f"{path}: missing: mobile.app must be a mobile_app_open checkout holding "
                          f"{', '.join(APP_FILES)} (or leave it unset to fetch them at commit {APP_COMMIT[:12]})")
    return path


def task_message_class(proto: Path):
    """MLPerfConfig's class, built from the descriptor set protoc compiles ``proto`` to.

    protoc runs in its own process: in one that has loaded TensorFlow, grpc_tools' in-process
    protoc crashes the interpreter (two copies of protobuf's C++ runtime)."""
    import importlib.resources
    import subprocess
    import sys

    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    with tempfile.TemporaryDirectory(prefix="benchpipe-proto-") as tmp:
        out = Path(tmp) / "descriptors.pb"
        well_known = importlib.util.find_spec("grpc_tools")
        include = Path(str(importlib.resources.files("grpc_tools"))) / "_proto" if well_known else None
        argv = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto.parent}",
                *([f"-I{include}"] if include else []), f"--descriptor_set_out={out}", proto.name]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            why = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConfigError(f"{proto}: protoc could not compile it (exit {proc.returncode}): "
                              f"{why[0] if why else 'no message'}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(TASK_MESSAGE))
    except KeyError as exc:
        raise ConfigError(f"{proto}: defines no message {TASK_MESSAGE}") from exc


def read_tasks(app_dir: Path) -> dict[str, MobileTask]:
    """Every task of the app's tasks.pbtxt, by id, parsed through its mlperf_task.proto."""
    from google.protobuf import text_format

    pbtxt, proto = app_file(app_dir, TASKS_PBTXT), app_file(app_dir, TASK_PROTO)
    config = task_message_class(proto)()
    try:
        text_format.Parse(pbtxt.read_text(), config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{pbtxt}: {exc} (against {proto})") from exc
    # Python's text_format leaves proto2's required fields unchecked; the app's C++ parser refuses them.
    if missing := config.FindInitializationErrors():
        raise ConfigError(f"{pbtxt}: required field(s) missing: {', '.join(missing[:5])} (against {proto})")
    dataset_types = config.DESCRIPTOR.file.pool.FindEnumTypeByName("mlperf.mobile.DatasetConfig.DatasetType")
    tasks = {}
    for task in config.task:
        if task.id in tasks:
            raise ConfigError(f"{pbtxt}: task id '{task.id}' appears twice")
        model = task.model
        tasks[task.id] = MobileTask(
            id=task.id, name=task.name, scenario=task.scenario, max_throughput=task.max_throughput,
            max_accuracy=task.max_accuracy,
            runs={mode: RunMode(getattr(task.runs, mode).min_query_count, getattr(task.runs, mode).min_duration,
                                getattr(task.runs, mode).max_duration) for mode in RUN_MODES},
            dataset_type=dataset_types.values_by_number[task.datasets.type].name,
            dataset_name=task.datasets.full.name, lite_dataset_name=task.datasets.lite.name,
            model_id=model.id, model_name=model.name, model_offset=model.offset,
            image_width=model.image_width if model.HasField("image_width") else None,
            image_height=model.image_height if model.HasField("image_height") else None,
            num_classes=model.num_classes if model.HasField("num_classes") else None,
            dataset_files={size: {key: getattr(getattr(task.datasets, size), key) for key in DATASET_FILE_KEYS}
                           for size in DATASET_SIZES},
        )
    return tasks


def result_schema(app_dir: Path) -> dict[str, Any]:
    path = app_file(app_dir, RESULT_SCHEMA)
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from exc


def validate_result(app_dir: Path, result: dict[str, Any], what: str) -> None:
    """Raise ValidationError naming the first place where ``result`` breaks the app's extended
    result schema (draft-06, no additional properties anywhere)."""
    import jsonschema

    schema = result_schema(app_dir)
    validator = jsonschema.Draft6Validator(schema)
    errors = sorted(validator.iter_errors(result), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise ValidationError(f"{what}: {where}: {first.message} (the Mobile app's "
                              f"{RESULT_SCHEMA}; {len(errors)} error(s) in all)")
