"""A real, minimal MLPerf inference submission tree for ``resnet`` (v6.0/v6.1 layout).

Every LoadGen log in it comes from a real ``mlperf_loadgen`` run against a tiny numpy SUT (a
fixed random linear classifier over 64 random "images"), so the official submission checker
reads what a harness writes; only the model is a stand-in. Runs are short (``min_duration_ms``,
300 ms by default): the checker flags each with its duration error, the one error development
mode accepts.

The SUT paces itself like a device whose speed scales with ``min_duration_ms``, so that every run
is VALID on any machine and the number of queries stays about the same (a few thousand) whatever
the duration: a 600,000 ms tree takes about 11 minutes per performance run, not hours of queries.

LoadGen allows one ``TestSettings.FromConfig`` per process (a second one logs an error that
invalidates the run), so each test runs in its own interpreter: this file, run as a script.

Layout written under ``root`` (the folder the checker gets as ``--input``)::

    <division>/<org>/systems/<system>.json
    <division>/<org>/src/tiny_sut/README.md
    <division>/<org>/results/<system>/resnet/<Scenario>/
        performance/run_1/{mlperf_log_detail.txt, mlperf_log_summary.txt}
        accuracy/{mlperf_log_detail.txt, mlperf_log_summary.txt, mlperf_log_accuracy.json, accuracy.txt}
        measurements.json, user.conf, README.md

Nothing here makes a closed tree complete: closed resnet also needs MultiStream (edge) and the
TEST01/TEST04 compliance runs, which the checker then reports missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

LOADGEN_MODEL = "resnet50"  # the model key of LoadGen's mlperf.conf and of user.conf
BENCHMARK = "resnet"  # the results folder; the checker maps it to its resnet model
SCENARIOS = {"edge": ("SingleStream", "Offline"), "datacenter": ("Server", "Offline")}
TOTAL_SAMPLES = 64  # the QSL: far below ImageNet's 50,000, so the dataset-size check fires
FEATURES, CLASSES = 16, 10
PERFORMANCE_SAMPLE_COUNT = 1024  # the checker's minimum for resnet
OFFICIAL_MIN_DURATION_MS = 600_000

# SingleStream: LoadGen pre-generates min_duration / target_latency queries and ends the run
# INVALID if they run out first, so the expected latency is half the simulated one; it stops
# issuing at min_duration.
SINGLE_STREAM_QUERIES = 4000
# Server: Poisson arrivals for min_duration; enough of them for the p99 early-stopping estimate
# (662 without late queries). Answered at numpy's speed, far inside resnet's 15 ms bound.
SERVER_QUERIES = 1500
# Offline: one query of target_qps x min_duration samples (LoadGen adds 10 %), at least
# mlperf.conf's 24,576; the simulated device needs OFFLINE_SLOWDOWN times min_duration for it.
OFFLINE_SAMPLES = 30_720
OFFLINE_SLOWDOWN = 1.1

MAX_ACCURACY_LOG = 10 * 1024  # what the checker accepts
VIEWABLE = 4096  # truncate_accuracy_log.py keeps this much of the head and of the tail
EXTRA_RUN_S = 120  # a run's timeout beyond its min_duration


@dataclass(frozen=True)
class TreeSpec:
    division: str = "open"
    system_type: str = "edge"
    submitter: str = "acme"
    system: str = "tiny-numpy"
    min_duration_ms: int = 300

    @property
    def scenarios(self) -> tuple[str, ...]:
        return SCENARIOS[self.system_type]

    def org_dir(self, root: Path) -> Path:
        return root / self.division / self.submitter

    def system_file(self, root: Path) -> Path:
        return self.org_dir(root) / "systems" / f"{self.system}.json"

    def scenario_dir(self, root: Path, scenario: str) -> Path:
        return self.org_dir(root) / "results" / self.system / BENCHMARK / scenario


# ---------------------------------------------------------------------------------------------
# The SUT and one LoadGen test (run in a child process)


def _dataset() -> tuple:
    """Features, weights and labels; labels differ from the model on every fifth sample (80 %)."""
    import numpy as np

    rng = np.random.default_rng(1234)
    features = rng.normal(size=(TOTAL_SAMPLES, FEATURES)).astype(np.float32)
    weights = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    labels = np.argmax(features @ weights, axis=1).astype(np.int32)
    labels[::5] = (labels[::5] + 1) % CLASSES
    return features, weights, labels


def single_stream_latency_s(min_duration_ms: int) -> float:
    return min_duration_ms / 1000 / SINGLE_STREAM_QUERIES


def offline_target_qps(min_duration_ms: int) -> float:
    return round(OFFLINE_SAMPLES * 1000 / min_duration_ms, 3)


def user_conf(scenario: str, min_duration_ms: int) -> str:
    """The user.conf of a run; times in ms, as LoadGen reads them."""
    prefix = f"{LOADGEN_MODEL}.{scenario}"
    lines = [
        f"{prefix}.min_duration = {min_duration_ms}",
        f"{prefix}.performance_sample_count_override = {PERFORMANCE_SAMPLE_COUNT}",
    ]
    if min_duration_ms < OFFICIAL_MIN_DURATION_MS:
        lines.insert(0, f"# min_duration below {OFFICIAL_MIN_DURATION_MS} ms: a development run")
    if scenario == "Server":
        lines.append(f"{prefix}.target_qps = {round(SERVER_QUERIES * 1000 / min_duration_ms, 3)}")
    elif scenario == "Offline":
        lines.append(f"{prefix}.target_qps = {offline_target_qps(min_duration_ms)}")
    else:
        lines.append(f"{prefix}.target_latency = {single_stream_latency_s(min_duration_ms) * 1000 / 2:.6f}")
    return "\n".join(lines) + "\n"


def _wait_until(deadline: float) -> None:
    # time.sleep overshoots by tens of microseconds: sleep most of the way, spin the rest.
    while (left := deadline - time.perf_counter()) > 0:
        if left > 0.002:
            time.sleep(left - 0.001)


def _pace_s(scenario: str, min_duration_ms: int) -> tuple[float, float]:
    """(seconds per query, seconds per sample) of the simulated device."""
    if scenario == "SingleStream":
        return single_stream_latency_s(min_duration_ms), 0.0
    if scenario == "Offline":
        return 0.0, OFFLINE_SLOWDOWN / offline_target_qps(min_duration_ms)
    return 0.0, 0.0


def _run_loadgen(
    out_dir: Path, conf: Path, scenario: str, mode: str, min_duration_ms: int, overrides: dict[str, int]
) -> None:
    """One LoadGen test, its logs written to ``out_dir``."""
    import mlperf_loadgen as lg
    import numpy as np

    features, weights, _ = _dataset()
    settings = lg.TestSettings()
    if settings.FromConfig(str(conf), LOADGEN_MODEL, scenario) != 0:
        raise SystemExit(f"{conf}: LoadGen rejected it")
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly if mode == "performance" else lg.TestMode.AccuracyOnly
    for key, value in overrides.items():
        # What a harness that sets TestSettings in code does: user.conf cannot change the seeds.
        setattr(settings, key, value)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(out_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    per_query, per_sample = _pace_s(scenario, min_duration_ms)

    def issue(queries) -> None:
        started = time.perf_counter()
        index = np.fromiter((q.index for q in queries), dtype=np.int64, count=len(queries))
        # Kept alive until QuerySamplesComplete returns: LoadGen copies from these buffers.
        predicted = np.ascontiguousarray(np.argmax(features[index] @ weights, axis=1).astype(np.int32))
        address, size = predicted.ctypes.data, predicted.itemsize
        _wait_until(started + per_query + per_sample * len(queries))
        lg.QuerySamplesComplete(
            [lg.QuerySampleResponse(q.id, address + i * size, size) for i, q in enumerate(queries)]
        )

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(TOTAL_SAMPLES, TOTAL_SAMPLES, lambda samples: None, lambda samples: None)
    try:
        # An audit file that does not exist: an audit.config in the cwd would make this a compliance run.
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings, str(out_dir / "no-audit.config"))
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)


def run_test(
    out_dir: Path, conf: Path, scenario: str, mode: str, min_duration_ms: int,
    overrides: dict[str, int] | None = None,
) -> None:
    """One LoadGen test in a fresh interpreter; ``overrides`` are TestSettings set after ``conf``."""
    out_dir.mkdir(parents=True, exist_ok=True)  # LoadGen aborts if its outdir is missing
    request = {"out_dir": str(out_dir), "conf": str(conf), "scenario": scenario, "mode": mode,
               "min_duration_ms": min_duration_ms, "overrides": overrides or {}}
    proc = subprocess.run(
        [sys.executable, __file__, json.dumps(request)], cwd=out_dir, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=EXTRA_RUN_S + 2 * min_duration_ms / 1000,
    )
    if proc.returncode != 0 or not (out_dir / "mlperf_log_detail.txt").is_file():
        raise RuntimeError(f"LoadGen {scenario} {mode} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    # Only the detail and summary logs belong in a submission (the accuracy log in accuracy/).
    (out_dir / "mlperf_log_trace.json").unlink(missing_ok=True)
    if mode == "performance":
        (out_dir / "mlperf_log_accuracy.json").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Accuracy files


def write_accuracy(acc_dir: Path) -> float:
    """accuracy.txt from the full accuracy log, then the log truncated as the checker wants it."""
    import numpy as np

    log = acc_dir / "mlperf_log_accuracy.json"
    _, _, labels = _dataset()
    predicted = {
        int(e["qsl_idx"]): int(np.frombuffer(bytes.fromhex(e["data"]), dtype=np.int32)[0])
        for e in json.loads(log.read_text())
    }
    good = sum(int(labels[i] == p) for i, p in predicted.items())
    accuracy = 100.0 * good / len(predicted)
    digest = hashlib.sha256(log.read_bytes()).hexdigest()
    (acc_dir / "accuracy.txt").write_text(
        f"accuracy={accuracy:.3f}%, good={good}, total={len(predicted)}\nhash={digest}\n"
    )
    truncate_accuracy_log(log)
    return accuracy


def truncate_accuracy_log(log: Path) -> None:
    """As mlcommons' truncate_accuracy_log.py: the first and last 4 KiB, if over the limit."""
    data = log.read_bytes()
    if len(data) > MAX_ACCURACY_LOG:
        log.write_bytes(data[:VIEWABLE] + b"\n\n...\n\n" + data[-VIEWABLE:])


