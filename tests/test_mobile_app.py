"""The gateway to MLCommons' Mobile app files (benchpipe.mlcommons.mobile_app) and `benchpipe mobile app`
(benchpipe.mobile.app): tasks.pbtxt read through the app's proto, the extended result schema, the
pinned sources, and the folder that gathers them.

The app's real files lie beside the repository (../shared/third_party/mlcommons-mobile), read
here and never copied into the project; tests that break them work on copies in tmp_path.

protoc runs in a process of its own: in one that imported TensorFlow first, as every test
process does (conftest), grpc_tools' in-process protoc dies of a segmentation fault;
test_read_tasks_after_tensorflow shows the gateway reads the tasks there.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchpipe.contracts.errors import ConfigError, DatasetError, ValidationError
from benchpipe.mlcommons import mobile_app
from benchpipe.mlcommons.mobile_app import (
    APP_COMMIT,
    APP_FILES,
    APP_REPOSITORY,
    APP_SHA256,
    RESULT_SCHEMA,
    TASK_PROTO,
    TASKS_PBTXT,
    MobileTask,
    RunMode,
    app_sources,
    validate_result,
)
from benchpipe.mobile.run import TASKS_JSON

APP_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "third_party" / "mlcommons-mobile"
EXAMPLE_RESULT = "flutter/unit_test/data/extended_result_unittest.json"

# Every task id of the app's tasks.pbtxt at APP_COMMIT, in file order.
TASK_IDS = [
    "image_classification_v2", "object_detection", "image_segmentation_v2", "natural_language_processing",
    "super_resolution", "image_classification_offline_v2", "llm-1b", "llm-1b-instruct", "llm-3b",
    "llm-3b-instruct", "llm-8b", "llm-8b-instruct", "stable_diffusion",
]
# The runs of the vision and language tasks (SingleStream): normal, quick, rapid.
STREAM_RUNS = {"normal": RunMode(1024, 60.0, 600.0), "quick": RunMode(128, 10.0, 60.0),
               "rapid": RunMode(64, 6.0, 60.0)}


def fresh(target: str, *args: Any, patches: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """``target`` ("module:function") called with ``patches`` ("module:NAME" -> value) in place,
    restored afterwards."""
    import importlib
    from unittest import mock

    def attribute(spec: str):
        module, name = spec.split(":")
        return importlib.import_module(module), name

    with contextlib.ExitStack() as stack:
        for spec, value in (patches or {}).items():
            module, name = attribute(spec)
            stack.enter_context(mock.patch.object(module, name, value))
        module, name = attribute(target)
        return getattr(module, name)(*args, **kwargs)


def read_tasks(app_dir: Path) -> dict[str, MobileTask]:
    return fresh("benchpipe.mlcommons.mobile_app:read_tasks", app_dir)


def materialize(out: Path, **kwargs: Any) -> dict[str, Any]:
    return fresh("benchpipe.mobile.app:materialize", out, **kwargs)


def resolve(*args: Any, **kwargs: Any) -> dict[str, MobileTask]:
    return fresh("benchpipe.mobile.app:resolve", *args, **kwargs)


@pytest.fixture(scope="module")
def app_dir() -> Path:
    """The app's real files (read-only)."""
    missing = [rel for rel in (*APP_FILES, EXAMPLE_RESULT) if not (APP_DIR / rel).is_file()]
    if missing:
        message = f"no MLCommons Mobile app files at {APP_DIR} (missing {', '.join(missing)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # provisioned in CI: missing files are a failure, not a skip
        pytest.skip(message)
    return APP_DIR


@pytest.fixture(scope="module")
def tasks(app_dir) -> dict[str, MobileTask]:
    return read_tasks(app_dir)


def copy_app(app_dir: Path, dest: Path) -> Path:
    """The three files at their repository paths under ``dest`` (writable copies)."""
    for rel in APP_FILES:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(app_dir / rel, dest / rel)
    return dest


@pytest.fixture
def app_copy(app_dir, tmp_path) -> Path:
    return copy_app(app_dir, tmp_path / "app")


def line_of(text: str, needle: str) -> int:
    """The 1-based line where ``needle`` first occurs in ``text``."""
    return text[: text.index(needle)].count("\n") + 1


def left_nothing(out: Path) -> bool:
    """Neither ``out`` nor a partial of it (contracts.atomic) exists."""
    return not out.exists() and not list(out.parent.glob(f".{out.name}.partial-*"))


