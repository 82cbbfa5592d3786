"""The audit of a submission benchpipe did not make: an MLCommons organization folder as published.

A training organization folder (``<org>/systems/``, ``<org>/results/<system>/<benchmark>/``,
optional ``benchmarks/``) or an inference division folder (``<division>/<org>/results/...``)
carries no manifest, config or tables, so its items are:

    integrity  there is no manifest: the verdicts are about the folder as given (its files'
               root sha256 is recorded so that a reader can tell which bytes they were)
    logs       benchpipe's own parse of every log (mllog_parser, loadgen_parser); a log it refuses
               that MLCommons' compliance checker passed with only a WARNING is named as such
    scores     training: every score derived again from the logs, olympic mean × scaling.json's
               factor as the result summarizer computes it, and compared with the summarizer's;
               exactly the result files the ruleset requires per benchmark; the numbers also
               go to AuditReport.scores, for the report page
    required   inference: the files MLPerf's layout requires (audit.required), of the scenarios on
               disk and the modes the division requires (the compliance tests in closed)
    loadgen    inference: benchpipe's LoadGen rules on every detail log, each run judged as an
               official one (nothing says it is not), and each summary log against its detail log
    checkers   MLCommons' compliance, system-description and package checkers and the result
               summarizer (training); the inference submission checker when given a checkout
    summary    the submitter's published summary (summary.json or .csv) against the scores

Every official tool runs on a scratch copy: the package checker and the summarizer rewrite
scaling.json and write files of their own, and the folder may be read-only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.audit.loadgen import crosscheck_logs
from benchpipe.audit.logs import test_key
from benchpipe.audit.required import check_division_files
from benchpipe.audit.verdicts import AuditReport, Item, guarded
from benchpipe.contracts.errors import BenchpipeError, ConfigError
from benchpipe.contracts.layout import CONFIG_JSON, DETAIL_LOG

TRAINING, INFERENCE = "training", "inference"
SUMMARY_JSON = "summary.json"
NO_MANIFEST = ("no manifest: integrity comes from the folder as given; there is no manifest.json to check "
               "its files against, so nothing shows that they are the files the submitter published")
_DIVISIONS = ("closed", "open", "network")


def is_benchpipe_tree(tree: Path) -> bool:
    """A tree benchpipe packaged: it has its manifest or its config."""
    return (tree / "manifest.json").is_file() or (tree / CONFIG_JSON).is_file()


def foreign_kind(tree: Path) -> str | None:
    """TRAINING for an organization folder, INFERENCE for a division folder, else None."""
    if (tree / "systems").is_dir() and (tree / "results").is_dir():
        return TRAINING
    if any((org / "results").is_dir() for org in tree.iterdir() if org.is_dir()):
        return INFERENCE
    return None


def audit_foreign(tree: Path, inference_checker: Path | None = None, *, ruleset: str | None = None,
                  round_: str | None = None, summary: Path | None = None) -> AuditReport:
    """The audit of an MLCommons folder with no benchpipe manifest; BenchpipeError if it is none."""
    kind = foreign_kind(tree)
    if kind is None:
        raise BenchpipeError(
            f"{tree}: neither a benchpipe tree (no manifest.json, no {CONFIG_JSON}) nor an MLCommons folder "
            "(a training organization folder with systems/ and results/, or an inference division folder "
            "with <org>/results/): nothing to audit")
    roots: list[str] = []
    if kind == TRAINING:
        scores: list[dict[str, Any]] | None = []
        items = _training_items(tree, ruleset, summary, roots, scores)
    else:
        scores = None
        items = _inference_items(tree, inference_checker, round_, summary, roots)
    # The root is computed, not verified: it ties a report page to the bytes these verdicts are about.
    return AuditReport(str(tree), items, roots[0] if roots else None, kind="foreign", scores=scores)


def folder_root_sha256(tree: Path) -> str | None:
    """The root sha256 of the folder's files as found (package.manifest's), None for an empty folder."""
    from benchpipe.package.manifest import root_sha256

    files = _file_hashes(tree)
    return root_sha256(files) if files else None


def _file_hashes(tree: Path) -> dict[str, str]:
    return {path.relative_to(tree).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())}


def _integrity(tree: Path, item: Item, roots: list[str]) -> None:
    from benchpipe.package.manifest import root_sha256

    files = _file_hashes(tree)
    item.check(f"{len(files)} files hashed as found (no manifest to compare them with)", len(files))
    item.reasons.append(NO_MANIFEST)
    if files:
        roots.append(root_sha256(files))
        item.reasons.append(f"root sha256 of the folder as audited {roots[0]} (computed, not verified)")


# --- training ----------------------------------------------------------------------------------


@dataclass
class _Log:
    rel: str  # as the folder names it: results/<system>/<benchmark>/result_<n>.txt
    system: str
    benchmark: str
    run: Any = None  # TrainingRun when benchpipe's parser accepts the log
    error: str | None = None
    keys: set[str] = field(default_factory=set)


@dataclass
class _Official:
    """What MLCommons' tools said about the scratch copies."""

    ruleset: str = ""
    ruleset_why: str = ""
    compliance: dict[str, Any] = field(default_factory=dict)  # log rel -> ComplianceResult
    systems: dict[str, Any] = field(default_factory=dict)  # system json rel -> ComplianceResult
    package: Any = None
    summarizer: Any = None
    rescaled: dict[str, float] = field(default_factory=dict)  # result folder rel -> factor the RCP checker wrote
    error: str | None = None


