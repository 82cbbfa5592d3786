"""MLCommons' own training tools, run on an organization folder as the review committee runs them.

None of them reports failure through its exit status, so every verdict here is read from the
tool's output; a non-zero exit only ever means the tool crashed.

``python -m mlperf_logging.package_checker ORG training 4.0.0`` (cwd-relative paths, ``--log_output``
appends, default ``package_checker.log`` in the cwd) runs, in this order:

1. the system-description checker on every ``systems/*.json`` (the 33 fields of
   ``TRAINING_SYSTEM_FIELDS``; from 4.0 on, ``status`` in ``TRAINING_STATUSES``);
2. for each ``results/<system>/<benchmark>/`` whose benchmark is in ``ruleset_benchmarks(ruleset)``
   (any other folder gets ``WARNING - Skipping benchmark`` and is not looked at):
   - exactly ``required_runs(benchmark, ruleset)`` files named ``result_*.txt`` (resnet: 5);
   - the compliance checker on each file, with ``common.yaml`` then the ``<division>_common.yaml`` and
     ``<division>_<benchmark>.yaml`` of the division the *log* names; one non-compliant file is
     accepted under olympic scoring, two make the directory fail;
   - only when ``systems/<system>.json`` says ``"division": "closed"`` (the logs' division is never
     compared with it): the seed checker (every file logs a ``seed`` through mllog, no two files log
     the same seed from the same source file and line) and the RCP checker on the pruned RCPs (all
     files log one ``global_batch_size``, it has an RCP or lies between two, and the mean epochs to
     converge is within the RCP's allowed speed-up). The RCP checker writes, or deletes,
     ``results/<system>/<benchmark>/scaling.json``: run it before a manifest is made, not after.
   An open system gets neither seed nor RCP checks.
3. ``INFO - PACKAGE CHECKER FOUND NO ERRORS, SUCCESS !`` or
   ``INFO - PACKAGE CHECKER FOUND ERRORS, LOOK INTO ERROR LOG LINES AND FIX THEM.``, and exit 0 either
   way. It exits 1 with a traceback on a results folder without its system JSON, on a log whose
   ``submission_benchmark`` has no rules file (e.g. ``digits``), or when the RCP checker finds no
   ``submission_benchmark`` at all.

``python -m mlperf_logging.result_summarizer ORG training 4.0.0 --csv OUT.csv`` re-runs the
compliance checker per file (and, for a closed system, the RCP checker, which rewrites
``scaling.json``), then writes OUT.csv, OUT.json, OUT_detailed.csv and OUT_detailed.json relative to
the cwd. It prints ``Compliance check failed in FILE``, ``CRITICAL ERROR: ...`` and ``ERROR: RCP Test
Failed ...`` and still exits 0, leaving the score cell empty; it crashes (exit 1) on a benchmark
folder without rules (``digits``), on a CSV folder that does not exist, and on a system JSON that
lacks a field it reads or whose node/processor/accelerator counts are not integers. It appends to
an existing OUT_detailed.csv, so stale outputs are removed before each run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from bisect import bisect_left
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mlperf_logging import benchmark_meta
from mlperf_logging.benchmark_meta import get_allowed_benchmarks, get_result_file_counts

from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.contracts.rounds import TRAINING_RULESET, ruleset_key

PACKAGE_VERDICT_OK = "PACKAGE CHECKER FOUND NO ERRORS, SUCCESS !"
TIMEOUT_S = 1800

# system_desc_checker's required_fields, identical for every training ruleset it knows.
TRAINING_SYSTEM_FIELDS: tuple[str, ...] = (
    "submitter", "division", "status", "system_name", "number_of_nodes", "host_processors_per_node",
    "host_processor_model_name", "host_processor_core_count", "host_processor_vcpu_count",
    "host_processor_frequency", "host_processor_caches", "host_processor_interconnect",
    "host_memory_capacity", "host_storage_type", "host_storage_capacity", "host_networking",
    "host_networking_topology", "host_memory_configuration", "accelerators_per_node",
    "accelerator_model_name", "accelerator_host_interconnect", "accelerator_frequency",
    "accelerator_on-chip_memories", "accelerator_memory_configuration", "accelerator_memory_capacity",
    "accelerator_interconnect", "accelerator_interconnect_topology", "cooling", "hw_notes", "framework",
    "other_software_stack", "operating_system", "sw_notes",
)
TRAINING_STATUSES: tuple[str, ...] = (
    "Available on-premise", "Available cloud", "Research, Development, or Internal (RDI)", "Preview",
)
# The summarizer multiplies these with int(); anything else crashes it.
INTEGER_SYSTEM_FIELDS = ("number_of_nodes", "host_processors_per_node", "accelerators_per_node")



def mlperf_logging_version() -> str:
    """The installed mlperf-logging: its rules and RCPs are what the trees were checked against."""
    from importlib.metadata import version

    return version("mlperf-logging")


def ruleset_benchmarks(ruleset: str) -> frozenset[str]:
    """The benchmarks of training ``ruleset``: the folder names the package checker checks (the rest it skips)."""
    try:
        return frozenset(get_allowed_benchmarks("training", ruleset))
    except ValueError as exc:
        raise ConfigError(f"training ruleset {ruleset}: unknown to mlperf-logging ({exc})") from exc


def is_official(benchmark: str, ruleset: str = TRAINING_RULESET) -> bool:
    return benchmark in ruleset_benchmarks(ruleset)


def required_runs(benchmark: str, ruleset: str = TRAINING_RULESET) -> int:
    """How many result files the package checker demands for ``benchmark`` in ``ruleset``."""
    if benchmark not in ruleset_benchmarks(ruleset):
        raise ConfigError(f"benchmark '{benchmark}' is not in MLPerf training {ruleset}")
    # benchmark_meta keeps one count per benchmark, whatever the round.
    return get_result_file_counts("training")[benchmark]


def rulesets_with(benchmark: str) -> list[str]:
    """Every training ruleset of benchmark_meta that has ``benchmark``, oldest first (as "4.0.0").

    benchmark_meta has no public list of its rounds, so its own table is read; its keys are
    the short versions ("4.0") that get_allowed_benchmarks also accepts for "4.0.0".
    """
    rounds = benchmark_meta._ALL_ALLOWED_BENCHMARKS["training"]
    found = [version for version, names in rounds.items() if benchmark in names]
    return [f"{version}.0" if version.count(".") == 1 else version for version in sorted(found, key=ruleset_key)]


def check_training_system_desc(desc: dict[str, Any], where: str, ruleset: str = TRAINING_RULESET) -> None:
    """What the official tools need of a training system JSON, beyond what their checker tests.

    The checker passes an integer in most fields but crashes on one in the seven it copies into
    its summary row, and the summarizer crashes on a count that is not an integer string.
    """
    missing = [f for f in TRAINING_SYSTEM_FIELDS if f not in desc]
    if missing:
        raise ValidationError(f"{where}: missing field(s) {', '.join(missing)} (training {ruleset})")
    for key, value in desc.items():
        if not isinstance(value, str) or not value:
            raise ValidationError(f"{where}: key '{key}' must be a non-empty string, not {value!r}")
    if desc["status"] not in TRAINING_STATUSES:
        raise ValidationError(
            f"{where}: key 'status' is '{desc['status']}', training needs one of {', '.join(TRAINING_STATUSES)}"
        )
    for key in INTEGER_SYSTEM_FIELDS:
        if not desc[key].isdigit():
            raise ValidationError(f"{where}: key '{key}' is '{desc[key]}', the result summarizer needs an integer")


# ---------------------------------------------------------------------------------------------
# Reference convergence points


def _rcp_path(benchmark: str, ruleset: str) -> Path:
    # Where RCP_Checker._construct_json_filename looks.
    folder = Path(str(resources.files("mlperf_logging.rcp_checker"))) / f"training_{ruleset}"
    return folder / f"rcps_{benchmark}.json"


def _rcp_file(benchmark: str, ruleset: str) -> Path:
    path = _rcp_path(benchmark, ruleset)
    if not path.is_file():
        raise ConfigError(
            f"benchmark '{benchmark}' has no reference convergence points in training {ruleset} "
            f"({path} is missing): it cannot be submitted in the closed division"
        )
    return path


def rcp_batch_sizes(benchmark: str = "resnet", ruleset: str = TRAINING_RULESET) -> list[int]:
    """Every batch size with a reference convergence point, ascending."""
    path = _rcp_file(benchmark, ruleset)
    try:
        records = json.loads(path.read_text())
        return sorted({int(r["BS"]) for r in records.values() if r["Benchmark"] == benchmark})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: cannot read the reference convergence points: {exc}") from exc


def _pruned_rcp_batch_sizes(benchmark: str, ruleset: str) -> list[int]:
    # The package checker compares against the RCPs its own pruning keeps; asking the checker keeps
    # the two in step. Imported here: it pulls in numpy and scipy.
    from mlperf_logging.rcp_checker.rcp_checker import RCP_Checker

    _rcp_file(benchmark, ruleset)
    checker = RCP_Checker("training", ruleset, benchmark, verbose=False)
    return sorted(int(r["BS"]) for r in checker.pruned_rcp_data.values())


def _nearest(sizes: list[int], value: int, count: int = 2) -> list[int]:
    return sorted(sorted(sizes, key=lambda s: (abs(s - value), s))[:count])


def check_closed_batch_size(
    benchmark: str,
    global_batch_size: int,
    ruleset: str = TRAINING_RULESET,
    where: str = "global_batch_size",
) -> str:
    """Refuse, before anything runs, a closed batch size the RCP checker cannot accept.

    The checker accepts a batch size that has an RCP, or lies between two and is interpolated.
    Below the smallest it passes only if the runs converge no faster than that RCP, which no one
    knows before running; above the largest it always fails (``Missing RCP``). Returns how the
    checker will match it.
    """
    if not isinstance(global_batch_size, int) or isinstance(global_batch_size, bool):
        raise ConfigError(f"{where}: must be an integer, not {global_batch_size!r}")
    sizes = rcp_batch_sizes(benchmark, ruleset)
    pruned = _pruned_rcp_batch_sizes(benchmark, ruleset)
    if global_batch_size in pruned:
        return f"RCP at batch size {global_batch_size}"
    low, high = pruned[0], pruned[-1]
    if low < global_batch_size < high:
        i = bisect_left(pruned, global_batch_size)
        return f"RCP interpolated between batch sizes {pruned[i - 1]} and {pruned[i]}"
    nearest = ", ".join(str(s) for s in _nearest(sizes, global_batch_size))
    raise ConfigError(
        f"{where}: {global_batch_size} has no reference convergence point for closed {benchmark} "
        f"(training {ruleset}): the RCP checker accepts {low} to {high} "
        f"(RCPs at {', '.join(str(s) for s in sizes)}); nearest: {nearest}"
    )


def rcp_scaling_factor(logs: list[Path], benchmark: str, ruleset: str = TRAINING_RULESET) -> float:
    """What the result summarizer multiplies the olympic mean of ``logs``, one closed run set of
    ``benchmark``, by: the ``scaling_factor`` of the scaling.json the RCP checker writes for them,
    1.0 where it writes none. Callers ask only for the closed division: the tools check no other.

    The checker's own check_directory decides, called as the result summarizer and the package
    checker call it (pruned RCPs, no bypass, set_scaling), so that its statistics, its choice of
    RCP and its interpolation cannot drift from benchpipe's. It runs on a scratch folder of links
    to the logs: no scaling.json lands beside them. It writes one only for a set that passes and
    converges faster than the RCP mean; a set that fails gets 1.0 here, and the package checker
    reports the failure. A benchmark outside ``ruleset``, or one without RCPs in it, has no factor.
    """
    if not is_official(benchmark, ruleset) or not _rcp_path(benchmark, ruleset).is_file():
        return 1.0
    if not logs:
        raise ValidationError(f"closed {benchmark} (training {ruleset}): no result log to derive its RCP scaling "
                              "factor from")
    for log in logs:
        if not Path(log).is_file():
            raise ValidationError(f"{log}: no such result log: the RCP checker needs every log of the run set")
    # Imported here: it pulls in numpy and scipy.
    from mlperf_logging.rcp_checker import rcp_checker

    with tempfile.TemporaryDirectory(prefix="benchpipe-rcp-") as scratch:
        folder = Path(scratch)
        for i, log in enumerate(logs):
            # The checker finds the set by its result_*.txt names, whatever the logs are called.
            link = folder / f"result_{i}.txt"
            try:
                link.symlink_to(Path(log).resolve())
            except OSError:
                shutil.copyfile(log, link)
        try:
            rcp_checker.check_directory(
                str(folder), "training", ruleset, False, False,
                rcp_file=None, rcp_pass="pruned_rcps", rcp_bypass=False, set_scaling=True,
            )
        except Exception as exc:  # the checker fails with bare exceptions: KeyError, Exception
            raise ValidationError(
                f"{Path(logs[0]).parent}: MLCommons' RCP checker fails on the {len(logs)} {benchmark} logs "
                f"(training {ruleset}), as the package checker and result summarizer would: "
                f"{type(exc).__name__}: {exc} (do the logs share one submission_benchmark and global_batch_size?)"
            ) from exc
        return read_scaling_factor(folder)


# ---------------------------------------------------------------------------------------------
# Running the tools


@dataclass(frozen=True)
class CheckerVerdict:
    tool: str
    org_dir: Path
    passed: bool
    returncode: int
    log: Path
    errors: tuple[str, ...]  # the tool's own error lines, first first
    skipped: tuple[str, ...] = ()  # benchmark folders the package checker did not look at
    rows: tuple[dict[str, str], ...] = ()  # the summarizer's CSV rows
    scores: dict[str, float] = field(default_factory=dict)  # summarizer: system -> minutes

    def problems(self, limit: int = 3) -> str:
        """The first few errors on one line: what a user must fix."""
        if not self.errors:
            return "no errors reported" if self.passed else "no verdict in the output"
        shown = "; ".join(e if len(e) <= 240 else e[:239] + "…" for e in self.errors[:limit])
        more = len(self.errors) - limit
        return shown + (f" (and {more} more)" if more > 0 else "")

    def require(self) -> CheckerVerdict:
        """This verdict, or ValidationError naming the folder, the log and the first errors."""
        if not self.passed:
            raise ValidationError(
                f"{self.org_dir}: mlperf_logging.{self.tool} rejects the tree (exit {self.returncode}, "
                f"full output in {self.log}): {self.problems()}"
            )
        return self


@dataclass
class _Record:
    level: str
    lines: list[str]

    def text(self) -> str:
        parts = [l.strip() for l in self.lines]
        return " ".join(p for p in parts if p and set(p) != {"-"})


_LEVELS = ("INFO", "WARNING", "ERROR", "CRITICAL", "DEBUG")


def _records(output: str) -> list[_Record]:
    """The tool's log records; a message spanning lines keeps its continuation lines."""
    records: list[_Record] = []
    for line in output.splitlines():
        level, sep, rest = line.partition(" - ")
        if sep and level in _LEVELS:
            records.append(_Record(level, [rest]))
        elif records:
            records[-1].lines.append(line)
        else:
            records.append(_Record("", [line]))
    return records