# ---------------------------------------------------------------------------------------------
# Descriptions


def system_json(spec: TreeSpec) -> dict[str, str]:
    """Every field the v6.1 checker requires, all strings (integers crash or count as empty)."""
    return {
        "submitter": spec.submitter,
        "division": spec.division,
        "status": "rdi",
        "system_name": f"{spec.system} (tiny numpy SUT)",
        "system_type": spec.system_type,
        "system_type_detail": "test fixture",
        "number_of_nodes": "1",
        "host_processors_per_node": "1",
        "host_processor_model_name": "generic x86_64",
        "host_processor_core_count": "2",
        "host_processor_vcpu_count": "2",
        "host_processor_frequency": "N/A",
        "host_processor_caches": "N/A",
        "host_processor_interconnect": "N/A",
        "host_memory_capacity": "4 GB",
        "host_memory_configuration": "N/A",
        "host_storage_type": "local disk",
        "host_storage_capacity": "N/A",
        "host_networking": "N/A",
        "host_networking_topology": "N/A",
        "host_network_card_count": "0",
        "accelerators_per_node": "0",
        "accelerator_model_name": "N/A",
        "accelerator_frequency": "N/A",
        "accelerator_host_interconnect": "N/A",
        "accelerator_interconnect": "N/A",
        "accelerator_interconnect_topology": "N/A",
        "accelerator_memory_capacity": "N/A",
        "accelerator_memory_configuration": "N/A",
        "accelerator_on-chip_memories": "N/A",
        "cooling": "air",
        "framework": "numpy",
        "operating_system": "Linux",
        "other_software_stack": "mlcommons-loadgen",
        "hw_notes": "test fixture",
        "sw_notes": "test fixture",
    }


