"""Runtime adb: a Mobile task run by the Mobile app's own command-line binary on an Android phone.

benchpipe cannot run on the phone, so this runtime does not run the job's command: it reads the
``benchpipe mobile run ...`` line (RunRequest.parse) and does on the device what that stage does
on a host, with the app's binary (mobile_app_open flutter/cpp/binary:main) as the harness:

    1. choose the device (``adb devices``; the target's adb.serial when several are attached)
    2. read its description (getprop, /proc/cpuinfo) into device.json, the shape of the app's
       extended result's ``Android`` object
    3. push the binary, the backend library, the model (named by its sha256) and the dataset,
       in the app's own layout (APP_DATASETS), under adb.device_dir
    4. run the binary once, with the task's scenario and run-mode minimums as the app sets them,
       its output kept as device.log
    5. pull LoadGen's three logs back and write mobile_run.json, as ``benchpipe mobile run`` does

Everything lands in a temporary folder renamed to the job's output only when the run is usable
(a performance run LoadGen judged VALID, an accuracy run whose figure the binary printed); a failed
run keeps only its device log, beside the output, for the error to name.
"""

from __future__ import annotations

import json
import math
import posixpath
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.config import AdbDevice, Target
from benchpipe.contracts.errors import BenchpipeError, ConfigError, InferenceError, RuntimeSetupError
from benchpipe.contracts.layout import ACCURACY_LOG, ACCURACY_TXT, DETAIL_LOG, SUMMARY_LOG
from benchpipe.infer.litert import DELEGATE_NAMES
from benchpipe.mlcommons.mobile_app import MobileTask
from benchpipe.mobile.convert import Conversion, check_model
from benchpipe.mobile.result import DEVICE_JSON, DEVICE_LOG, PRINTED_SCALES
from benchpipe.mobile.result import printed_accuracy as read_printed_accuracy
from benchpipe.mobile.run import MobileRun, RunRequest, read_tasks_json
from benchpipe.runtime.base import ImageRef, Runtime, run_quiet
from benchpipe.runtime.job import Job

BINARY = "mlperf_main"
LOGS = (SUMMARY_LOG, DETAIL_LOG, ACCURACY_LOG)
NOT_A_MOBILE_RUN = "the adb runtime runs only `benchpipe mobile run` jobs"
# Short questions to adb (devices, getprop, mkdir); pushes and the run itself take as long as they take.
QUICK_S = 120
# The binary's default, given explicitly: LoadGen pre-generates queries from it (SingleStream only).
SINGLE_STREAM_EXPECTED_LATENCY_NS = 1_000_000
# getprop names of the app's extended result's Android object (flutter/lib device info).
PROPS = {
    "manufacturer": "ro.product.manufacturer",
    "model_code": "ro.product.model",
    "board_code": "ro.product.board",
    "os_version": "ro.build.version.release",
    "soc_manufacturer": "ro.soc.manufacturer",
    "soc_model": "ro.soc.model",
    "model_name": "ro.product.marketname",
}


@dataclass(frozen=True)
class AppDataset:
    """What the app's binary reads of one dataset type: the entries of its folder (a trailing ``/``
    marks a folder), the flags that point at them, and the flags taken from the task."""

    entries: tuple[str, ...]
    path_flags: tuple[tuple[str, str], ...]  # (flag, entry)
    task_flags: tuple[str, ...]  # offset, num_classes, num_class, image_width, image_height
    accuracy_scale: float  # what the printed accuracy is divided by (mobile.result.PRINTED_SCALES)