def _crash(proc: subprocess.CompletedProcess[str]) -> str | None:
    """The exception that ended the tool, if it crashed.

    The summarizer prints some caught tracebacks and carries on, so only the exit status tells a
    crash; the uncaught exception is then the last line of the output.
    """
    if proc.returncode == 0:
        return None
    tail = [l.strip() for l in proc.stdout.splitlines() if l.strip()]
    return f"crashed (exit {proc.returncode}): " + (tail[-1] if tail else "no output")


def _cwd_and_arg(org_dir: Path) -> tuple[Path, str]:
    # From the org folder's parent the tools name every file <org>/results/..., as in the tree.
    org = org_dir.resolve()
    if not (org / "results").is_dir() or not (org / "systems").is_dir():
        raise ValidationError(f"{org_dir}: not a training organization folder (needs systems/ and results/)")
    return org.parent, org.name


def _relative_to(path: Path, base: Path) -> str:
    # Relative even when outside ``base`` (../benchpipe/...): the tools print it into their
    # output, which must stay true after the tree is moved into place.
    return os.path.relpath(path.resolve(), base)


def _run(args: list[str], cwd: Path, log: Path, timeout_s: int) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # keeps print() and logging lines in order
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", *args], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise ValidationError(f"{cwd / args[1]}: {args[0]} did not finish within {timeout_s} s") from exc
    # The whole stream, tracebacks and prints included, replaces the tool's own partial log.
    log.write_text(proc.stdout)
    return proc


