"""``benchpipe reproduce TREE --select ...``: run a tree's training runs and LoadGen tests again and compare.

Selections name what the tree holds:

    <target>/<benchmark>/run_<n>             a training run (result_<n>.txt)
    <target>/<benchmark>/<scenario>/<mode>   a LoadGen test, e.g. local-cpu/digits/Offline/accuracy
                                             (modes: performance, accuracy, TEST01, TEST04; an LLM's
                                             TEST06)

Each rerun goes through the same ``benchpipe`` command line as the workflow's job, in a scratch
folder, with what the tree recorded. The dataset is the one whose manifest sha256 the tree
holds (prepared again once per reproduce, or the folder given with ``--data``, checked). Runs
and tests are then compared with the tree's logs, item by item.

A training run is trained again with the seed its log names and the hyperparameters of the
tree's config.json:

    status     the same outcome: the target reached (or not) in both
    accuracy   the same evaluation accuracy at every evaluation (ops are deterministic on CPU)
    time       time to train within ``time_tolerance`` (a fraction; 0.25 by default) of the tree's,
               or within TIME_FLOOR_S: a run of a second or two differs by more than a quarter
               from start-up and timer noise alone

A LoadGen test runs again (``benchpipe infer``) with the scenario's user.conf from the tree and
the calibration behind it (run kind, batching: ``benchpipe/raw/<target>/<benchmark>/<scenario>/
calibration.json``), serving the model whose sha256 the tree recorded (inference.parquet's
model_sha256, measurements.json). The tree does not hold the model's files, and training again
does not give the same bytes (the SavedModel's files differ from run to run even where every
evaluation is identical), so the model is given with ``--model DIR`` (repeatable: each test
serves the one whose sha256 it recorded), e.g. the run's ``model/`` in the workflow's runs/:

    model      the SavedModel's (an LLM: checkpoint folder's) sha256 is the recorded one (checked before the test runs)
    accuracy   accuracy mode: the same accuracy (the same answers on CPU)
    validity   performance modes (performance, TEST01, TEST04): the same result validity
    metric     the scenario's metric within ``performance_tolerance`` (PERFORMANCE_TOLERANCE,
               0.25 by default) of the tree's: short development runs on a shared machine vary

An LLM's TEST06 is judged by its outputs, not its timing (the tree keeps only its accuracy log,
every response, as MLCommons' script lays it out):

    verdict    benchpipe's TEST06 checks (first token, end-of-sequence, token counts) pass on the
               rerun's log as on the tree's
    outputs    the same samples answered, each with the same tokens (greedy decoding on CPU)

Where a result was made decides where it is made again. Runs and tests of the ``local``
runtime rerun on the host. Those made in a docker or podman image rerun in that image, through
``benchpipe run`` as the workflow's jobs ran, if the engine here holds an image with the
recorded id and digest; if not, the result is reported as not reproduced, naming the digest
and the commands that rebuild the image from its recorded lock (printed, never run). Apptainer
runs are reported with their SIF's sha256 and not re-run.

The report (``<tree>.reproduce.json``) says which tree was reproduced, when and where:
``root_sha256`` (the tree's manifest is verified first; a tree that does not verify is
refused), ``timestamp`` (UTC, ISO 8601, when the reproduction began), ``provenance`` (the
host that ran it: host name, Python, benchpipe and tool versions, checkout), ``datasets``
(per benchmark, the dataset each rerun read and its manifest's sha256 against the tree's
``benchpipe/datasets/<dataset>/manifest.json``) and, per run, the rerun job's own
``provenance.json`` (its runtime and image). The scratch folder of the reruns is removed once
every comparison is made, unless kept (``keep``, ``--keep``); a rerun that fails leaves it in
place, since the error names the log inside it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchpipe.contracts import registry
from benchpipe.contracts.errors import BenchpipeError, ConfigError, RuntimeSetupError
from benchpipe.contracts.layout import CONFIG_JSON, DATASETS_DIR, RAW_DIR, TABLES_DIR

TIME_TOLERANCE = 0.25
TIME_FLOOR_S = 1.0
# A LoadGen performance metric (samples/s, a latency percentile) of a short run on a shared
# machine moves by 10-20 % from one run to the next; more than a quarter is a difference.
PERFORMANCE_TOLERANCE = 0.25
# The engines `benchpipe run` can re-run a recorded image on, found by id and digest.
IMAGE_ENGINES = ("docker", "podman")


@dataclass(frozen=True)
class Selection:
    """A training run (``run``) or a LoadGen test (``scenario`` and ``mode``) of a tree."""

    target: str
    benchmark: str
    run: int | None = None
    scenario: str | None = None
    mode: str | None = None

    @classmethod
    def parse(cls, text: str) -> Selection:
        from benchpipe.contracts.config import LLM_ONLY_SCENARIOS
        from benchpipe.contracts.rounds import RUNNABLE_COMPLIANCE_TESTS
        from benchpipe.infer.loadgen_run import MODES
        from benchpipe.infer.sut import SCENARIOS

        # An LLM's Interactive test is in the tree like any other; infer runs it as LoadGen's Server.
        scenarios = (*SCENARIOS, *LLM_ONLY_SCENARIOS)
        modes = (*MODES, *RUNNABLE_COMPLIANCE_TESTS)
        parts = text.strip("/").split("/")
        if len(parts) == 3 and parts[2].startswith("run_") and parts[2][4:].isdigit():
            return cls(parts[0], parts[1], run=int(parts[2][4:]))
        if len(parts) == 4 and parts[2] in scenarios and parts[3] in modes:
            return cls(parts[0], parts[1], scenario=parts[2], mode=parts[3])
        raise ConfigError(
            f"--select {text!r}: expected <target>/<benchmark>/run_<n>, e.g. local-cpu/digits/run_0, or "
            f"<target>/<benchmark>/<scenario>/<mode> with a scenario of {', '.join(scenarios)} and a mode of "
            f"{', '.join(modes)}, e.g. local-cpu/digits/Offline/accuracy")

    @property
    def is_test(self) -> bool:
        return self.scenario is not None

    @property
    def job(self) -> str:
        """The provenance table's name for it."""
        return f"infer/{self.scenario}/{self.mode}" if self.is_test else f"train/run_{self.run}"

    def __str__(self) -> str:
        last = f"{self.scenario}/{self.mode}" if self.is_test else f"run_{self.run}"
        return f"{self.target}/{self.benchmark}/{last}"