# The app's dataset layouts and flags (flutter/cpp/binary/main.cc, one case per DatasetConfig type).
APP_DATASETS: dict[str, AppDataset] = {
    "IMAGENET": AppDataset(("img/", "imagenet_val_full.txt"),
                           (("images_directory", "img/"), ("groundtruth_file", "imagenet_val_full.txt")),
                           ("offset", "image_width", "image_height"), PRINTED_SCALES["IMAGENET"]),
    "SQUAD": AppDataset(("squad_eval_mini.tfrecord", "squad_groundtruth.tfrecord"),
                        (("input_file", "squad_eval_mini.tfrecord"),
                         ("groundtruth_file", "squad_groundtruth.tfrecord")),
                        (), PRINTED_SCALES["SQUAD"]),
    "COCO": AppDataset(("img/", "coco_val_full.pbtxt"),
                       (("images_directory", "img/"), ("groundtruth_file", "coco_val_full.pbtxt")),
                       ("offset", "num_classes", "image_width", "image_height"), PRINTED_SCALES["COCO"]),
    "ADE20K": AppDataset(("images/", "annotations/"),
                         (("images_directory", "images/"), ("ground_truth_directory", "annotations/")),
                         ("num_class", "image_width", "image_height"), PRINTED_SCALES["ADE20K"]),
    "SNUSR": AppDataset(("lr/", "hr/"),
                        (("images_directory", "lr/"), ("ground_truth_directory", "hr/")),
                        ("image_width", "image_height"), PRINTED_SCALES["SNUSR"]),
}


class AdbRuntime(Runtime):
    """Jobs run as the Mobile app's binary on the target's Android device."""

    name = "adb"

    def __init__(self, target: Target | None = None) -> None:
        self.target = target

    def _settings(self) -> AdbDevice:
        if self.target is None or self.target.adb is None:
            raise RuntimeSetupError("runtime adb needs the target's adb settings (binary, lib_path)")
        return self.target.adb

    def version(self) -> str:
        lines = run_quiet([self._settings().adb, "version"], "the adb runtime's version").strip().splitlines()
        return lines[0] if lines else "?"

    def check(self) -> None:
        command = self._settings().adb
        if shutil.which(command) is None and not Path(command).is_file():
            raise RuntimeSetupError(f"adb command '{command}' not found: install Android platform-tools "
                                    "(apt install adb) or set adb.adb to its path")

    def run(self, target: Target, job: Job, image: ImageRef | None) -> int:
        settings = target.adb
        if settings is None:
            raise RuntimeSetupError(f"target {target.name}: runtime adb needs the target's adb settings")
        request = mobile_request(job, target.name)
        if (job.workdir / request.out).resolve() != job.output:
            raise RuntimeSetupError(f"target {target.name}: the job's output {job.output} is not the run's "
                                    f"--out {request.out}: the adb runtime writes the run's folder only")
        for key, path in (("adb.binary", settings.binary), ("adb.lib_path", settings.lib_path)):
            if not (job.workdir / path).is_file():
                raise ConfigError(f"target {target.name}: {key} {path}: no such file on this host")
        task = _task(request)
        tflite, conversion = check_model(request.model)
        dataset = app_dataset(task, request.data)
        if request.delegate.kind != target.litert.delegate:
            raise ConfigError(f"target {target.name}: litert.delegate is {target.litert.delegate}, the job asks "
                              f"for --delegate {request.delegate.kind}")
        adb = Adb(settings.adb, choose_serial(settings.adb, settings.serial, target.name), target.name)
        device = read_device(adb)
        plan = DevicePlan(settings, task, request, conversion.tflite_sha256)
        push_inputs(adb, plan, tflite, request.data, dataset)
        run_on_device(adb, plan, target, request, task, tflite, conversion, device)
        return 0


# --- the job ------------------------------------------------------------------------------------

def mobile_request(job: Job, target: str) -> RunRequest:
    """The ``benchpipe mobile run`` the job's command makes, its paths absolute; any other command is refused."""
    argv = list(job.command)
    if argv[:1] != ["benchpipe"] or argv[1:3] != ["mobile", "run"]:
        raise RuntimeSetupError(f"target {target}: {NOT_A_MOBILE_RUN}, not `{shlex.join(argv[:3])}`")
    request = RunRequest.parse(argv[1:])
    return replace(request, **{name: (job.workdir / getattr(request, name)).resolve()
                               for name in ("data", "tasks", "model", "out")})


def _task(request: RunRequest) -> MobileTask:
    tasks = read_tasks_json(request.tasks)
    if request.task not in tasks:
        raise ConfigError(f"{request.tasks}: no task '{request.task}' (tasks: {', '.join(tasks)})")
    return tasks[request.task]