# --- read_tasks: tasks.pbtxt through mlperf_task.proto ------------------------------------


def test_task_ids_in_file_order(tasks):
    assert list(tasks) == TASK_IDS


def test_image_classification_online(tasks):
    assert tasks["image_classification_v2"] == MobileTask(
        id="image_classification_v2", name="Image Classification v2 (Online)", scenario="SingleStream",
        max_throughput=1000.0, max_accuracy=1.0, runs=STREAM_RUNS, dataset_type="IMAGENET",
        dataset_name="Imagenet classification validation set",
        lite_dataset_name="Open images subset for classification",
        model_id="MobileNetEdgeTPUv2-L", model_name="MobileNetEdgeTPUv2-L", model_offset=0,
        image_width=384, image_height=384, num_classes=1000,
        dataset_files={
            "full": {"input_path": "local:///mlperf_datasets/imagenet/img", "input_checksum": "",
                     "groundtruth_path": "local:///mlperf_datasets/imagenet/imagenet_val_full.txt",
                     "groundtruth_checksum": ""},
            "lite": {"input_path": "https://mobile.mlcommons-storage.org/app-resources/datasets/v0_7/imagenet.zip",
                     "input_checksum": "fdcce28e06475321dc9b1c63a5539a4e", "groundtruth_path": "",
                     "groundtruth_checksum": ""},
            "tiny": {"input_path": "https://mobile.mlcommons-storage.org/app-resources/datasets/v5_0/imagenet_tiny.zip",
                     "input_checksum": "2cde6f1d741b9c1834db261ac6e43a6e",
                     "groundtruth_path":
                         "https://mobile.mlcommons-storage.org/app-resources/datasets/v5_0/imagenet_tiny_val.txt",
                     "groundtruth_checksum": "086f99eff3d1b93fd41e7f35498570a7"},
        },
    )


def test_image_classification_offline(tasks):
    task = tasks["image_classification_offline_v2"]
    assert task.scenario == "Offline"
    assert task.max_throughput == 2000.0
    assert task.runs == {"normal": RunMode(24576, 0.0, 0.0), "quick": RunMode(2457, 0.0, 0.0),
                         "rapid": RunMode(64, 0.0, 0.0)}
    assert (task.dataset_type, task.model_id, task.model_offset) == ("IMAGENET", "MobileNetEdgeTPUv2-L", 0)
    assert (task.image_width, task.image_height, task.num_classes) == (384, 384, 1000)


def test_other_tasks(tasks):
    detection = tasks["object_detection"]
    assert (detection.dataset_type, detection.model_id, detection.model_name) == ("COCO", "ssd_mobiledet",
                                                                                  "SSD-MobileDET")
    assert detection.model_offset == 1  # the one task with a non-default offset
    assert (detection.image_width, detection.image_height, detection.num_classes) == (320, 320, 91)

    segmentation = tasks["image_segmentation_v2"]
    assert (segmentation.dataset_type, segmentation.model_offset, segmentation.num_classes) == ("ADE20K", 0, 31)

    nlp = tasks["natural_language_processing"]
    assert nlp.dataset_type == "SQUAD"
    assert (nlp.dataset_name, nlp.lite_dataset_name) == ("Squad V1.1 validation set", "Squad V1.1 mini set")
    assert (nlp.model_id, nlp.model_name) == ("mobilebert", "MobileBert")
    assert nlp.runs == STREAM_RUNS
    # Optional fields the task leaves out are None, not the proto's zero.
    assert (nlp.image_width, nlp.image_height, nlp.num_classes) == (None, None, None)

    sr = tasks["super_resolution"]
    assert (sr.name, sr.dataset_type) == ("Super Resolution ", "SNUSR")
    assert (sr.image_width, sr.image_height, sr.num_classes) == (960, 540, None)

    llm = tasks["llm-1b"]
    assert (llm.dataset_type, llm.scenario) == ("MMLU", "SingleStream")
    assert llm.runs == {"normal": RunMode(100, 60.0, 300.0), "quick": RunMode(10, 10.0, 40.0),
                        "rapid": RunMode(6, 6.0, 60.0)}
    assert tasks["llm-8b-instruct"].dataset_type == "IFEVAL"
    assert tasks["stable_diffusion"].dataset_type == "COCOGEN"
    assert tasks["stable_diffusion"].runs["normal"] == RunMode(1024, 60.0, 300.0)