def _read_logs(tree: Path) -> list[_Log]:
    from benchpipe.results.mllog_parser import parse_mllog, summarize_run

    logs = []
    for path in sorted(tree.glob("results/*/*/result_*.txt"), key=lambda p: (p.parent, _run_number(p))):
        log = _Log(path.relative_to(tree).as_posix(), path.parent.parent.name, path.parent.name)
        try:
            events = parse_mllog(path)
            log.keys = {e.key for e in events}
            log.run = summarize_run(events, path)
        except BenchpipeError as exc:
            log.error = str(exc).replace(f"{tree}/", "")
        logs.append(log)
    return logs


def _run_number(path: Path) -> int:
    stem = path.stem.removeprefix("result_")
    return int(stem) if stem.isdigit() else -1


def _training_items(tree: Path, ruleset: str | None, summary: Path | None, roots: list[str],
                    records: list[dict[str, Any]]) -> list[Item]:
    from benchpipe.mlcommons import training

    logs = _read_logs(tree)
    official = _Official()
    try:
        if ruleset:
            official.ruleset, official.ruleset_why = ruleset, f"training {ruleset}: as given (--ruleset)"
        else:
            read = [log.keys for log in logs if log.error is None]
            keys = set.intersection(*read) if read else set()
            official.ruleset, official.ruleset_why = training.detect_ruleset({log.benchmark for log in logs}, keys)
        training.ruleset_benchmarks(official.ruleset)
        _run_official(tree, official)
    except (BenchpipeError, OSError) as exc:
        official.error = f"{type(exc).__name__}: {exc}"
    scores: dict[tuple[str, str], float | None] = {}
    items = [
        guarded("integrity", lambda item: _integrity(tree, item, roots)),
        guarded("logs", lambda item: _training_logs(item, logs, official)),
        guarded("scores", lambda item: _training_scores(tree, item, logs, official, scores, records)),
        guarded("checkers", lambda item: _training_checkers(item, official)),
    ]
    summaries = _summary_files(tree, summary)
    if summaries:
        items.append(guarded("summary", lambda item: _compare_summaries(tree, item, summaries, scores)))
    return items


def _run_official(tree: Path, official: _Official) -> None:
    from benchpipe.mlcommons import checkers, training
    from benchpipe.mlcommons.rules import training_rules_file

    ruleset = official.ruleset
    with tempfile.TemporaryDirectory(prefix="benchpipe-audit-") as scratch:
        base = Path(scratch)
        # Two copies: the summarizer's RCP checker rewrites scaling.json, and the package checker's
        # too; each tool must see the folder as given.
        summarized, checked, reports = base / "s" / tree.name, base / "c" / tree.name, base / "reports"
        for copy in (summarized, checked):
            shutil.copytree(tree, copy, symlinks=True)
            _writable(copy)
        reports.mkdir()
        official.summarizer = training.run_result_summarizer(
            summarized, reports / "summary.csv", reports / "result_summarizer.log", ruleset,
            benchmark=_any_benchmark(summarized))
        for folder in sorted(summarized.glob("results/*/*")):
            if folder.is_dir():
                official.rescaled[folder.relative_to(summarized).as_posix()] = training.read_scaling_factor(folder)
        official.package = training.run_package_checker(checked, reports / "package_checker.log", ruleset)
        common = training_rules_file("common.yaml", ruleset)
        for n, log in enumerate(sorted(checked.glob("results/*/*/result_*.txt"))):
            rel = log.relative_to(checked).as_posix()
            official.compliance[rel] = checkers.run_compliance_checker(
                log.relative_to(checked.parent), common, reports / f"compliance_{n}.log", cwd=checked.parent,
                ruleset=ruleset)
        for system in sorted(checked.glob("systems/*.json")):
            official.systems[system.relative_to(checked).as_posix()] = checkers.run_system_desc_checker(
                system.relative_to(checked.parent), reports / f"system_{system.stem}.log", cwd=checked.parent,
                ruleset=ruleset)