def _package_errors(records: list[_Record]) -> list[str]:
    """The ERROR records; a directory's compliance failure gets its first file's first message."""
    errors: list[str] = []
    current_file, first_failure = "", ""
    for record in records:
        text = record.text()
        if record.level == "INFO" and text.startswith("Running compliance on file:"):
            current_file = text.removeprefix("Running compliance on file:").strip()
        elif record.level == "WARNING" and current_file and not first_failure and "comply" not in text:
            # The compliance checker logs all of a file's failed rules as one multi-line warning.
            messages = [l.strip() for l in record.lines if l.strip() and set(l.strip()) != {"-"}]
            first_failure = f"{current_file}: {messages[0]}" if messages else ""
        elif record.level in ("ERROR", "CRITICAL"):
            if "do not comply" in text and first_failure:
                text += f" (first: {first_failure})"
            errors.append(text)
    return errors


def run_package_checker(
    org_dir: Path,
    log: Path,
    ruleset: str = TRAINING_RULESET,
    *,
    allow_skipped: bool = False,
    timeout_s: int = TIMEOUT_S,
) -> CheckerVerdict:
    """The official package checker on ``org_dir``; passed only on its success verdict.

    It exits 0 whatever it finds, so the verdict line and the ERROR records decide. A benchmark
    folder it does not know is skipped without an error; unless ``allow_skipped``, that fails too,
    since nothing in it was checked.
    """
    cwd, org = _cwd_and_arg(org_dir)
    log = log.resolve()
    log.unlink(missing_ok=True)  # --log_output appends
    proc = _run(
        ["mlperf_logging.package_checker", org, "training", ruleset, "--log_output", _relative_to(log, cwd)],
        cwd, log, timeout_s,
    )
    records = _records(proc.stdout)
    errors = _package_errors(records)
    if crash := _crash(proc):
        errors.append(crash)
    skipped = tuple(
        r.text().removeprefix("Skipping benchmark:").strip()
        for r in records if r.level == "WARNING" and r.text().startswith("Skipping benchmark:")
    )
    if skipped and not allow_skipped:
        errors.append(
            f"skipped benchmark(s) {', '.join(skipped)}: not in training {ruleset} "
            f"({', '.join(sorted(ruleset_benchmarks(ruleset)))}), so never checked"
        )
    verdict_ok = any(r.level == "INFO" and r.text() == PACKAGE_VERDICT_OK for r in records)
    if not verdict_ok and not errors:
        errors.append(f"no '{PACKAGE_VERDICT_OK}' line in the output")
    passed = proc.returncode == 0 and verdict_ok and not errors
    return CheckerVerdict("package_checker", org_dir, passed, proc.returncode, log, tuple(errors), skipped)