@dataclass
class Comparison:
    run: str  # the selection: a training run or a LoadGen test
    status: str = "match"  # match, differ, not reproduced
    checks: list[str] = field(default_factory=list)  # what matched, each with its figures
    differences: list[str] = field(default_factory=list)
    where: str = "host"  # host, or the image the rerun ran in
    provenance: dict[str, Any] | None = None  # the rerun job's provenance.json; None where nothing ran

    def differ(self, what: str) -> None:
        self.status = "differ"
        self.differences.append(what)

    def not_reproduced(self, why: str) -> Comparison:
        self.status = "not reproduced"
        self.differences.append(why)
        return self


@dataclass(frozen=True)
class Options:
    data: Path | None = None
    target_file: Path | None = None
    models: tuple[Path, ...] = ()
    time_tolerance: float = TIME_TOLERANCE
    performance_tolerance: float = PERFORMANCE_TOLERANCE
    threads: int | None = None


@dataclass(frozen=True)
class DatasetCheck:
    """The dataset a benchmark's reruns read, checked against the one the tree's results came from."""

    benchmark: str
    dataset: str  # its name: the tree's benchpipe/datasets/<dataset>/
    source: str  # "--data", or "prepared again" (in the scratch folder)
    path: str  # where the reruns read it
    manifest_sha256: str  # of its manifest.json
    tree_manifest_sha256: str  # of the tree's benchpipe/datasets/<dataset>/manifest.json
    matched: bool  # another dataset is refused before any rerun, so a recorded check matched


@dataclass
class _Context:
    """What every selection of one tree shares."""

    tree: Path
    settings: dict[str, Any]
    work: Path
    options: Options
    datasets: dict[str, Path] = field(default_factory=dict)  # benchmark -> checked dataset
    dataset_checks: dict[str, DatasetCheck] = field(default_factory=dict)  # benchmark -> its check
    model_hashes: dict[Path, str] = field(default_factory=dict)


@dataclass
class Reproduction:
    """One reproduction of a tree: what was compared, on which tree, when, where, with which data."""

    tree: Path
    root_sha256: str | None  # the verified manifest's; None for a format 1 manifest, which records none
    timestamp: str  # UTC, ISO 8601: when the reproduction began
    provenance: dict[str, Any]  # the host that ran the reproduction
    options: Options
    results: list[Comparison]
    datasets: list[DatasetCheck]
    work: Path
    kept: bool  # whether the scratch folder was left in place


