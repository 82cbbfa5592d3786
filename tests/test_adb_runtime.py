"""Runtime adb against a fake adb on PATH (tests/fake_adb/adb): the device is a folder, every adb
call is recorded, and the "binary" writes canned LoadGen logs where the real one would.

Each test drives the real seam, ``benchpipe.runtime.launch.launch``, with a target file of
runtime adb, and reads back the exact adb lines, what landed on the device and what came back.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jsonschema
import pytest

from benchpipe.contracts.config import Target, load_target
from benchpipe.contracts.errors import BenchpipeError, ConfigError, InferenceError, RuntimeSetupError
from benchpipe.mlcommons.mobile_app import MobileTask, RunMode
from benchpipe.mobile.convert import Conversion
from benchpipe.mobile.run import RunRequest, read_mobile_run
from benchpipe.runtime import for_target
from benchpipe.runtime.adb import (
    APP_DATASETS,
    DevicePlan,
    binary_command,
    dataset_flags,
    parse_devices,
    printed_accuracy,
)
from benchpipe.runtime.launch import launch

FAKE_ADB_DIR = Path(__file__).resolve().parent / "fake_adb"
MOBILE_APP = Path(__file__).resolve().parents[2] / "shared/third_party/mlcommons-mobile"
RESULT_SCHEMA = MOBILE_APP / "tools/extended_result_schema.json"
SERIAL = "R5CT1234"
DEV = "/data/local/tmp/benchpipe"
NATIVE_LIBS = "/vendor/lib64"
RUN_NAME = "image_classification_v2_accuracy_rapid"
PROPS = {
    "ro.product.manufacturer": "samsung", "ro.product.model": "SM-S911B", "ro.product.board": "kalama",
    "ro.build.version.release": "14", "ro.soc.manufacturer": "QTI", "ro.soc.model": "SM8550",
    "ro.product.marketname": "Galaxy S23",
}
TFLITE_BYTES = b"TFL3" + bytes(range(60))
SHA = hashlib.sha256(TFLITE_BYTES).hexdigest()


def task(task_id: str = "image_classification_v2", dataset_type: str = "IMAGENET", scenario: str = "SingleStream",
         width: int | None = 384, height: int | None = 384, offset: int = 0, classes: int | None = 1000) -> MobileTask:
    """A task as the app's tasks.pbtxt (6.0) states it."""
    runs = {"normal": RunMode(1024, 60.0, 600.0), "quick": RunMode(128, 10.0, 60.0), "rapid": RunMode(64, 6.0, 60.0)}
    return MobileTask(task_id, "Image Classification v2 (Online)", scenario, 1000.0, 1.0, runs, dataset_type,
                      "Imagenet classification validation set", "Open images subset for classification",
                      "MobileNetEdgeTPUv2-L", "MobileNetEdgeTPUv2-L", offset, width, height, classes)


def mllog(key: str, value) -> str:
    meta = {"is_error": False, "is_warning": False, "file": "x", "line_no": 1, "pid": 1, "tid": 1}
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 0.0, "namespace": "mlperf::logging",
                                     "event_type": "POINT_IN_TIME", "metadata": meta})


def write_canned_logs(folder: Path, validity: str = "VALID") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    detail = [mllog("power_begin", "12-06-2026 08:14:52.367"), mllog("result_validity", validity),
              mllog("result_query_count", 640), mllog("result_mean_latency_ns", 9_000_000),
              mllog("result_90.00_percentile_latency_ns", 9_500_000),
              mllog("result_min_duration_met", validity == "VALID"), mllog("result_min_queries_met", True),
              mllog("early_stopping_met", True), mllog("power_end", "12-06-2026 08:15:00.367")]
    (folder / "mlperf_log_detail.txt").write_text("\n".join(detail) + "\n")
    (folder / "mlperf_log_summary.txt").write_text(f"Result is : {validity}\n")
    answers = [{"seq_id": 0, "qsl_idx": 0, "data": "00"}, {"seq_id": 1, "qsl_idx": 1, "data": "01"},
               {"seq_id": 2, "qsl_idx": 1, "data": "01"}]
    (folder / "mlperf_log_accuracy.json").write_text(json.dumps(answers))