def app_dataset(task: MobileTask, data: Path) -> AppDataset:
    """The app's layout of the task's dataset type, with every entry checked on the host."""
    layout = APP_DATASETS.get(task.dataset_type)
    if layout is None:
        raise ConfigError(f"task {task.id}: the adb runtime knows the app's datasets {', '.join(APP_DATASETS)}, "
                          f"not {task.dataset_type}")
    for entry in layout.entries:
        path = data / entry.rstrip("/")
        if not (path.is_dir() if entry.endswith("/") else path.is_file()):
            kind = "folder" if entry.endswith("/") else "file"
            raise ConfigError(f"{path}: missing: the app's {task.dataset_type} dataset needs the {kind} "
                              f"{entry} in {data}")
    return layout


# --- adb ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Adb:
    """adb bound to one device: every call names it (``-s SERIAL``)."""

    command: str
    serial: str
    target: str  # the target's name, for error lines

    def argv(self, *args: str) -> list[str]:
        return [self.command, "-s", self.serial, *args]

    def where(self) -> str:
        return f"target {self.target}: device {self.serial}"

    def call(self, *args: str, timeout: float | None = QUICK_S) -> str:
        argv = self.argv(*args)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise RuntimeSetupError(f"{self.where()}: adb command '{self.command}' not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise RuntimeSetupError(f"{self.where()}: `{shlex.join(argv)}` did not answer in {timeout:g} s") from exc
        if proc.returncode != 0:
            raise RuntimeSetupError(f"{self.where()}: `{shlex.join(argv)}` failed: "
                                    f"{last_line(proc.stderr + proc.stdout) or f'exit {proc.returncode}'}")
        return proc.stdout

    def shell(self, command: str) -> str:
        # One string: the device's sh parses it, as it would parse it typed there.
        return self.call("shell", command)

    def push(self, host: Path, device: str, sync: bool = False) -> None:
        self.call("push", *(["--sync"] if sync else []), str(host), device, timeout=None)

    def pull(self, device: str, host: Path) -> None:
        self.call("pull", device, str(host), timeout=None)

    def getprop(self, name: str) -> str:
        return self.shell(f"getprop {name}").strip()


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def parse_devices(text: str) -> dict[str, str]:
    """``adb devices``' answer: state by serial (device, unauthorized, offline, ...)."""
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("List of devices attached")), None)
    if header is None:
        raise RuntimeSetupError(f"`adb devices` answered without its 'List of devices attached' line: "
                                f"{last_line(text) or '(nothing)'}")
    devices = {}
    for line in lines[header + 1:]:
        # "SERIAL\tSTATE"; a state may have spaces ("no permissions (...)"), a serial never.
        fields = line.strip().split(None, 1)
        if fields:
            devices[fields[0]] = fields[1].strip() if len(fields) > 1 else "?"
    return devices


def choose_serial(command: str, configured: str | None, target: str) -> str:
    """The one device the target's jobs run on, refused unless adb can use it."""
    devices = parse_devices(run_quiet([command, "devices"], f"target {target}'s Android device"))
    if not devices:
        raise RuntimeSetupError(f"target {target}: no Android device attached (`adb devices` lists none): "
                                "connect the phone with USB debugging on")
    if configured is None:
        if len(devices) > 1:
            raise RuntimeSetupError(f"target {target}: {len(devices)} Android devices attached "
                                    f"({', '.join(sorted(devices))}) and no adb.serial: set it to one of them")
        serial = next(iter(devices))
    elif configured not in devices:
        raise RuntimeSetupError(f"target {target}: adb.serial {configured} is not attached "
                                f"(attached: {', '.join(sorted(devices))})")
    else:
        serial = configured
    state = devices[serial]
    if state == "unauthorized":
        raise RuntimeSetupError(f"target {target}: device {serial} is unauthorized: unlock the phone and "
                                "accept its 'Allow USB debugging?' prompt, then run again")
    if state == "offline":
        raise RuntimeSetupError(f"target {target}: device {serial} is offline: reconnect it "
                                "(or run `adb kill-server`) and run again")
    if state != "device":
        raise RuntimeSetupError(f"target {target}: device {serial} is in state '{state}', not 'device'")
    return serial