def reproduce(tree: Path, selections: list[Selection], work: Path | None = None, *, data: Path | None = None,
              target_file: Path | None = None, models: list[Path] | None = None,
              time_tolerance: float = TIME_TOLERANCE, performance_tolerance: float = PERFORMANCE_TOLERANCE,
              threads: int | None = None, keep: bool = False) -> Reproduction:
    """Rerun ``selections`` of ``tree`` in ``work`` (default: a new temporary folder) and compare.

    ``work`` is removed afterwards unless ``keep``: all of it if this call created it, else only
    the entries this call added (an existing folder may hold a dataset prepared by an earlier
    reproduction). A rerun that fails raises and leaves it, since the error names its log.
    """
    from benchpipe.package.manifest import verify_tree

    verified = verify_tree(tree)  # a tree that does not prove itself is no reference to compare with
    timestamp = _utc_now()
    options = Options(data, target_file, tuple(models or ()), time_tolerance, performance_tolerance, threads)
    # None: this call creates the folder, so all of it is scratch.
    existing = set(work.iterdir()) if work is not None and work.is_dir() else None
    work = work if work is not None else default_work()
    work.mkdir(parents=True, exist_ok=True)
    context = _Context(tree, json.loads((tree / CONFIG_JSON).read_text()), work, options)
    results = []
    for selection in selections:
        folder = work / str(selection).replace("/", "-")
        if selection.is_test:
            results.append(_reproduce_test(context, selection, folder))
        else:
            results.append(_reproduce_run(context, selection, folder))
    if not keep:
        _remove_scratch(work, existing)
    return Reproduction(tree, verified.root_sha256, timestamp, host_provenance(), options, results,
                        [context.dataset_checks[b] for b in sorted(context.dataset_checks)], work, keep)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def host_provenance() -> dict[str, Any]:
    """The machine and software that ran a reproduction (each rerun job records its own too)."""
    from benchpipe.package.manifest import tool_versions
    from benchpipe.provenance import code_state, local_runtime_version

    return {"host": socket.gethostname(), "runtime_version": local_runtime_version(),
            "python_version": platform.python_version(), "tools": tool_versions(), **code_state()}


def _remove_scratch(work: Path, existing: set[Path] | None) -> None:
    """``work`` if this reproduction created it (``existing`` None), else the entries it added."""
    if existing is None:
        shutil.rmtree(work)
        return
    for path in sorted(set(work.iterdir()) - existing):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


# --- where a rerun runs: the host, or the recorded image ------------------------------------------


@dataclass(frozen=True)
class _Launcher:
    """How a rerun's ``benchpipe`` command starts: on the host, or in the recorded image via ``benchpipe run``."""

    target_file: Path | None = None
    images: Path | None = None  # image records for `benchpipe run`; None: on the host

    def argv(self, command: list[str], inputs: list[Path], out: Path) -> list[str]:
        own = [sys.executable, "-m", "benchpipe.cli"]
        if self.images is None:
            return [*own, *command]
        argv = [*own, "run", "--target-file", str(self.target_file), "--images", str(self.images)]
        for path in inputs:
            argv += ["--input", str(path)]
        # Inside the image, its own benchpipe: the one the recorded result came from.
        return [*argv, "--output", str(out), "--", "benchpipe", *command]


def _launcher(context: _Context, selection: Selection, result: Comparison, work: Path) -> _Launcher | None:
    """Where ``selection`` reruns; None (``result`` says why) where it cannot."""
    row = _provenance_row(context.tree, selection)
    runtime = row.get("runtime")
    if runtime == "local":
        return _Launcher(context.options.target_file)
    if runtime not in IMAGE_ENGINES:
        result.not_reproduced(
            f"made on runtime {runtime} in image {row.get('image')} (id {row.get('image_id')}, SIF sha256 "
            f"{row.get('sif_sha256')}, lock sha256 {row.get('lock_sha256')}): reproduce re-runs local runs and "
            f"{' and '.join(IMAGE_ENGINES)} images; convert that image again (benchpipe image sif) and run the "
            "workflow's job in it")
        return None
    target_file = _target_file(context, selection, row)
    missing = _missing_image(row, target_file)
    if missing:
        result.not_reproduced(missing)
        return None
    images = work / "images"
    _image_record(row).write(images / runtime / f"{row['image']}.json")
    result.where = f"{runtime} image {row['image_id']} (digest {row['image_digest']})"
    return _Launcher(target_file, images)