def test_task_dict_round_trip(tasks):
    for task in tasks.values():
        data = task.to_dict()
        assert isinstance(data["runs"]["normal"], dict)
        assert MobileTask.from_dict(data) == task
        assert MobileTask.from_dict(json.loads(json.dumps(data))) == task  # as tasks.json holds it


@pytest.mark.parametrize("edit, expected", [
    pytest.param(('  max_accuracy: 1.0\n  scenario: "SingleStream"\n',
                  '  max_accuracy: 1.0\n  bogus_field: 3\n  scenario: "SingleStream"\n', "bogus_field: 3"),
                 'has no field named "bogus_field"', id="unknown-field"),
    pytest.param(("type: SQUAD", "type: SQUISH", "type: SQUISH"), "SQUISH", id="bad-enum"),
    pytest.param(("min_query_count: 24576", 'min_query_count: "lots"', 'min_query_count: "lots"'),
                 "lots", id="wrong-type"),
])
def test_broken_pbtxt_names_file_and_line(app_copy, edit, expected):
    old, new, needle = edit
    pbtxt = app_copy / TASKS_PBTXT
    text = pbtxt.read_text()
    assert old in text
    broken = text.replace(old, new, 1)
    pbtxt.write_text(broken)
    with pytest.raises(ConfigError) as caught:
        read_tasks(app_copy)
    message = str(caught.value)
    assert f"{pbtxt}: {line_of(broken, needle)}:" in message
    assert expected in message
    assert str(app_copy / TASK_PROTO) in message


def test_missing_required_field_refused(app_copy):
    """TaskConfig.scenario is `required` (proto2): the app's C++ TextFormat::ParseFromString refuses a
    task without it, so read_tasks must too, rather than reading the scenario as ''."""
    pbtxt = app_copy / TASKS_PBTXT
    text = pbtxt.read_text()
    assert text.count('  scenario: "SingleStream"\n') > 1
    pbtxt.write_text(text.replace('  scenario: "SingleStream"\n', "", 1))
    with pytest.raises(ConfigError, match=re.escape(str(pbtxt)) + ".*scenario"):
        read_tasks(app_copy)


def test_duplicate_task_id_named(app_copy):
    pbtxt = app_copy / TASKS_PBTXT
    text = pbtxt.read_text()
    start = text.index('task {\n  id: "natural_language_processing"')
    block = text[start: text.index("\n}\n", start) + 3]
    pbtxt.write_text(text + "\n" + block)
    with pytest.raises(ConfigError, match=re.escape(str(pbtxt)) + ".*'natural_language_processing' appears twice"):
        read_tasks(app_copy)


@pytest.mark.parametrize("rel", [TASKS_PBTXT, TASK_PROTO])
def test_missing_file_named(app_copy, rel):
    (app_copy / rel).unlink()
    with pytest.raises(ConfigError) as caught:
        read_tasks(app_copy)
    assert str(app_copy / rel) in str(caught.value)
    assert "mobile.app" in str(caught.value)


def test_proto_that_does_not_compile(app_copy):
    proto = app_copy / TASK_PROTO
    proto.write_text(proto.read_text().replace("message TaskConfig {", "message TaskConfig {{", 1))
    with pytest.raises(ConfigError, match=re.escape(str(proto)) + ".*protoc could not compile"):
        read_tasks(app_copy)


def test_proto_without_the_config_message(app_copy):
    proto = app_copy / TASK_PROTO
    proto.write_text(proto.read_text().replace("package mlperf.mobile;", "package elsewhere;", 1))
    with pytest.raises(ConfigError, match=re.escape(str(proto)) + ".*no message mlperf.mobile.MLPerfConfig"):
        read_tasks(app_copy)


# --- validate_result: the extended result schema ------------------------------------------