# --- the device ---------------------------------------------------------------------------------

def read_device(adb: Adb) -> dict[str, Any]:
    """The device as the app's extended result describes an Android one (its ``Android`` object)."""
    props = {key: adb.getprop(name) for key, name in PROPS.items()}
    return {
        "os_version": props["os_version"],
        "manufacturer": props["manufacturer"],
        "model_code": props["model_code"],
        "model_name": props["model_name"] or props["model_code"],
        "board_code": props["board_code"],
        "proc_cpuinfo_soc_name": cpuinfo_hardware(adb.shell("cat /proc/cpuinfo")),
        "props": [{"type": key, "name": PROPS[key], "value": props[key]} for key in ("soc_manufacturer", "soc_model")],
    }


def cpuinfo_hardware(text: str) -> str:
    """/proc/cpuinfo's ``Hardware`` line (Qualcomm and Exynos kernels write one; many do not)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Hardware":
            return value.strip()
    return ""


@dataclass(frozen=True)
class DevicePlan:
    """Where each thing lives on the device, under adb.device_dir."""

    settings: AdbDevice
    task: MobileTask
    request: RunRequest
    model_sha256: str

    @property
    def root(self) -> str:
        return self.settings.device_dir.rstrip("/") or "/"

    def at(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @property
    def binary(self) -> str:
        return self.at(BINARY)

    @property
    def lib(self) -> str:
        return self.at(Path(self.settings.lib_path).name)

    @property
    def model(self) -> str:
        return self.at("models", f"{self.model_sha256}.tflite")

    @property
    def dataset(self) -> str:
        return self.at("datasets", self.task.dataset_type.lower())

    @property
    def out(self) -> str:
        return self.at("out", f"{self.task.id}_{self.request.mode}_{self.request.run_mode}")


def push_inputs(adb: Adb, plan: DevicePlan, tflite: Path, data: Path, dataset: AppDataset) -> None:
    settings = plan.settings
    adb.shell(shlex.join(["mkdir", "-p", plan.root, plan.at("models"), plan.dataset]))
    adb.push(Path(settings.binary), plan.binary)
    make_executable(adb, plan)
    adb.push(Path(settings.lib_path), plan.lib)
    adb.push(tflite, plan.model)
    for entry in dataset.entries:
        # A folder goes onto the dataset's folder, which exists: adb, like cp -r, puts it inside.
        # --sync: a dataset already on the device is not sent again.
        name = entry.rstrip("/")
        adb.push(data / name, plan.dataset if entry.endswith("/") else posixpath.join(plan.dataset, name), sync=True)


def make_executable(adb: Adb, plan: DevicePlan) -> None:
    try:
        adb.shell(shlex.join(["chmod", "755", plan.binary]))
    except RuntimeSetupError as exc:
        if "No such file" not in str(exc):
            raise
        raise RuntimeSetupError(f"{adb.where()}: the app's binary is missing on the device ({plan.binary}) right "
                                f"after its push of {plan.settings.binary}: {exc}") from exc


def binary_command(plan: DevicePlan, task: MobileTask, request: RunRequest, dataset: AppDataset) -> str:
    """The one shell line that runs the app's binary on the device."""
    runs = task.runs[request.run_mode]
    # main.cc takes `<backend> <benchmark id>` as its two positional arguments (EXTERNAL and the
    # task's id); its README's `EXTERNAL IMAGENET` predates the benchmark id and is stale.
    args = [f"./{BINARY}", "EXTERNAL", task.id,
            f"--mode={'AccuracyOnly' if request.mode == 'accuracy' else 'PerformanceOnly'}",
            f"--output_dir={plan.out}", f"--model_file={plan.model}", f"--lib_path={plan.lib}"]
    if plan.settings.native_lib_path:
        args.append(f"--native_lib_path={plan.settings.native_lib_path}")
    args += [f"--scenario={task.scenario}", f"--min_query_count={runs.min_query_count}",
             f"--min_duration_ms={math.ceil(runs.min_duration_s * 1000)}",
             f"--max_duration_ms={math.ceil(runs.max_duration_s * 1000)}"]
    if task.scenario == "SingleStream":
        args.append(f"--single_stream_expected_latency_ns={SINGLE_STREAM_EXPECTED_LATENCY_NS}")
    if plan.settings.custom_config:
        args.append("--custom_config=" + ",".join(f"{k}:{v}" for k, v in sorted(plan.settings.custom_config.items())))
    args += dataset_flags(plan, task, dataset)
    return (f"cd {shlex.quote(plan.root)} && LD_LIBRARY_PATH={shlex.quote(plan.root)} "
            + " ".join(shlex.quote(a) for a in args))