def _table_row(tree: Path, table: str, wanted: dict[str, Any], what: str) -> dict[str, Any]:
    """The row of the tree's ``table`` whose columns hold ``wanted``; an error naming the table if none."""
    from benchpipe.results.tables import read_partitioned, table_folder

    folder = tree / TABLES_DIR / table_folder(table)
    for row in read_partitioned(folder).to_pylist():
        if all(row[column] == value for column, value in wanted.items()):
            return row
    raise BenchpipeError(f"{folder}: no row for {what}")


def _provenance_row(tree: Path, selection: Selection) -> dict[str, Any]:
    return _table_row(tree, "provenance.parquet",
                      {"target": selection.target, "benchmark": selection.benchmark, "job": selection.job},
                      f"{selection} (job {selection.job})")


def _target_file(context: _Context, selection: Selection, row: dict[str, Any]) -> Path:
    """The target the result ran on: ``--target-file``, else the checkout's config/targets/<target>.yaml."""
    from benchpipe.contracts.config import load_target
    from benchpipe.contracts.paths import SOURCE_ROOT

    path = context.options.target_file
    if path is None:
        path = SOURCE_ROOT.parent / context.settings["targets_dir"] / f"{selection.target}.yaml"
        if not path.is_file():
            raise ConfigError(f"{selection}: ran in a {row['runtime']} image; give --target-file "
                              f"(no {path} in this checkout)")
    target = load_target(path)
    if (target.runtime, target.image) != (row["runtime"], row["image"]):
        raise ConfigError(f"{path}: runtime {target.runtime}, image {target.image}; {selection} ran on runtime "
                          f"{row['runtime']} in image {row['image']}: another target")
    return path


def _missing_image(row: dict[str, Any], target_file: Path) -> str | None:
    """Why the recorded image cannot be used here, with the commands that rebuild it; None if it can."""
    from benchpipe.contracts.config import load_target
    from benchpipe.runtime import for_engine

    engine, image_id, digest = row["runtime"], row["image_id"], row["image_digest"]
    try:
        runtime = for_engine(engine, load_target(target_file))
        runtime.check()
        found = runtime.image_id(image_id)
        found_digest = runtime.inspect(image_id)[1] if found else None
    except RuntimeSetupError as exc:
        return f"{engine} is not usable here ({exc}): cannot look for image {image_id} (digest {digest}); " + \
            _rebuild_advice(row)
    if found is None:
        return f"{engine} has no image {image_id} (digest {digest}) that made it; " + _rebuild_advice(row)
    if found_digest != digest:
        return (f"{engine} has image {image_id} with digest {found_digest}, not the recorded {digest}; "
                + _rebuild_advice(row))
    return None


def _rebuild_advice(row: dict[str, Any]) -> str:
    """The commands the workflow's image rules run (workflow/rules/images.smk), from a benchpipe checkout."""
    from benchpipe.contracts.hashing import sha256_file
    from benchpipe.contracts.paths import SOURCE_ROOT

    image, engine = row["image"], row["runtime"]
    lock = Path("containers", image, "requirements.lock")
    here = SOURCE_ROOT.parent / lock
    have = sha256_file(here) if here.is_file() else None
    state = ("this checkout's is that lock" if have == row["lock_sha256"]
             else f"this checkout's has sha256 {have}: check out the commit {row['code_commit']} first" if have
             else "this checkout has none")
    return (f"rebuild it from the recorded lock ({lock}, sha256 {row['lock_sha256']}; {state}) on base image "
            f"{row['base_image']} (id {row['base_image_id']}): "
            f"`benchpipe image wheelhouse --lock {lock} --out wheelhouse/{image} && "
            f"benchpipe image build --engine {engine} --recipe containers/{image} --wheelhouse wheelhouse/{image} "
            f"--project . --base {row['base_image']} --out images/{engine}/{image}.json`, then reproduce again "
            "(a rebuild with another id or digest is another image: the result is then not reproduced)")


def _image_record(row: dict[str, Any]):
    """An image record for `benchpipe run`, from what the provenance recorded of the image."""
    from benchpipe.runtime.images import ImageRecord

    return ImageRecord(
        engine=row["runtime"], image=row["image"], tag=row["image_tag"], image_id=row["image_id"],
        digest=row["image_digest"], base_image=row["base_image"], base_image_id=row["base_image_id"],
        lock_sha256=row["lock_sha256"], wheels=json.loads(row["wheels_json"] or "{}"),
        built_at="recorded", engine_version=row["runtime_version"] or "",
    )