SUMMARIZER_ERROR_PREFIXES = ("ERROR", "CRITICAL ERROR", "** CRITICAL ERROR", "WARNING: RCP/GBS computation failed")


def _summarizer_outputs(csv_out: Path) -> list[Path]:
    stem = str(csv_out)[: -len(".csv")]
    return [Path(stem + suffix) for suffix in (".csv", ".json", "_detailed.csv", "_detailed.json")]


def _score(value: str | None) -> float | None:
    try:
        score = float(value) if value else None
    except ValueError:
        return None
    return score if score is not None and math.isfinite(score) and score > 0 else None


def run_result_summarizer(
    org_dir: Path,
    csv_out: Path,
    log: Path,
    ruleset: str = TRAINING_RULESET,
    *,
    benchmark: str = "resnet",
    timeout_s: int = TIMEOUT_S,
) -> CheckerVerdict:
    """The official result summarizer on ``org_dir``; passed only if every system scored ``benchmark``.

    It exits 0 on bad results, so its error lines and the CSV decide: every row (one per system)
    needs a positive number, in minutes, in the ``benchmark`` column.
    """
    if csv_out.suffix != ".csv":
        raise ValidationError(f"{csv_out}: the result summarizer writes only to a path ending in .csv")
    if not is_official(benchmark, ruleset):
        raise ValidationError(
            f"{org_dir}: benchmark '{benchmark}' is not in training {ruleset}: the result summarizer has no column for it"
        )
    cwd, org = _cwd_and_arg(org_dir)
    csv_out, log = csv_out.resolve(), log.resolve()
    for stale in _summarizer_outputs(csv_out):
        stale.unlink(missing_ok=True)
    csv_out.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(
        ["mlperf_logging.result_summarizer", org, "training", ruleset, "--csv", _relative_to(csv_out, cwd)],
        cwd, log, timeout_s,
    )
    lines = [l.strip() for l in proc.stdout.splitlines()]
    errors = [l for l in lines if l.startswith(SUMMARIZER_ERROR_PREFIXES)]
    if crash := _crash(proc):
        errors.append(crash)
    rows: list[dict[str, str]] = []
    if csv_out.is_file():
        with csv_out.open(newline="") as f:
            rows = list(csv.DictReader(f))
    elif not errors:
        errors.append(f"wrote no {csv_out.name}")
    scores: dict[str, float] = {}
    for row in rows:
        score = _score(row.get(benchmark))
        if score is None:
            errors.append(f"{benchmark} on {row.get('system')}: no score in {csv_out.name}")
        else:
            scores[row["system"]] = score
    if csv_out.is_file() and not rows:
        errors.append(f"{csv_out.name} has no rows")
    if errors:
        # Which files failed compliance explains an empty score; keep them after the headline.
        errors.extend(l for l in lines if l.startswith("Compliance check failed in"))
    passed = proc.returncode == 0 and not errors
    return CheckerVerdict(
        "result_summarizer", org_dir, passed, proc.returncode, log, tuple(errors),
        rows=tuple(rows), scores=scores,
    )