@dataclass(frozen=True)
class Bench:
    tmp: Path
    target: Target
    request: RunRequest
    binary: Path
    lib: Path
    tflite: Path
    root: Path  # the fake device's file system
    calls: Path

    def launch(self, request: RunRequest | None = None, command: list[str] | None = None) -> int:
        request = request or self.request
        return launch(self.target, command or ["benchpipe", *request.argv()],
                      inputs=[request.data, request.tasks, request.model], output=request.out,
                      images=self.tmp / "images")

    def recorded(self) -> list[list[str]]:
        return [json.loads(line) for line in self.calls.read_text().splitlines()] if self.calls.exists() else []

    def on_device(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def write_target(tmp: Path, binary: Path, lib: Path, **adb) -> Target:
    settings = {"binary": str(binary), "lib_path": str(lib), "native_lib_path": NATIVE_LIBS,
                "custom_config": {"zeta": "2", "alpha": "1"}, **adb}
    path = tmp / "phone.yaml"
    path.write_text(json.dumps({"name": "phone", "runtime": "adb", "backend": "litert",
                                "devices": {"kind": "cpu", "count": 1}, "adb": settings}))
    return load_target(path)


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bench:
    app = tmp_path / "app"
    app.mkdir()
    binary, lib = app / "mlperf_main", app / "libtflitebackend.so"
    binary.write_bytes(b"\x7fELF binary")
    lib.write_bytes(b"\x7fELF backend")
    inputs = tmp_path / "in"
    model = inputs / "model"
    model.mkdir(parents=True)
    (model / "model.tflite").write_bytes(TFLITE_BYTES)
    Conversion("fp32", "tf.lite.TFLiteConverter", "2.x", {"from": "saved_model"}, "/models/saved", "ab" * 32, SHA,
               len(TFLITE_BYTES), None).write(model)
    tasks = inputs / "tasks.json"
    tasks.write_text(json.dumps({"tasks": {t.id: t.to_dict() for t in [task()]}}))
    data = inputs / "imagenet"
    (data / "img").mkdir(parents=True)
    for name in ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"):
        (data / "img" / name).write_bytes(b"\xff\xd8" + name.encode())
    (data / "imagenet_val_full.txt").write_text("65\n970\n")
    write_canned_logs(tmp_path / "canned")
    (tmp_path / "props.json").write_text(json.dumps(PROPS))
    root = tmp_path / "device"
    (root / NATIVE_LIBS.lstrip("/")).mkdir(parents=True)
    calls = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("PATH", f"{FAKE_ADB_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(calls))
    monkeypatch.setenv("FAKE_ADB_DEVICES", f"{SERIAL}\tdevice\n")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_PROPS", str(tmp_path / "props.json"))
    monkeypatch.setenv("FAKE_ADB_LOGS", str(tmp_path / "canned"))
    for name in ("FAKE_ADB_DROP_BINARY", "FAKE_ADB_EXIT", "FAKE_ADB_CPUINFO", "FAKE_ADB_ACCURACY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    request = RunRequest("resnet", data, tasks, "image_classification_v2", model, "accuracy", "rapid",
                         tmp_path / "runs" / "accuracy")
    return Bench(tmp_path, write_target(tmp_path, binary, lib), request, binary, lib, model / "model.tflite", root,
                 calls)


def expected_run_line(mode: str, run_name: str) -> str:
    return (f"cd {DEV} && LD_LIBRARY_PATH={DEV} ./mlperf_main EXTERNAL image_classification_v2 --mode={mode} "
            f"--output_dir={DEV}/out/{run_name} --model_file={DEV}/models/{SHA}.tflite "
            f"--lib_path={DEV}/libtflitebackend.so --native_lib_path={NATIVE_LIBS} --scenario=SingleStream "
            "--min_query_count=64 --min_duration_ms=6000 --max_duration_ms=60000 "
            "--single_stream_expected_latency_ns=1000000 --custom_config=alpha:1,zeta:2 "
            f"--images_directory={DEV}/datasets/imagenet/img "
            f"--groundtruth_file={DEV}/datasets/imagenet/imagenet_val_full.txt "
            "--offset=0 --image_width=384 --image_height=384")


def expected_calls(bench: Bench, mode: str, run_name: str) -> list[list[str]]:
    s = ["-s", SERIAL]
    props = ["ro.product.manufacturer", "ro.product.model", "ro.product.board", "ro.build.version.release",
             "ro.soc.manufacturer", "ro.soc.model", "ro.product.marketname"]
    partial = bench.request.out.parent / f".{bench.request.out.name}.partial-{os.getpid()}"
    data = bench.request.data
    return [
        ["version"],
        ["devices"],
        *[[*s, "shell", f"getprop {name}"] for name in props],
        [*s, "shell", "cat /proc/cpuinfo"],
        [*s, "shell", f"mkdir -p {DEV} {DEV}/models {DEV}/datasets/imagenet"],
        [*s, "push", str(bench.binary), f"{DEV}/mlperf_main"],
        [*s, "shell", f"chmod 755 {DEV}/mlperf_main"],
        [*s, "push", str(bench.lib), f"{DEV}/libtflitebackend.so"],
        [*s, "push", str(bench.tflite), f"{DEV}/models/{SHA}.tflite"],
        [*s, "push", "--sync", str(data / "img"), f"{DEV}/datasets/imagenet"],
        [*s, "push", "--sync", str(data / "imagenet_val_full.txt"), f"{DEV}/datasets/imagenet/imagenet_val_full.txt"],
        [*s, "shell", f"rm -rf {DEV}/out/{run_name} && mkdir -p {DEV}/out/{run_name}"],
        [*s, "shell", expected_run_line(mode, run_name)],
        *[[*s, "pull", f"{DEV}/out/{run_name}/{name}", str(partial / name)]
          for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")],
    ]


def android_schema() -> dict:
    schema = json.loads(RESULT_SCHEMA.read_text())
    return {**schema["definitions"]["Android"], "definitions": schema["definitions"]}


def test_accuracy_run_on_the_device(bench: Bench) -> None:
    assert bench.launch() == 0

    assert bench.recorded() == expected_calls(bench, "AccuracyOnly", RUN_NAME)
    # What landed on the device, under device_dir.
    binary = bench.on_device(f"{DEV}/mlperf_main")
    assert binary.read_bytes() == bench.binary.read_bytes() and binary.stat().st_mode & 0o777 == 0o755
    assert bench.on_device(f"{DEV}/libtflitebackend.so").read_bytes() == bench.lib.read_bytes()
    assert bench.on_device(f"{DEV}/models/{SHA}.tflite").read_bytes() == TFLITE_BYTES
    dataset = bench.on_device(f"{DEV}/datasets/imagenet")
    assert sorted(p.name for p in (dataset / "img").iterdir()) == ["ILSVRC2012_val_00000001.JPEG",
                                                                    "ILSVRC2012_val_00000002.JPEG"]
    assert (dataset / "imagenet_val_full.txt").read_text() == "65\n970\n"
    assert not (dataset / "img" / "img").exists()
    # What came back.
    out = bench.request.out
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "accuracy.txt", "device.json", "device.log", "mlperf_log_accuracy.json", "mlperf_log_detail.txt",
        "mlperf_log_summary.txt", "mobile_run.json", "provenance.json"])
    for name in ("mlperf_log_accuracy.json", "mlperf_log_detail.txt", "mlperf_log_summary.txt"):
        assert (out / name).read_bytes() == (bench.tmp / "canned" / name).read_bytes()
    assert "Accuracy: 97.50%" in (out / "device.log").read_text()
    assert not list(out.parent.glob(".*partial*"))
    device = json.loads((out / "device.json").read_text())
    jsonschema.Draft6Validator(android_schema()).validate(device)
    assert device == {
        "os_version": "14", "manufacturer": "samsung", "model_code": "SM-S911B", "model_name": "Galaxy S23",
        "board_code": "kalama", "proc_cpuinfo_soc_name": "Qualcomm Technologies, Inc SM8550",
        "props": [{"type": "soc_manufacturer", "name": "ro.soc.manufacturer", "value": "QTI"},
                  {"type": "soc_model", "name": "ro.soc.model", "value": "SM8550"}]}
    record = read_mobile_run(out)
    assert record.accuracy == pytest.approx(0.975)
    assert record.accuracy_samples == 2
    assert (record.task_id, record.scenario, record.mode, record.run_mode, record.precision) == (
        "image_classification_v2", "SingleStream", "accuracy", "rapid", "fp32")
    assert (record.min_query_count, record.min_duration_s, record.max_duration_s) == (64, 6.0, 60.0)
    assert (record.model_path, record.model_sha256) == (str(bench.tflite), SHA)
    assert record.conversion["tflite_sha256"] == SHA
    assert record.dataset == {"name": "Imagenet classification validation set", "type": "IMAGENET",
                              "data_path": str(bench.request.data), "samples": 2}
    assert record.backend == {"name": "mobile_app_open", "package": "mlperf_main", "version": "?", "delegate": "cpu",
                              "delegate_name": "XNNPACK", "delegate_path": None, "threads": 1, "batch_size": 1,
                              "lib_path": "libtflitebackend.so", "serial": SERIAL}
    assert record.start_datetime.endswith("Z")
    assert (out / "accuracy.txt").read_text().startswith("accuracy=97.500%, good=2, total=2\n")


def test_performance_run_needs_loadgens_valid(bench: Bench) -> None:
    request = replace(bench.request, mode="performance", out=bench.tmp / "runs" / "performance")
    assert bench.launch(request) == 0
    run_name = "image_classification_v2_performance_rapid"
    assert [c for c in bench.recorded() if c[2:3] == ["shell"] and "mlperf_main EXTERNAL" in c[3]] == [
        ["-s", SERIAL, "shell", expected_run_line("PerformanceOnly", run_name)]]
    record = read_mobile_run(request.out)
    assert (record.accuracy, record.accuracy_samples, record.dataset["samples"]) == (None, None, 0)
    assert record.dataset["name"] == "Open images subset for classification"
    assert not (request.out / "accuracy.txt").exists()

    write_canned_logs(bench.tmp / "canned", validity="INVALID")
    again = replace(request, out=bench.tmp / "runs" / "invalid")
    with pytest.raises(InferenceError, match=r"judged the run INVALID: min duration met False, min queries met "
                                             r"True, early stopping met True"):
        bench.launch(again)
    assert not again.out.exists() and not list(again.out.parent.glob(".invalid*"))
    assert "Accuracy: 97.50%" in (again.out.parent / "invalid.device.log").read_text()


def test_the_configured_serial_among_several(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_DEVICES", f"emulator-5554\tdevice\n{SERIAL}\tdevice\n")
    bench = replace(bench, target=write_target(bench.tmp, bench.binary, bench.lib, serial=SERIAL))
    assert bench.launch() == 0
    calls = bench.recorded()
    assert calls[:2] == [["version"], ["devices"]]
    assert all(call[:2] == ["-s", SERIAL] for call in calls[2:]) and len(calls) > 10


def test_device_description_fallbacks(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    (bench.tmp / "props.json").write_text(json.dumps({k: v for k, v in PROPS.items() if k != "ro.product.marketname"}))
    monkeypatch.setenv("FAKE_ADB_CPUINFO", "processor\t: 0\nFeatures\t: fp asimd\n")
    assert bench.launch() == 0
    device = json.loads((bench.request.out / "device.json").read_text())
    jsonschema.Draft6Validator(android_schema()).validate(device)
    assert (device["model_name"], device["proc_cpuinfo_soc_name"]) == ("SM-S911B", "")


@pytest.mark.parametrize("dataset_type, printed, fraction", [
    ("IMAGENET", "76.19%", 0.7619), ("SQUAD", "90.1234", 0.901234), ("COCO", "0.2838 mAP", 0.2838),
    ("ADE20K", "0.4567 mIoU", 0.4567), ("SNUSR", "33.52 dB", 33.52),
])
def test_printed_accuracy_as_a_fraction(dataset_type: str, printed: str, fraction: float) -> None:
    output = f"I main.cc: Using External backend\nI0612 08:14:52.367 1 main.cc:471] Accuracy: {printed}\n"
    assert printed_accuracy(output, APP_DATASETS[dataset_type], Path("device.log")) == pytest.approx(fraction)


@pytest.mark.parametrize("devices, serial, message", [
    ("", None, r"target phone: no Android device attached"),
    (f"emulator-5554\tdevice\n{SERIAL}\tdevice\n", None,
     rf"target phone: 2 Android devices attached \({SERIAL}, emulator-5554\) and no adb.serial"),
    ("emulator-5554\tdevice\n", SERIAL,
     rf"target phone: adb.serial {SERIAL} is not attached \(attached: emulator-5554\)"),
    (f"{SERIAL}\tunauthorized\n", None, rf"target phone: device {SERIAL} is unauthorized: .*accept .*USB debugging"),
    (f"{SERIAL}\toffline\n", SERIAL, rf"target phone: device {SERIAL} is offline"),
], ids=["no-device", "two-devices-no-serial", "serial-not-attached", "unauthorized", "offline"])
def test_device_choice_errors(bench: Bench, monkeypatch: pytest.MonkeyPatch, devices: str, serial: str | None,
                              message: str) -> None:
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    bench = replace(bench, target=write_target(bench.tmp, bench.binary, bench.lib, serial=serial))
    with pytest.raises(RuntimeSetupError, match=message):
        bench.launch()
    assert bench.recorded() == [["version"], ["devices"]]
    assert not bench.request.out.exists()


def test_binary_missing_on_the_device(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_DROP_BINARY", "1")  # the push answers success and stores nothing
    with pytest.raises(RuntimeSetupError, match=rf"device {SERIAL}: the app's binary is missing on the device "
                                                rf"\({DEV}/mlperf_main\) right after its push of {bench.binary}: "
                                                r".*chmod: .*: No such file or directory"):
        bench.launch()
    assert not bench.on_device(f"{DEV}/mlperf_main").exists()
    assert not [c for c in bench.recorded() if "mlperf_main EXTERNAL" in " ".join(c)]


def test_binary_gone_when_run(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_DROP_BINARY", "run")  # the shell answers 127, `./mlperf_main: not found`
    with pytest.raises(RuntimeSetupError, match=rf"device {SERIAL}: the app's binary is missing on the device "
                                                rf"\({DEV}/mlperf_main\).*mlperf_main: not found"):
        bench.launch()
    out = bench.request.out
    assert not out.exists() and not list(out.parent.glob(".accuracy*"))
    assert "./mlperf_main: not found" in (out.parent / "accuracy.device.log").read_text()
    assert not [c for c in bench.recorded() if "pull" in c]


def test_binary_failure_names_its_log(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_EXIT", "3")
    log = bench.request.out.parent / "accuracy.device.log"
    with pytest.raises(RuntimeSetupError,
                       match=rf"the app's binary exited 3: I main.cc: Accuracy: 97.50% \(log {log}\)"):
        bench.launch()
    assert log.is_file() and not bench.request.out.exists()


def test_a_log_missing_after_a_clean_exit_is_named(bench: Bench) -> None:
    (bench.tmp / "canned" / "mlperf_log_detail.txt").unlink()
    with pytest.raises(RuntimeSetupError, match=rf"the app's binary exited 0 but wrote no mlperf_log_detail.txt in "
                                                rf"{DEV}/out/{RUN_NAME}"):
        bench.launch()
    assert not bench.request.out.exists() and (bench.request.out.parent / "accuracy.device.log").is_file()


@pytest.mark.parametrize("printed, message", [
    ("", r"the app's binary printed no 'Accuracy: ...' line in an accuracy run"),
    ("N/A", r"the app's binary scored nothing: 'Accuracy: N/A'"),
])
def test_an_accuracy_run_without_its_figure_fails(bench: Bench, monkeypatch: pytest.MonkeyPatch, printed: str,
                                                  message: str) -> None:
    monkeypatch.setenv("FAKE_ADB_ACCURACY", printed)
    log = bench.request.out.parent / "accuracy.device.log"
    with pytest.raises(BenchpipeError, match=rf"{log}: {message}"):
        bench.launch()
    assert not bench.request.out.exists() and "I main.cc:" in log.read_text()


def test_only_mobile_run_jobs(bench: Bench) -> None:
    command = ["benchpipe", "infer", "--benchmark", "resnet", "--out", str(bench.request.out)]
    with pytest.raises(RuntimeSetupError, match=r"the adb runtime runs only `benchpipe mobile run` jobs, "
                                                r"not `benchpipe infer --benchmark`"):
        bench.launch(command=command)
    assert bench.recorded() == [["version"]]


def test_a_missing_dataset_file_is_named(bench: Bench) -> None:
    missing = bench.request.data / "imagenet_val_full.txt"
    missing.unlink()
    with pytest.raises(ConfigError, match=rf"{missing}: missing: the app's IMAGENET dataset needs the file "
                                          r"imagenet_val_full.txt"):
        bench.launch()
    assert bench.recorded() == [["version"]]


def test_check_needs_the_adb_command(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    for_target(bench.target).check()
    target = write_target(bench.tmp, bench.binary, bench.lib, adb="adb-not-here")
    with pytest.raises(RuntimeSetupError, match=r"adb command 'adb-not-here' not found: install Android "
                                                r"platform-tools .*or set adb.adb"):
        launch(target, ["benchpipe", *bench.request.argv()], inputs=[], output=bench.request.out,
               images=bench.tmp / "images")
    assert for_target(bench.target).version() == "Android Debug Bridge version 1.0.41"


def test_parse_devices() -> None:
    text = ("* daemon not running; starting now at tcp:5037\nList of devices attached\n"
            "R5CT1234\tdevice\nemulator-5554\toffline\n0123\tno permissions (user in plugdev group)\n\n")
    assert parse_devices(text) == {"R5CT1234": "device", "emulator-5554": "offline",
                                   "0123": "no permissions (user in plugdev group)"}


@pytest.mark.parametrize("dataset_type, mobile_task, flags", [
    ("SQUAD", task("natural_language_processing", "SQUAD", width=None, height=None, classes=None),
     ["--input_file=D/datasets/squad/squad_eval_mini.tfrecord",
      "--groundtruth_file=D/datasets/squad/squad_groundtruth.tfrecord"]),
    ("COCO", task("object_detection", "COCO", width=320, height=320, offset=1, classes=91),
     ["--images_directory=D/datasets/coco/img", "--groundtruth_file=D/datasets/coco/coco_val_full.pbtxt",
      "--offset=1", "--num_classes=91", "--image_width=320", "--image_height=320"]),
    ("ADE20K", task("image_segmentation_v2", "ADE20K", width=512, height=512, classes=31),
     ["--images_directory=D/datasets/ade20k/images", "--ground_truth_directory=D/datasets/ade20k/annotations",
      "--num_class=31", "--image_width=512", "--image_height=512"]),
    ("SNUSR", task("super_resolution", "SNUSR", width=960, height=540, classes=None),
     ["--images_directory=D/datasets/snusr/lr", "--ground_truth_directory=D/datasets/snusr/hr",
      "--image_width=960", "--image_height=540"]),
])
def test_dataset_flags_of_each_app_dataset(bench: Bench, dataset_type: str, mobile_task: MobileTask,
                                           flags: list[str]) -> None:
    settings = replace(bench.target.adb, device_dir="D")
    plan = DevicePlan(settings, mobile_task, bench.request, SHA)
    assert dataset_flags(plan, mobile_task, APP_DATASETS[dataset_type]) == flags
    offline = replace(mobile_task, scenario="Offline", runs={**mobile_task.runs, "rapid": RunMode(64, 0.0, 0.0)})
    line = binary_command(plan, offline, replace(bench.request, mode="performance"), APP_DATASETS[dataset_type])
    assert f"EXTERNAL {mobile_task.id} --mode=PerformanceOnly" in line
    assert "--scenario=Offline --min_query_count=64 --min_duration_ms=0 --max_duration_ms=0 --custom" in line
    assert "single_stream_expected_latency_ns" not in line and line.endswith(" ".join(flags))
    assert asdict(mobile_task)["dataset_type"] == dataset_type