def _run(argv: list[str], log: Path, context: _Context, what: str, kind: str) -> None:
    """One rerun of a ``kind`` job; its provenance names the tree's config, as the workflow's job did."""
    from benchpipe.provenance import CONFIG_SHA256_ENV, config_sha256

    env = {**os.environ, CONFIG_SHA256_ENV: config_sha256(context.settings, kind)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise BenchpipeError(f"{what}: the rerun failed (exit {proc.returncode}, log {log}): {tail[0]}")


# --- the dataset ------------------------------------------------------------------------------------


def _sources_as_configured(context: _Context, bench):
    """(the benchmark with the tree's datasets.sources applied, the cache the config named): where
    the run's data came from, as llama2_70b_lora's always come from the config."""
    import dataclasses

    from benchpipe.datasets.source import override_sources

    settings = context.settings.get("datasets") or {}
    overrides = (settings.get("sources") or {}).get(bench.name, {})
    cache = settings.get("cache_dir")
    configured = dataclasses.replace(bench, sources=override_sources(bench.name, bench.sources, overrides))
    return configured, Path(cache) if cache else None


def _dataset(context: _Context, benchmark: str) -> Path:
    """The dataset the tree's results were made from: ``--data`` if given, else prepared again; checked by sha256."""
    from benchpipe.contracts.hashing import sha256_file
    from benchpipe.datasets.prepare import MANIFEST, prepare

    if benchmark in context.datasets:
        return context.datasets[benchmark]
    bench = registry.get(benchmark)
    expected = context.tree / DATASETS_DIR / bench.dataset_name / MANIFEST
    data = context.options.data
    if data is None:
        # Beside the reruns, not in one: a container job's output folder hides what lies in it.
        data = context.work / "data" / bench.dataset_name
        if not (data / MANIFEST).is_file():
            configured, cache = _sources_as_configured(context, bench)
            prepare(configured, data, cache)
    if not (data / MANIFEST).is_file():
        raise ConfigError(f"{data}: no {MANIFEST}: not a prepared dataset")
    have, want = sha256_file(data / MANIFEST), sha256_file(expected)
    if have != want:
        raise ConfigError(f"{data / MANIFEST}: sha256 {have}, the tree's results were made from {want} "
                          f"({expected}): another dataset")
    context.datasets[benchmark] = data.resolve()
    context.dataset_checks[benchmark] = DatasetCheck(
        benchmark, bench.dataset_name, "prepared again" if context.options.data is None else "--data",
        str(data.resolve()), have, want, matched=True)
    return context.datasets[benchmark]


# --- training runs ----------------------------------------------------------------------------------


def _reproduce_run(context: _Context, selection: Selection, work: Path) -> Comparison:
    from benchpipe.audit import training_logs
    from benchpipe.results.mllog_parser import parse_mllog, summarize_run

    logs = training_logs(context.tree)
    key = (selection.target, selection.benchmark, selection.run)
    if key not in logs:
        known = ", ".join(f"{t}/{b}/run_{r}" for t, b, r in sorted(logs)) or "none"
        raise ConfigError(f"{context.tree}: no training run {selection} (runs in the tree: {known})")
    result = Comparison(str(selection))
    launcher = _launcher(context, selection, result, work)
    if launcher is None:
        return result
    recorded_events = parse_mllog(logs[key])
    recorded = summarize_run(recorded_events, logs[key])
    if recorded.seed is None:
        raise BenchpipeError(f"{logs[key]}: no seed logged: the run cannot be repeated")
    out = work / "run"
    _train(context, selection, recorded.seed, _dataset(context, selection.benchmark), out, launcher)
    result.provenance = _rerun_provenance(out)
    rerun_log = out / "mllog.txt"
    rerun_events = parse_mllog(rerun_log)
    rerun = summarize_run(rerun_events, rerun_log)
    _compare(result, recorded, rerun, _accuracies(recorded_events), _accuracies(rerun_events),
             context.options.time_tolerance)
    return result


def _train(context: _Context, selection: Selection, seed: int, data: Path, out: Path, launcher: _Launcher) -> None:
    submission = context.settings["submission"]
    overrides = context.settings.get("training", {}).get("hyperparameters", {}).get(selection.benchmark)
    command = ["train", "--benchmark", selection.benchmark, "--data", str(data), "--seed", str(seed),
               "--org", submission["submitter"], "--platform", selection.target, "--division", submission["division"],
               "--status", submission["status"], "--out", str(out.resolve())]
    ruleset = context.settings.get("training", {}).get("ruleset")
    if ruleset:  # the rules the tree's runs were held to, as its config states them
        command += ["--training-ruleset", ruleset]
    inputs = [data]
    if overrides:
        command += ["--hyperparameters-json", json.dumps(overrides, sort_keys=True)]
    if launcher.target_file is not None:
        command += ["--target-file", str(launcher.target_file.resolve())]
        inputs.append(launcher.target_file.resolve())
    if context.options.threads is not None:
        command += ["--threads", str(context.options.threads)]
    _run(launcher.argv(command, inputs, out.resolve()), out.parent / "train.log", context, str(selection), "train")


def _accuracies(events) -> list[tuple[Any, float]]:
    return [(e.metadata.get("epoch_num"), float(e.value)) for e in events if e.key == "eval_accuracy"]


def _compare(result: Comparison, recorded, rerun, recorded_acc: list, rerun_acc: list, tolerance: float) -> None:
    if recorded.status == rerun.status:
        result.checks.append(f"status {rerun.status} in both")
    else:
        result.differ(f"status: tree {recorded.status}, rerun {rerun.status}")
    if recorded_acc == rerun_acc:
        result.checks.append(f"eval accuracy identical at {len(rerun_acc)} evaluations "
                             f"(last {rerun_acc[-1][1]:.6f})" if rerun_acc else "no evaluations in either")
    else:
        first = next((i for i, (a, b) in enumerate(zip(recorded_acc, rerun_acc)) if a != b), min(len(recorded_acc), len(rerun_acc)))
        shown = (f"evaluation {first}: tree {recorded_acc[first] if first < len(recorded_acc) else 'none'}, "
                 f"rerun {rerun_acc[first] if first < len(rerun_acc) else 'none'}")
        result.differ(f"eval accuracy: {len(recorded_acc)} evaluations in the tree, {len(rerun_acc)} in the rerun; "
                      f"first difference at {shown}")
    was, now = recorded.time_to_train_min, rerun.time_to_train_min
    if was is None or now is None:
        return
    change = now / was - 1
    figures = (f"tree {was * 60:.2f} s, rerun {now * 60:.2f} s ({change:+.1%}; tolerance ±{tolerance:.0%} "
               f"or ±{TIME_FLOOR_S:g} s)")
    if abs(change) <= tolerance or abs(now - was) * 60 <= TIME_FLOOR_S:
        result.checks.append(f"time to train {figures}")
    else:
        result.differ(f"time to train {figures}")


# --- LoadGen tests ----------------------------------------------------------------------------------


def _reproduce_test(context: _Context, selection: Selection, work: Path) -> Comparison:
    from benchpipe.contracts.layout import ACCURACY_TXT, DETAIL_LOG
    from benchpipe.results.tables import loadgen_fields

    scenario_dir, log = _tree_test(context.tree, selection)
    result = Comparison(str(selection))
    want = _recorded_model_sha256(context.tree, selection)
    model = _model(context, selection, want)  # before any work: a wrong --model is the caller's error
    launcher = _launcher(context, selection, result, work)
    if launcher is None:
        return result
    calibration = _calibration(context, selection, scenario_dir, model, want, work / "calibration")
    out = work / "out" / "test"
    _infer(context, selection, calibration, model, out, launcher)
    result.provenance = _rerun_provenance(out)
    result.checks.append(f"model sha256 {want}, as recorded")
    if selection.mode == "TEST06":
        from benchpipe.infer.llm_run import read_llm_calibration

        # Each run's end-of-sequence ids, as its calibration read them from the checkpoint.
        raw = context.tree / RAW_DIR / selection.target / selection.benchmark / selection.scenario
        _compare_test06(result, str(selection.scenario), scenario_dir / "TEST06" / "accuracy",
                        read_llm_calibration(raw)[2].eos_token_ids, out, read_llm_calibration(out)[2].eos_token_ids)
        return result
    recorded = loadgen_fields(selection.scenario, selection.mode, log, log.parent / ACCURACY_TXT)
    rerun = loadgen_fields(selection.scenario, selection.mode, out / DETAIL_LOG, out / ACCURACY_TXT)
    _compare_test(result, selection, recorded, rerun, context.options.performance_tolerance)
    return result


def _tree_test(tree: Path, selection: Selection) -> tuple[Path, Path]:
    """(scenario folder, detail log) of ``selection`` in the tree; TEST06's folder holds no detail
    log, so the scenario's performance run stands for it."""
    from benchpipe.audit import detail_logs

    logs = detail_logs(tree)
    tests = {"/".join(key): log for key, log in logs.items()}
    tests.update({f"{'/'.join(key[:3])}/TEST06": log for key, log in logs.items()
                  if key[3] == "performance" and (log.parents[2] / "TEST06" / "accuracy").is_dir()})
    log = tests.get(str(selection))
    if log is None:
        known = ", ".join(sorted(tests)) or "none"
        raise ConfigError(f"{tree}: no LoadGen test {selection} (tests in the tree: {known})")
    # <scenario>/performance/run_1/, <scenario>/accuracy/ or <scenario>/TEST0x/performance/run_1/
    return next(p for p in log.parents if p.name == selection.scenario), log


def _compare_test06(result: Comparison, scenario: str, tree_dir: Path, tree_eos: tuple[int, ...], out: Path,
                    out_eos: tuple[int, ...]) -> None:
    """TEST06's checks on the tree's accuracy log (in ``tree_dir``) and the rerun's (in ``out``), and
    each sample's outputs, token for token."""
    from benchpipe.contracts.layout import ACCURACY_LOG
    from benchpipe.infer.compliance import test06_outputs, verify_test06

    was = verify_test06(test_dir=tree_dir, scenario=scenario, eos_token_ids=tree_eos)
    now = verify_test06(test_dir=out, scenario=scenario, eos_token_ids=out_eos)
    verdicts = f"tree {'passed' if was.passed else 'failed'}, rerun {'passed' if now.passed else 'failed'}"
    if was.passed == now.passed:
        result.checks.append(f"TEST06 checks: {verdicts} ({int(now.figures['responses'])} responses rerun)")
    else:
        result.differ(f"TEST06 checks: {verdicts}: {'; '.join(was.reasons + now.reasons)}")
    recorded, rerun = test06_outputs(tree_dir / ACCURACY_LOG), test06_outputs(out / ACCURACY_LOG)
    if sorted(recorded) != sorted(rerun):
        only = sorted(set(recorded) ^ set(rerun))
        result.differ(f"TEST06 samples: the tree answered {len(recorded)} samples, the rerun {len(rerun)}; "
                      f"{len(only)} in one only (qsl_idx {only[:5]})")
        return
    # A sample issued twice in one run gives one output twice; compare each run's distinct ones.
    changed = [idx for idx in sorted(recorded)
               if sorted(map(tuple, recorded[idx])) != sorted(map(tuple, rerun[idx]))
               or len(set(map(tuple, rerun[idx]))) != 1]
    if changed:
        idx = changed[0]
        result.differ(f"TEST06 outputs: {len(changed)} of {len(recorded)} samples answered differently "
                      f"(qsl_idx {idx}: tree {recorded[idx][0][:8]}, rerun {rerun[idx][0][:8]})")
    else:
        result.checks.append(f"TEST06 outputs identical for all {len(recorded)} samples")


def _recorded_model_sha256(tree: Path, selection: Selection) -> str:
    wanted = {"target": selection.target, "benchmark": selection.benchmark, "scenario": selection.scenario,
              "mode": selection.mode}
    return _table_row(tree, "inference.parquet", wanted, str(selection))["model_sha256"]


def _model(context: _Context, selection: Selection, want: str) -> Path:
    """The ``--model`` whose sha256 (a SavedModel's, or an LLM's checkpoint folder's) is the recorded one."""
    for path in context.options.models:
        if path not in context.model_hashes:
            context.model_hashes[path] = _model_sha256(path)
        if context.model_hashes[path] == want:
            return path.resolve()
    given = "; ".join(f"{p} has sha256 {h}" for p, h in context.model_hashes.items())
    raise ConfigError(
        f"{selection}: served the model with sha256 {want}, which the tree does not hold: give it with "
        f"--model DIR (e.g. the training run's model/ in the workflow's runs/, or an LLM's checkpoint folder)"
        + (f"; {given}" if given else ""))


def _model_sha256(path: Path) -> str:
    """The digest calibrate recorded: an LLM serves a checkpoint folder, which has no SavedModel to hash."""
    from benchpipe.infer.models import CHECKPOINT_CONFIG, SAVED_MODEL_PB, checkpoint_sha256, savedmodel_sha256

    if not (path / SAVED_MODEL_PB).is_file() and (path / CHECKPOINT_CONFIG).is_file():
        return checkpoint_sha256(path)
    return savedmodel_sha256(path)


def _calibration(context: _Context, selection: Selection, scenario_dir: Path, model: Path, sha256: str,
                 out: Path) -> Path:
    """A calibration folder as `benchpipe calibrate` wrote it: the tree's user.conf and calibration, the model."""
    from benchpipe.contracts.layout import CALIBRATION, USER_CONF
    from benchpipe.contracts.records import ServedModel

    recorded = context.tree / RAW_DIR / selection.target / selection.benchmark / selection.scenario / CALIBRATION
    if not recorded.is_file():
        raise BenchpipeError(f"{recorded}: missing: the tree does not record the calibration behind "
                             f"{scenario_dir / USER_CONF} (packaged by an older benchpipe: package it again)")
    measurements = json.loads((scenario_dir / "measurements.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / USER_CONF).write_bytes((scenario_dir / USER_CONF).read_bytes())
    (out / CALIBRATION).write_bytes(recorded.read_bytes())
    origin = "training" if measurements.get("retraining") == "yes" else "supplied"
    ServedModel(str(model), sha256, origin, str(measurements.get("starting_weights_filename", ""))).write(out)
    return out.resolve()


def _infer(context: _Context, selection: Selection, calibration: Path, model: Path, out: Path,
           launcher: _Launcher) -> None:
    data = _dataset(context, selection.benchmark)
    command = ["infer", "--benchmark", selection.benchmark, "--data", str(data), "--calibration", str(calibration),
               "--scenario", str(selection.scenario), "--mode", str(selection.mode), "--out", str(out.resolve())]
    if context.options.threads is not None:
        command += ["--threads", str(context.options.threads)]
    _run(launcher.argv(command, [data, calibration, model], out.resolve()), out.parent.parent / "infer.log",
         context, str(selection), "infer")


def _compare_test(result: Comparison, selection: Selection, recorded: dict, rerun: dict, tolerance: float) -> None:
    if selection.mode == "accuracy":
        if recorded["accuracy"] == rerun["accuracy"]:
            result.checks.append(f"accuracy identical: {rerun['accuracy']}")
        else:
            result.differ(f"accuracy: tree {recorded['accuracy']}, rerun {rerun['accuracy']}")
        return
    if recorded["result_validity"] == rerun["result_validity"]:
        result.checks.append(f"result validity {rerun['result_validity']} in both")
    else:
        result.differ(f"result validity: tree {recorded['result_validity']}, rerun {rerun['result_validity']} "
                      f"({rerun['invalid_reason'] or recorded['invalid_reason']})")
    metric, was, now = recorded["result_key"], _result(recorded), _result(rerun)
    if was is None or now is None or not was:
        result.differ(f"{metric}: tree {was}, rerun {now}: cannot be compared")
        return
    change = now / was - 1
    figures = f"{metric}: tree {was:g}, rerun {now:g} ({change:+.1%}; tolerance ±{tolerance:.0%})"
    if abs(change) <= tolerance:
        result.checks.append(figures)
    else:
        result.differ(figures)


def _result(row: dict) -> float | None:
    """A test's result, in the column of its scenario's unit (latency in ns, tokens/s or samples/s)."""
    latency = row["result_latency_ns"]
    if latency is not None:
        return float(latency)
    # An LLM's throughput is the checker's token metric; its samples/s column is null.
    tokens = row.get("result_tokens_per_s")
    return row["result_samples_per_s"] if tokens is None else tokens


def _rerun_provenance(out: Path) -> dict[str, Any]:
    """What the rerun job recorded of itself, kept in the report: its folder may be removed."""
    from benchpipe.provenance import read

    return read(out)


def report(reproduction: Reproduction) -> dict[str, Any]:
    """``<tree>.reproduce.json``'s content; write it with sorted keys, so the same reproduction gives the same text."""
    results, options = reproduction.results, reproduction.options
    return {"tree": str(reproduction.tree), "root_sha256": reproduction.root_sha256,
            "timestamp": reproduction.timestamp, "provenance": reproduction.provenance,
            "time_tolerance": options.time_tolerance, "performance_tolerance": options.performance_tolerance,
            "reproduced": all(r.status == "match" for r in results), "runs": [asdict(r) for r in results],
            "datasets": [asdict(d) for d in reproduction.datasets],
            "work": str(reproduction.work), "work_kept": reproduction.kept}


def default_work() -> Path:
    return Path(tempfile.mkdtemp(prefix="benchpipe-reproduce-"))