def minimal_result() -> dict:
    """An extended result with every required key of the schema and nothing else."""
    run = {
        "throughput": {"value": 512.5}, "accuracy": None, "accuracy2": None,
        "dataset": {"name": "Open images subset for classification", "type": "IMAGENET", "data_path": "",
                    "groundtruth_path": ""},
        "measured_duration": 60.5, "measured_samples": 31000, "start_datetime": "2026-07-20T10:00:00",
        "loadgen": {"query_count": 31000, "latency_mean": 0.0019, "latency90": 0.0021, "is_min_duration_met": True,
                    "is_min_query_met": True, "is_early_stopping_met": True, "is_result_valid": True},
    }
    return {
        "meta": {"uuid": "0b5e4a52-9f5d-4c53-a1c5-57d0b4a3b8f1", "creation_date": "2026-07-20T10:02:00",
                 "upload_date": None},
        "results": [{
            "benchmark_id": "image_classification_v2", "benchmark_name": "Image Classification v2 (Online)",
            "loadgen_scenario": "SingleStream",
            "backend_settings": {"accelerator_code": "cpu", "accelerator_desc": "CPU", "framework": "TFLite",
                                 "delegate": "XNNPACK", "model_path": "https://example.org/model.tflite",
                                 "batch_size": 1, "extra_settings": []},
            "backend_info": {"filename": "libtflitebackend", "vendor_name": "Google", "backend_name": "TFLite",
                             "accelerator_name": "CPU"},
            "performance_run": run, "accuracy_run": None, "min_duration": 60.0, "min_samples": 1024,
        }],
        "environment_info": {"platform": "android", "value": {"android": None, "ios": None, "windows": None}},
        "build_info": {"version": "6.0", "build_number": "1", "build_date": "2026-07-17T00:00:00",
                       "official_release_flag": False, "dev_test_flag": False, "backend_list": ["libtflitebackend"],
                       "git_branch": "master", "git_commit": APP_COMMIT, "git_dirty_flag": False},
    }


def test_minimal_result_validates(app_dir):
    schema = json.loads((app_dir / RESULT_SCHEMA).read_text())
    definitions = schema["definitions"]
    result = minimal_result()
    # Built from the schema's required keys: exactly those, at each level.
    for value, name in [(result, "ExtendedResultSchema"), (result["meta"], "Meta"),
                        (result["results"][0], "Result"), (result["results"][0]["backend_settings"],
                                                           "BackendSettings"),
                        (result["results"][0]["performance_run"], "Run"), (result["build_info"], "BuildInfo"),
                        (result["environment_info"], "EnvironmentInfo")]:
        assert sorted(value) == sorted(definitions[name]["required"]), name
    validate_result(app_dir, result, "minimal")  # raises nothing


def broken(change) -> dict:
    result = minimal_result()
    change(result)
    return result


@pytest.mark.parametrize("result, where, says", [
    pytest.param(broken(lambda r: r["results"][0]["backend_settings"].update(threads=4)),
                 "results/0/backend_settings", "Additional properties are not allowed", id="extra-key"),
    pytest.param(broken(lambda r: r["results"][0].update(min_samples="1024")),
                 "results/0/min_samples", "is not of type 'integer'", id="wrong-type"),
    pytest.param(broken(lambda r: r["results"][0]["backend_settings"].pop("delegate")),
                 "results/0/backend_settings", "'delegate' is a required property", id="missing-key"),
    pytest.param(broken(lambda r: r["results"][0]["performance_run"]["loadgen"].update(query_count=1.5)),
                 "results/0/performance_run", "is not valid under any of the given schemas",
                 id="wrong-type-in-oneof"),
    pytest.param(broken(lambda r: r.pop("build_info")), "(root)", "'build_info' is a required property",
                 id="missing-top-level"),
    pytest.param(broken(lambda r: r.update(extra=1)), "(root)", "Additional properties are not allowed",
                 id="extra-top-level"),
])
def test_invalid_result_names_path_and_schema(app_dir, result, where, says):
    with pytest.raises(ValidationError) as caught:
        validate_result(app_dir, result, "my-result.json")
    message = str(caught.value)
    assert message.startswith(f"my-result.json: {where}: "), message
    assert says in message
    assert RESULT_SCHEMA in message


def test_errors_counted_first_by_path(app_dir):
    result = minimal_result()
    result["meta"]["uuid"] = 7
    result["results"][0]["min_duration"] = "60"
    with pytest.raises(ValidationError) as caught:
        validate_result(app_dir, result, "two")
    assert str(caught.value).startswith("two: meta/uuid: ")  # meta/... sorts before results/...
    assert "2 error(s) in all" in str(caught.value)


def test_minimal_result_not_changed_by_validation(app_dir):
    result = minimal_result()
    before = copy.deepcopy(result)
    validate_result(app_dir, result, "minimal")
    assert result == before


def test_apps_own_example_is_stale(app_dir):
    """The app's unit-test example predates its schema: no backend_settings/delegate, loadgen_info."""
    example = json.loads((app_dir / EXAMPLE_RESULT).read_text())
    with pytest.raises(ValidationError) as caught:
        validate_result(app_dir, example, EXAMPLE_RESULT)
    message = str(caught.value)
    assert f"{EXAMPLE_RESULT}: results/0/backend_settings: " in message
    assert "is a required property" in message
    assert RESULT_SCHEMA in message