def dataset_flags(plan: DevicePlan, task: MobileTask, dataset: AppDataset) -> list[str]:
    flags = [f"--{flag}={posixpath.join(plan.dataset, entry.rstrip('/'))}" for flag, entry in dataset.path_flags]
    values = {"offset": task.model_offset, "num_classes": task.num_classes, "num_class": task.num_classes,
              "image_width": task.image_width, "image_height": task.image_height}
    return flags + [f"--{name}={values[name]}" for name in dataset.task_flags if values[name] is not None]


def run_on_device(adb: Adb, plan: DevicePlan, target: Target, request: RunRequest, task: MobileTask,
                  tflite: Path, conversion: Conversion, device: dict[str, Any]) -> MobileRun:
    """Run the binary and bring its logs back into the request's folder, renamed there only if usable."""
    dataset = APP_DATASETS[task.dataset_type]
    failed_log = request.out.parent / f"{request.out.name}.{DEVICE_LOG}"
    failed_log.unlink(missing_ok=True)
    # The binary refuses a missing output folder; a stale one would hand back another run's logs.
    adb.shell(f"rm -rf {shlex.quote(plan.out)} && mkdir -p {shlex.quote(plan.out)}")
    with atomic_dir(request.out) as tmp:
        start = datetime.now(timezone.utc)
        try:
            output = run_binary(adb, plan, binary_command(plan, task, request, dataset), tmp / DEVICE_LOG, failed_log)
            for name in LOGS:
                pull_log(adb, plan, name, tmp)
            accuracy = samples = None
            if request.mode == "accuracy":
                accuracy = printed_accuracy(output, dataset, failed_log)
                samples = logged_samples(tmp / ACCURACY_LOG)
                write_accuracy_txt(tmp, accuracy, samples, dataset)
            else:
                require_valid(tmp / DETAIL_LOG, adb, task, request)
        except BenchpipeError:
            if (tmp / DEVICE_LOG).is_file():
                shutil.copyfile(tmp / DEVICE_LOG, failed_log)
            raise
        (tmp / DEVICE_JSON).write_text(json.dumps(device, indent=2, sort_keys=True) + "\n")
        record = mobile_run(target, request, task, tflite, conversion, adb.serial, plan, start, accuracy, samples)
        record.write(tmp)
        # What drove the device: this host's benchpipe, as a host run records it (the result's build_info).
        provenance.write(tmp)
    return record


def run_binary(adb: Adb, plan: DevicePlan, command: str, log: Path, kept: Path) -> str:
    """The binary's output (stdout and stderr, as they came), also written to ``log``; a failure
    names ``kept``, where the log is kept once the run's folder is gone."""
    argv = adb.argv("shell", command)
    with open(log, "w") as f:
        # adb's shell protocol (adb 1.0.32 and later) passes the device command's exit status on.
        code = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT).returncode
    text = log.read_text(errors="replace")
    if code == 0:
        return text
    binary_missing = code == 127 or any(
        BINARY in line and ("not found" in line or "No such file or directory" in line) for line in text.splitlines())
    if binary_missing:
        raise RuntimeSetupError(f"{adb.where()}: the app's binary is missing on the device ({plan.binary}): its push "
                                f"of {plan.settings.binary} did not land there ({last_line(text)}; log {kept})")
    if code == 126:
        raise RuntimeSetupError(f"{adb.where()}: the app's binary {plan.binary} cannot execute there (built for "
                                f"another ABI?): {last_line(text)} (log {kept})")
    raise RuntimeSetupError(f"{adb.where()}: the app's binary exited {code}: {last_line(text) or '(no output)'} "
                            f"(log {kept})")