MEASUREMENTS = {
    "input_data_types": "fp32",
    "retraining": "no",
    "starting_weights_filename": "random weights (seed 1234)",
    "weight_data_types": "fp32",
    "weight_transformations": "none",
}


def _dump(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# The tree


def run_performance(root: Path, spec: TreeSpec, scenario: str, overrides: dict[str, int] | None = None) -> Path:
    """(Re)run a scenario's performance test into the tree; returns its run_1 folder."""
    folder = spec.scenario_dir(root, scenario)
    run_dir = folder / "performance" / "run_1"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_test(run_dir, folder / "user.conf", scenario, "performance", spec.min_duration_ms, overrides)
    return run_dir


def _write_scenario(root: Path, spec: TreeSpec, scenario: str) -> None:
    folder = spec.scenario_dir(root, scenario)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user.conf").write_text(user_conf(scenario, spec.min_duration_ms))
    run_performance(root, spec, scenario)
    run_test(folder / "accuracy", folder / "user.conf", scenario, "accuracy", spec.min_duration_ms)
    write_accuracy(folder / "accuracy")
    _dump(folder / "measurements.json", MEASUREMENTS)
    (folder / "README.md").write_text(
        f"# {BENCHMARK} {scenario}\n\nTiny numpy SUT, min_duration {spec.min_duration_ms} ms.\n"
    )


def build_tree(root: Path, spec: TreeSpec = TreeSpec()) -> Path:
    """The whole tree under ``root``: each scenario's performance and accuracy run. Returns root."""
    if spec.system_type not in SCENARIOS:
        raise ValueError(f"system_type {spec.system_type!r}: one of {', '.join(SCENARIOS)}")
    org = spec.org_dir(root)
    _dump(spec.system_file(root), system_json(spec))
    (org / "src" / "tiny_sut").mkdir(parents=True, exist_ok=True)
    (org / "src" / "tiny_sut" / "README.md").write_text("A fixed random linear classifier in numpy.\n")
    for scenario in spec.scenarios:
        _write_scenario(root, spec, scenario)
    return root


def copy_tree(src: Path, spec: TreeSpec, dst: Path, division: str | None = None) -> TreeSpec:
    """A copy of a built tree, moved to ``division`` (folder and system JSON) if given."""
    moved = replace(spec, division=division or spec.division)
    shutil.copytree(spec.org_dir(src), moved.org_dir(dst))
    description = json.loads(moved.system_file(dst).read_text())
    _dump(moved.system_file(dst), {**description, "division": moved.division})
    return moved


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    _run_loadgen(
        Path(request["out_dir"]), Path(request["conf"]), request["scenario"], request["mode"],
        request["min_duration_ms"], request["overrides"],
    )