# ---------------------------------------------------------------------------------------------
# Reading a folder that benchpipe did not make: its round, its scaling, the summarizer's scores


def read_scaling_factor(result_dir: Path) -> float:
    """What the result summarizer multiplies ``result_dir``'s olympic mean by (its
    _get_scaling_factor): ``scaling_factor`` of the folder's scaling.json, 1.0 without one."""
    path = result_dir / "scaling.json"
    if not path.is_file():
        return 1.0
    try:
        factor = json.loads(path.read_text())["scaling_factor"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValidationError(f"{path}: no readable scaling_factor, as the result summarizer needs: {exc}") from exc
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor):
        raise ValidationError(f"{path}: scaling_factor {factor!r} is not a finite number")
    return float(factor)


def summarizer_counts(log: Path, ruleset: str) -> bool:
    """Whether the result summarizer counts ``log``'s time in its score: it does exactly when the
    compliance checker, as the summarizer runs it (``_read_result_file``: the ruleset's
    common.yaml, not quiet about nothing, warnings not errors), passes the log; it drops the
    others as non-converged. Run in-process: the summarizer's own call, for every log of a set."""
    import contextlib
    import io
    import logging

    from mlperf_logging.compliance_checker import mlp_compliance

    checker = mlp_compliance.make_checker(usage="training", ruleset=ruleset, quiet=True, werror=False)
    # The checker logs through the root logger and prints: neither belongs in benchpipe's output.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL + 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            valid, _, _, _ = mlp_compliance.main(str(log), f"training_{ruleset}/common.yaml", checker)
    finally:
        root.setLevel(level)
    return bool(valid)