def pull_log(adb: Adb, plan: DevicePlan, name: str, into: Path) -> None:
    try:
        adb.pull(posixpath.join(plan.out, name), into / name)
    except RuntimeSetupError as exc:
        raise RuntimeSetupError(f"{adb.where()}: the app's binary exited 0 but wrote no {name} in {plan.out} "
                                f"({exc})") from exc
    if not (into / name).is_file():
        raise RuntimeSetupError(f"{adb.where()}: the app's binary exited 0 but {name} did not come back "
                                f"from {plan.out}")


def printed_accuracy(output: str, dataset: AppDataset, log: Path) -> float:
    """The figure of the binary's last ``Accuracy: ...`` line, as a fraction (AppDataset.accuracy_scale);
    an error names ``log``, where a failed run's output is kept. The Mobile result reads it again
    from the run's device.log, the same way."""
    return read_printed_accuracy(output, dataset.accuracy_scale, log)


def logged_samples(path: Path) -> int:
    try:
        return len({int(entry["qsl_idx"]) for entry in json.loads(path.read_text())})
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchpipeError(f"{path}: not LoadGen's accuracy log: {exc}") from exc


def write_accuracy_txt(run_dir: Path, accuracy: float, samples: int, dataset: AppDataset) -> None:
    """accuracy.txt as ``benchpipe mobile run`` writes it, so the Mobile result reads a device's run alike."""
    from benchpipe.contracts.hashing import sha256_file

    if dataset.accuracy_scale != 100.0:
        return  # mAP, mIoU and PSNR are not top-1 counts: no good/total to state
    (run_dir / ACCURACY_TXT).write_text(f"accuracy={accuracy * 100:.3f}%, good={round(accuracy * samples)}, "
                                        f"total={samples}\nhash={sha256_file(run_dir / ACCURACY_LOG)}\n")


def require_valid(detail_path: Path, adb: Adb, task: MobileTask, request: RunRequest) -> None:
    from benchpipe.results.loadgen_parser import parse_detail_log

    detail = parse_detail_log(detail_path)
    validity = detail.get("result_validity")
    if validity != "VALID":
        raise InferenceError(f"{adb.where()}: {task.id} {request.run_mode} performance: LoadGen judged the run "
                             f"{validity}: min duration met {detail.get('result_min_duration_met')}, min queries met "
                             f"{detail.get('result_min_queries_met')}, early stopping met "
                             f"{detail.get('early_stopping_met')} ({detail_path.name})")


def mobile_run(target: Target, request: RunRequest, task: MobileTask, tflite: Path, conversion: Conversion,
               serial: str, plan: DevicePlan, start: datetime, accuracy: float | None,
               samples: int | None) -> MobileRun:
    """mobile_run.json's record, filled as ``benchpipe mobile run`` fills it (run_task)."""
    runs = task.runs[request.run_mode]
    delegate = target.litert.delegate
    return MobileRun(
        benchmark=request.benchmark, task_id=task.id, task_name=task.name, scenario=task.scenario,
        mode=request.mode, run_mode=request.run_mode, precision=conversion.precision,
        min_query_count=runs.min_query_count, min_duration_s=runs.min_duration_s, max_duration_s=runs.max_duration_s,
        model_path=str(tflite), model_sha256=conversion.tflite_sha256, conversion=asdict(conversion),
        backend={"name": "mobile_app_open", "package": BINARY, "version": "?", "delegate": delegate,
                 "delegate_name": DELEGATE_NAMES[delegate], "delegate_path": None, "threads": request.threads,
                 "batch_size": 1, "lib_path": Path(plan.settings.lib_path).name, "serial": serial},
        dataset={"name": task.dataset_name if request.mode == "accuracy" else task.lite_dataset_name,
                 "type": task.dataset_type, "data_path": str(request.data), "samples": samples or 0},
        start_datetime=start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        accuracy=accuracy, accuracy_samples=samples,
    )