def _writable(copy: Path) -> None:
    # A published folder is often read-only; its copy must take what the tools write.
    for path in [copy, *copy.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


def _any_benchmark(org: Path) -> str:
    names = sorted({p.name for p in org.glob("results/*/*") if p.is_dir()})
    if not names:
        raise ConfigError(f"{org}/results: no <system>/<benchmark> folder")
    return names[0]


def _warnings(output: str) -> list[str]:
    lines = (l.strip() for l in output.splitlines())
    return [l.removeprefix("WARNING -").strip() for l in lines if l.startswith("WARNING")]


def _training_logs(item: Item, logs: list[_Log], official: _Official) -> None:
    if not logs:
        item.fail("results/: no result_*.txt log")
    for log in logs:
        item.check(f"benchpipe's MLLOG parser: {log.rel}")
        if log.error is None and log.run is not None and log.run.benchmark != log.benchmark:
            log.error = (f"{log.rel}: submission_benchmark is '{log.run.benchmark}', "
                         f"its folder is results/{log.system}/{log.benchmark}")
        if log.error is None:
            continue
        reason = log.error
        result = official.compliance.get(log.rel)
        if result is not None and result.passed:
            warned = _warnings(result.output)
            reason += ("; MLCommons' compliance checker passed it with only a WARNING: " + "; ".join(warned)
                       if warned else "; MLCommons' compliance checker passed it without a warning")
        item.fail(reason)


def _log_minutes(log: _Log, division: str) -> float | None:
    """A log's time to train as the result summarizer computes it; None for a run that does not count.

    In the summarizer's arithmetic (summarizer_run_minutes), so that the score equals its score
    to the last bit. A closed run counts only when it succeeded; an open one needs no quality
    target, only run_start and run_stop.
    """
    from benchpipe.results.scoring import summarizer_run_minutes

    run = log.run
    if log.error is not None or run is None or run.run_start_ms is None or run.run_stop_ms is None:
        return None
    if division != "open" and run.status != "success":
        return None
    return summarizer_run_minutes(run.run_start_ms, run.run_stop_ms)


def _system_names(tree: Path) -> dict[str, str]:
    """system folder -> its system_name, the name the summarizer's rows give it."""
    names = {}
    for path in tree.glob("systems/*.json"):
        try:
            names[path.stem] = str(json.loads(path.read_text())["system_name"])
        except (OSError, ValueError, KeyError, TypeError):
            names[path.stem] = path.stem
    return names


def _division(tree: Path, system: str) -> str:
    try:
        return str(json.loads((tree / "systems" / f"{system}.json").read_text()).get("division", "closed"))
    except (OSError, ValueError, AttributeError):
        return "closed"


def _run_record(log: _Log) -> dict[str, Any]:
    """One log's run as the report shows it: its time to train as benchpipe's parser gives it."""
    run = log.run
    return {"file": log.rel, "run": _run_number(Path(log.rel)),
            "status": "unreadable" if run is None else run.status,
            "time_to_train_min": None if run is None else run.time_to_train_min}


def _training_scores(tree: Path, item: Item, logs: list[_Log], official: _Official,
                     scores: dict[tuple[str, str], float | None], records: list[dict[str, Any]]) -> None:
    from benchpipe.mlcommons import training
    from benchpipe.results.scoring import olympic_score, scaled_score

    names = _system_names(tree)
    groups: dict[tuple[str, str], list[_Log]] = {}
    for log in logs:
        groups.setdefault((log.system, log.benchmark), []).append(log)
    for (system, benchmark), group in sorted(groups.items()):
        folder = f"results/{system}/{benchmark}"
        factor = training.read_scaling_factor(tree / folder)
        score = olympic_score([_log_minutes(log, _division(tree, system)) for log in group])
        value = scaled_score(score.olympic_mean_minutes, factor)
        scores[(names.get(system, system), benchmark)] = value
        record = {"folder": folder, "system": system, "system_name": names.get(system, system),
                  "benchmark": benchmark, "runs": score.runs, "olympic_mean_min": score.olympic_mean_minutes,
                  "scaling_factor": factor, "score_min": value, "summarizer_min": None,
                  "reason": None if value is not None else score.reason,
                  "logs": [_run_record(log) for log in group]}
        records.append(record)
        item.check(f"{folder}: olympic mean of {score.runs} logs × scaling factor {factor!r}")
        if official.ruleset and benchmark in training.ruleset_benchmarks(official.ruleset):
            wanted = training.required_runs(benchmark, official.ruleset)
            if score.runs != wanted:
                item.fail(f"{folder}: {score.runs} result files, training {official.ruleset} requires {wanted}")
        if value is None:
            item.fail(f"{folder}: no score: {score.reason}")
            continue
        item.reasons.append(f"{folder}: {value!r} min (olympic mean {score.olympic_mean_minutes!r} "
                            f"× scaling factor {factor!r})")
        record["summarizer_min"] = _against_summarizer(item, official, folder, names.get(system, system),
                                                       benchmark, value)
        rewritten = official.rescaled.get(folder, factor)
        if rewritten != factor:
            item.fail(f"{folder}/scaling.json: scaling_factor {factor!r}, the RCP checker derives {rewritten!r} "
                      "from the logs")


def _against_summarizer(item: Item, official: _Official, folder: str, system: str, benchmark: str,
                        value: float) -> float | None:
    """The summarizer's score of the folder (None: it gave none), failing ``item`` unless it equals ``value``."""
    from benchpipe.mlcommons import training

    if official.summarizer is None:
        item.fail(f"{folder}: the result summarizer did not run (see checkers)")
        return None
    theirs = training.summarizer_minutes(official.summarizer, benchmark).get(system)
    if theirs is None:
        item.fail(f"{folder}: benchpipe scores {value!r} min, the result summarizer gives no score")
    elif theirs != value:
        item.fail(f"{folder}: benchpipe scores {value!r} min, the result summarizer {theirs!r}")
    else:
        item.reasons.append(f"{folder}: equal to the result summarizer's {theirs!r}")
    return theirs


def _training_checkers(item: Item, official: _Official) -> None:
    if official.error is not None:
        item.fail(f"the official tools could not run: {official.error}")
    if not official.ruleset:
        return
    item.reasons.append(official.ruleset_why)
    for rel, result in official.compliance.items():
        item.check(f"compliance checker {official.ruleset}: {rel}")
        if not result.passed:
            item.fail(f"{rel}: compliance checker: {result.problems()}")
        elif warned := _warnings(result.output):
            item.reasons.append(f"{rel}: compliance checker passed it with WARNING: {'; '.join(warned)}")
    for rel, result in official.systems.items():
        item.check(f"system description checker {official.ruleset}: {rel}")
        if not result.passed:
            item.fail(f"{rel}: system description checker: {result.problems()}")
    for verdict in (official.package, official.summarizer):
        if verdict is None:
            continue
        item.check(f"{verdict.tool} {official.ruleset}: the organization folder")
        # The summarizer was asked about one benchmark only; every score is compared in scores.
        errors = [e for e in verdict.errors if not e.endswith("no score in summary.csv")]
        if verdict.tool == "package_checker" and not verdict.passed:
            item.fail(f"package_checker: {verdict.problems()}")
        elif verdict.tool == "result_summarizer" and errors:
            item.fail(f"result_summarizer: {'; '.join(errors[:3])}")


# --- the submitter's published summary -----------------------------------------------------------


def _summary_files(tree: Path, given: Path | None) -> list[Path]:
    found = [given] if given is not None else []
    own = tree / SUMMARY_JSON
    if own.is_file() and (given is None or own.resolve() != Path(given).resolve()):
        found.append(own)
    return found


def _summary_rows(path: Path) -> list[dict[str, str | None]]:
    """The summary's rows, every number as its text: how many digits it shows is its rounding."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(text.splitlines())]
    try:
        data = json.loads(text, parse_float=str, parse_int=str)
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ConfigError(f"{path}: a result summary is a list of rows (one object per system)")
    return [{k: (None if v is None else str(v)) for k, v in row.items()} for row in data]


def _tolerance(text: str) -> float:
    """Half a unit in the last digit the value shows, and a float's rounding of it."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    scale = 10.0 ** (int(exponent) if exponent else 0)
    return 0.5 * 10.0 ** -decimals * scale * (1 + 1e-9) + 4 * math.ulp(abs(float(text)))


def _compare_summaries(tree: Path, item: Item, paths: list[Path],
                       scores: dict[tuple[str, str], float | None]) -> None:
    for path in paths:
        where = path.name if path.parent.resolve() == tree.resolve() else str(path)
        rows = _summary_rows(path)
        benchmarks = {b for _, b in scores}
        systems = {s for s, _ in scores}
        for row in rows:
            system = row.get("system")
            if system not in systems:
                item.fail(f"{where}: row for system {system!r}: the folder has no results for it")
                continue
            for benchmark in sorted(benchmarks | {k for k, v in row.items() if v is not None and k in _ALL}):
                _compare_cell(item, where, system, benchmark, row.get(benchmark), scores.get((system, benchmark)))
        missing = systems - {row.get("system") for row in rows}
        for system in sorted(missing):
            item.fail(f"{where}: no row for system {system!r}, which the folder has results for")


def _all_training_benchmarks() -> frozenset[str]:
    from benchpipe.mlcommons import training

    return frozenset(training.benchmark_meta.get_result_file_counts("training"))


_ALL = _all_training_benchmarks()


def _compare_cell(item: Item, where: str, system: str, benchmark: str, published: str | None,
                  ours: float | None) -> None:
    item.check(f"{where}: {system} {benchmark}")
    if published is None and ours is None:
        return
    if published is None:
        item.fail(f"{where}: {system} {benchmark}: no published score, the logs give {ours!r} min")
    elif ours is None:
        item.fail(f"{where}: {system} {benchmark}: published {published} min, the logs give no score")
    elif not re.fullmatch(r"-?[0-9.]+(?:[eE][-+]?[0-9]+)?", published):
        item.fail(f"{where}: {system} {benchmark}: published value {published!r} is not a number")
    elif abs(float(published) - ours) > _tolerance(published):
        item.fail(f"{where}: {system} {benchmark}: published {published} min, the logs give {ours!r} "
                  f"(beyond the summary's rounding, ±{_tolerance(published):.1e})")
    else:
        item.reasons.append(f"{where}: {system} {benchmark}: published {published} min matches {ours!r}")


# --- inference -----------------------------------------------------------------------------------


def _inference_items(tree: Path, checkout: Path | None, round_: str | None, summary: Path | None,
                     roots: list[str]) -> list[Item]:
    from benchpipe.contracts import rounds

    items = [
        guarded("integrity", lambda item: _integrity(tree, item, roots)),
        guarded("logs", lambda item: _inference_logs(tree, item)),
        guarded("required", lambda item: _required_files(tree, item, round_ or rounds.ROUND)),
        guarded("loadgen", lambda item: _loadgen_rules(tree, item)),
        guarded("checkers", lambda item: _inference_checker(tree, item, checkout, round_)),
    ]
    if summary is not None:
        item = Item("summary", status="skipped")
        item.reasons.append(f"{summary}: comparing an inference summary is not supported yet")
        items.append(item)
    return items


def _inference_division(tree: Path) -> tuple[str, str | None]:
    """(the division a division folder is judged as, why when its name does not say)."""
    if tree.name in _DIVISIONS:
        return tree.name, None
    return "closed", (f"the folder's name '{tree.name}' is no division ({', '.join(_DIVISIONS)}): "
                      "judged as closed, whose rules are the strictest")


def _required_files(tree: Path, item: Item, round_: str) -> None:
    division, why = _inference_division(tree)
    if why:
        item.reasons.append(why)
    check_division_files(tree, item, division, round_)


def division_detail_logs(tree: Path) -> dict[tuple[str, str, str, str], Path]:
    """(<org>/<system>, benchmark, scenario, mode) -> detail log, as audit.detail_logs keys a benchpipe tree's."""
    logs = {}
    for path in sorted(tree.glob(f"*/results/**/{DETAIL_LOG}")):
        parts = path.relative_to(tree.parent).parts  # <division>/<org>/results/<system>/<model>/<scenario>/...
        key = test_key(parts) if len(parts) >= 7 else None
        if key is not None:
            logs[(f"{parts[1]}/{key[0]}", *key[1:])] = path
    return logs


def _loadgen_model(benchmark: str, model_folder: str) -> str:
    """LoadGen's name for the model: benchpipe's for a benchmark it knows, else the folder's (resnet50)."""
    from benchpipe.contracts import registry

    if benchmark in registry.names() and registry.get(benchmark).inference is not None:
        return registry.get(benchmark).inference.loadgen_model
    return model_folder


def _loadgen_rules(tree: Path, item: Item) -> None:
    """benchpipe's LoadGen rules (infer.validity) on every test and its summary against its detail log.

    Nothing in the folder says it is a development run, so each run is judged as an official
    one: at least the round's min duration, and the round's query and sample counts.
    """
    from benchpipe.contracts.rounds import OFFICIAL_MIN_DURATION_MS
    from benchpipe.infer.validity import check_accuracy, check_performance
    division, _ = _inference_division(tree)
    logs = division_detail_logs(tree)
    item.reasons.append(f"judged as official runs (min duration {OFFICIAL_MIN_DURATION_MS // 1000} s, division "
                        f"{division}): a folder benchpipe did not make has no config naming a development run")
    for (_, benchmark, scenario, mode), path in logs.items():
        rel = path.relative_to(tree)
        item.check(f"LoadGen rules: {rel}")
        detail = _detail_or_fail(tree, item, path)
        if detail is None:
            continue
        if mode == "accuracy":
            problems = check_accuracy(detail, rel)
        else:
            problems = check_performance(
                detail, rel, scenario=scenario, official=True, min_duration_ms=OFFICIAL_MIN_DURATION_MS,
                loadgen_model=_loadgen_model(benchmark, path.relative_to(tree).parts[3]), division=division,
                compliance_test=None if mode == "performance" else mode)
        for problem in problems:
            item.fail(problem)
    crosscheck_logs(tree, item, logs)


def _detail_or_fail(tree: Path, item: Item, path: Path) -> Any:
    """The parsed detail log, or None with the parse error as ``item``'s failure."""
    from benchpipe.results.loadgen_parser import parse_detail_log

    try:
        return parse_detail_log(path)
    except BenchpipeError as exc:
        item.fail(str(exc).replace(f"{tree}/", ""))
        return None


def _inference_logs(tree: Path, item: Item) -> None:
    """benchpipe's parse of every LoadGen detail log, and the checks the official checker leaves out:
    result_validity and LoadGen's error entries in a performance log."""
    logs = sorted(tree.glob(f"*/results/**/{DETAIL_LOG}"))
    if not logs:
        item.fail(f"no {DETAIL_LOG} under <org>/results/")
    for path in logs:
        rel = path.relative_to(tree).as_posix()
        item.check(f"benchpipe's LoadGen parser: {rel}")
        detail = _detail_or_fail(tree, item, path)
        if detail is None:
            continue
        for error in detail.errors:
            item.fail(f"{rel}: LoadGen error {error}")
        validity = detail.get("result_validity")
        if "performance" in path.parts and validity is not None and validity != "VALID":
            item.fail(f"{rel}: result_validity is {validity}")


def _inference_checker(tree: Path, item: Item, checkout: Path | None, round_: str | None) -> None:
    from benchpipe.contracts import rounds
    from benchpipe.mlcommons.inference_checker import run_inference_checker

    if checkout is None:
        item.status = "skipped"
        item.reasons.append("MLCommons' inference checker not run: give --inference-checker "
                            "<mlcommons/inference checkout>")
        return
    division, _ = _inference_division(tree)
    version = round_ or rounds.ROUND
    orgs = sorted(org.name for org in tree.iterdir() if (org / "results").is_dir())
    for org in orgs:
        with tempfile.TemporaryDirectory(prefix="benchpipe-audit-") as scratch:
            root = Path(scratch) / "root"
            shutil.copytree(tree / org, root / division / org, symlinks=True)
            _writable(root)
            try:
                run_inference_checker(Path(checkout), root, submitter=org, version=version, development=False,
                                      subset_accuracy=False, keep_dir=Path(scratch) / "checker")
            except BenchpipeError as exc:
                item.fail(f"{org}: inference checker {version}: {exc}".replace(f"{scratch}/", ""))
        item.check(f"MLCommons inference submission checker {version}: {division}/{org}")