def test_result_schema_missing(app_copy):
    (app_copy / RESULT_SCHEMA).unlink()
    with pytest.raises(ConfigError, match=re.escape(str(app_copy / RESULT_SCHEMA)) + ".*mobile.app"):
        validate_result(app_copy, minimal_result(), "x")


def test_result_schema_not_json(app_copy):
    (app_copy / RESULT_SCHEMA).write_text("{ not json")
    with pytest.raises(ConfigError, match=re.escape(str(app_copy / RESULT_SCHEMA)) + ": not JSON"):
        validate_result(app_copy, minimal_result(), "x")


# --- app_sources: the pinned files -------------------------------------------------------


def test_app_sources_pinned():
    assert re.fullmatch(r"[0-9a-f]{40}", APP_COMMIT)
    assert APP_REPOSITORY == "https://github.com/mlcommons/mobile_app_open"
    sources = app_sources()
    assert [s.url for s in sources] == [
        f"https://raw.githubusercontent.com/mlcommons/mobile_app_open/{APP_COMMIT}/{rel}" for rel in APP_FILES]
    assert [s.sha256 for s in sources] == [APP_SHA256[rel] for rel in APP_FILES]
    assert all(s.mirrors == () for s in sources)
    names = [s.name for s in sources]
    assert len(set(names)) == len(names) and not any("/" in n for n in names)


def test_app_sources_mirrors():
    bases = ("file:///srv/mobile/", "https://mirror.example.org/mobile_app_open")
    for rel, source in zip(APP_FILES, app_sources(bases), strict=True):
        assert source.mirrors == (f"file:///srv/mobile/{rel}", f"https://mirror.example.org/mobile_app_open/{rel}")
        assert source.urls[0] == f"{mobile_app.RAW_BASE}/{rel}"


def test_pinned_sha256_match_the_shared_files(app_dir):
    actual = {rel: hashlib.sha256((app_dir / rel).read_bytes()).hexdigest() for rel in APP_FILES}
    assert actual == APP_SHA256


# --- benchpipe.mobile.app: materialize and resolve -------------------------------------------


def test_materialize_from_checkout(app_dir, tasks, tmp_path):
    out = tmp_path / "mobile-app"
    record = materialize(out, app=app_dir, mirrors=(), cache_dir=tmp_path / "cache")
    for rel in APP_FILES:
        assert (out / rel).read_bytes() == (app_dir / rel).read_bytes()
    assert not (tmp_path / "cache").exists()  # a checkout needs no cache
    written = json.loads((out / TASKS_JSON).read_text())
    assert written == record
    assert record["origin"] == f"checkout {app_dir.resolve()}"
    assert record["files"] == APP_SHA256
    assert sorted(record["tasks"]) == sorted(TASK_IDS)
    assert {k: MobileTask.from_dict(v) for k, v in record["tasks"].items()} == tasks


def test_materialize_records_a_changed_checkout(app_copy, tmp_path):
    pbtxt = app_copy / TASKS_PBTXT
    pbtxt.write_text(pbtxt.read_text() + "# a local change\n")
    record = materialize(tmp_path / "out", app=app_copy, mirrors=(), cache_dir=tmp_path / "cache")
    assert record["files"][TASKS_PBTXT] == hashlib.sha256(pbtxt.read_bytes()).hexdigest() != APP_SHA256[TASKS_PBTXT]


def test_materialize_checkout_missing_a_file(app_copy, tmp_path):
    (app_copy / RESULT_SCHEMA).unlink()
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as caught:
        materialize(out, app=app_copy, mirrors=(), cache_dir=tmp_path / "cache")
    assert str(app_copy / RESULT_SCHEMA) in str(caught.value) and "mobile.app" in str(caught.value)
    assert left_nothing(out)


@pytest.fixture
def no_pinned_host(tmp_path) -> dict[str, str]:
    """``fresh``'s patches that point the pinned URLs nowhere: the test never touches the network,
    whether or not the machine has one, and a mirror must serve every file."""
    return {"benchpipe.mlcommons.mobile_app:RAW_BASE": f"file://{tmp_path}/unreachable/{APP_COMMIT}"}