def summarizer_minutes(verdict: CheckerVerdict, benchmark: str) -> dict[str, float | None]:
    """system -> the summarizer's score for ``benchmark`` (minutes; None for an empty cell), from
    the rows of one run_result_summarizer call: one call scores every benchmark of the folder."""
    return {row["system"]: _score(row.get(benchmark)) for row in verdict.rows}


def _common_requirements(ruleset: str) -> dict[str, str]:
    """key -> REQ of every KEY rule in the compliance checker's common.yaml for ``ruleset``."""
    import yaml

    from benchpipe.mlcommons.rules import training_rules_file

    path = training_rules_file("common.yaml", ruleset)
    try:
        rules = yaml.load(path.read_text(), Loader=yaml.BaseLoader) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the compliance rules: {exc}") from exc
    keys = (rule.get("KEY") for rule in rules if isinstance(rule, dict))
    return {key["NAME"]: key.get("REQ", "") for key in keys if isinstance(key, dict) and "NAME" in key}


def detect_ruleset(benchmarks: set[str], logged_keys: set[str]) -> tuple[str, str]:
    """(training ruleset, why) for logs of ``benchmarks`` that all log ``logged_keys``.

    MLLOG logs name no round. The candidates are the rulesets that have every benchmark and whose
    common.yaml finds each key it requires (EXACTLY_ONE, AT_LEAST_ONE) in the logs; of those, the
    oldest that names every common key the logs use: a round's new keys are what tell it apart.
    """
    candidates = [r for r in rulesets_with(next(iter(benchmarks))) if benchmarks <= ruleset_benchmarks(r)] \
        if benchmarks else []
    if not candidates:
        raise ConfigError(f"no training ruleset of mlperf-logging {mlperf_logging_version()} has every one of "
                          f"{', '.join(sorted(benchmarks)) or 'no benchmark'}: give --ruleset")
    met = {}
    for ruleset in candidates:
        reqs = _common_requirements(ruleset)
        required = {k for k, req in reqs.items() if req in ("EXACTLY_ONE", "AT_LEAST_ONE")}
        if required <= logged_keys:
            met[ruleset] = set(reqs)
    if not met:
        raise ConfigError(f"the logs lack keys that common.yaml requires in each of {', '.join(candidates)}: "
                          "give --ruleset")
    named = set().union(*met.values()) & logged_keys
    ruleset = next((r for r in met if named <= met[r]), list(met)[-1])
    return ruleset, (f"training {ruleset}: of the rulesets with {', '.join(sorted(benchmarks))} "
                     f"({', '.join(candidates)}), the oldest whose common.yaml the logs meet "
                     f"(met by {', '.join(met)})")