def test_fetch_through_mirror_then_offline(app_dir, tasks, tmp_path, no_pinned_host):
    cache = tmp_path / "cache"
    out = tmp_path / "fetched"
    record = materialize(out, app=None, mirrors=(f"file://{app_dir}",), cache_dir=cache, patches=no_pinned_host)
    assert record["origin"] == f"{APP_REPOSITORY} at {APP_COMMIT}"
    assert record["files"] == APP_SHA256
    assert sorted(p.name for p in (cache / "sha256").iterdir()) == sorted(APP_SHA256.values())
    for rel in APP_FILES:
        entry = cache / "sha256" / APP_SHA256[rel]
        assert entry.read_bytes() == (app_dir / rel).read_bytes()
        assert (out / rel).read_bytes() == (app_dir / rel).read_bytes()
    assert json.loads((out / TASKS_JSON).read_text()) == record
    assert {k: MobileTask.from_dict(v) for k, v in record["tasks"].items()} == tasks

    # The filled cache serves the files offline, with no mirror at all.
    again = materialize(tmp_path / "offline", app=None, mirrors=(), cache_dir=cache, offline=True,
                        patches=no_pinned_host)
    assert again == record
    assert resolve(None, (), cache, offline=True, patches=no_pinned_host) == tasks


def test_fetch_without_a_working_url(tmp_path, no_pinned_host):
    cache, out = tmp_path / "cache", tmp_path / "out"
    with pytest.raises(DatasetError) as caught:
        materialize(out, app=None, mirrors=(), cache_dir=cache, patches=no_pinned_host)
    assert f"unreachable/{APP_COMMIT}/{TASKS_PBTXT}" in str(caught.value)
    assert left_nothing(out)


def test_offline_with_empty_cache(tmp_path, no_pinned_host):
    cache, out = tmp_path / "empty-cache", tmp_path / "out"
    with pytest.raises(DatasetError) as caught:
        materialize(out, app=None, mirrors=(), cache_dir=cache, offline=True, patches=no_pinned_host)
    assert str(cache / "sha256" / APP_SHA256[TASKS_PBTXT]) in str(caught.value)
    assert "offline" in str(caught.value)
    assert left_nothing(out)
    with pytest.raises(DatasetError, match=APP_SHA256[TASKS_PBTXT]):
        resolve(None, (), cache, offline=True, patches=no_pinned_host)


def test_mirror_with_changed_bytes_refused(app_dir, tmp_path, no_pinned_host):
    mirror = copy_app(app_dir, tmp_path / "mirror")
    pbtxt = mirror / TASKS_PBTXT
    data = bytearray(pbtxt.read_bytes())
    data[data.index(b"1024")] = ord("2")  # one byte: min_query_count 2024
    pbtxt.write_bytes(bytes(data))
    cache, out = tmp_path / "cache", tmp_path / "out"
    with pytest.raises(DatasetError) as caught:
        materialize(out, app=None, mirrors=(f"file://{mirror}",), cache_dir=cache, patches=no_pinned_host)
    message = str(caught.value)
    assert "sha256 mismatch" in message
    assert APP_SHA256[TASKS_PBTXT] in message and hashlib.sha256(bytes(data)).hexdigest() in message
    assert left_nothing(out)
    assert not (cache / "sha256" / APP_SHA256[TASKS_PBTXT]).exists()


def test_materialize_required_tasks(app_dir, tmp_path):
    record = materialize(tmp_path / "ok", app=app_dir, mirrors=(), cache_dir=tmp_path / "cache",
                         required=[("image_classification_v2", "IMAGENET"), ("object_detection", "COCO")])
    assert "object_detection" in record["tasks"]
    out = tmp_path / "wrong-kind"
    with pytest.raises(ConfigError) as caught:
        materialize(out, app=app_dir, mirrors=(), cache_dir=tmp_path / "cache",
                    required=[("image_classification_v2", "COCO")])
    assert "image_classification_v2" in str(caught.value) and "object_detection" in str(caught.value)
    assert left_nothing(out)
    with pytest.raises(ConfigError, match="no_such_task is no such task"):
        materialize(out, app=app_dir, mirrors=(), cache_dir=tmp_path / "cache",
                    required=[("no_such_task", "IMAGENET")])
    assert left_nothing(out)


def test_read_tasks_after_tensorflow(app_dir, tmp_path):
    """read_tasks in a process that imported TensorFlow first (a job, or the test process itself):
    grpc_tools' in-process protoc.main then dies of SIGSEGV, not an error."""
    script = ("import sys, tensorflow\n"
              "from benchpipe.mlcommons.mobile_app import read_tasks\n"
              "print(len(read_tasks(sys.argv[1])))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", script, str(app_dir)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == str(len(TASK_IDS))
