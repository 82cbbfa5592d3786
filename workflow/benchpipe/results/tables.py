"""The Parquet tables built from raw logs, with explicit schemas.

    training_events.parquet  every MLLOG record of every run
    runs.parquet             one row per training run (TrainingRun)
    scores.parquet           one row per (target, benchmark): the olympic mean, its RCP scaling
                             factor and the score (their product, as MLCommons' result summarizer)
    inference.parquet        one row per LoadGen test (scenario x mode)
    provenance.parquet       one row per training run, LoadGen test and Mobile run: runtime, image, hashes
    mobile.parquet           one row per Mobile app task run (target, benchmark, precision, task, mode)

The parse stage writes each as one file. A submission tree holds them hive-partitioned, one
folder per table (write_partitioned), so that DuckDB, pandas and pyarrow read a table of one
tree, or of many trees at once, as one dataset:

    benchpipe/tables/<table>/round=<round>/division=<division>/target=<target>/part-0.parquet
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchpipe import provenance
from benchpipe.contracts import layout, registry
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.benchmark import LLMInferenceTask
from benchpipe.contracts.errors import ParseError, ValidationError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.layout import ACCURACY_TXT, DETAIL_LOG, MLLOG_FILE
from benchpipe.contracts.records import read_model_record, read_run_kind
from benchpipe.contracts.rounds import OFFICIAL_MIN_DURATION_MS, ROUND, TRAINING_RULESET
from benchpipe.results.loadgen_parser import (
    RESULT_KEY,
    TOKEN_RESULT_KEY,
    TPOT_P99,
    TTFT_P99,
    parse_accuracy_txt,
    parse_detail_log,
    parse_rouge_txt,
    tokens_per_second,
    uses_token_latencies,
)
from benchpipe.results.mllog_parser import (
    RunSummary,
    TrainingRun,
    event_batches,
    int_array,
    parse_mllog,
    string_array,
    summarize_run,
)
from benchpipe.results.scoring import Score, olympic_score, scaled_score, summarizer_run_minutes

EVENTS_SCHEMA = pa.schema([
    ("target", pa.string()), ("benchmark", pa.string()), ("run", pa.int32()),
    ("line", pa.int32()), ("time_ms", pa.int64()), ("event_type", pa.string()),
    ("key", pa.string()), ("value_json", pa.string()), ("metadata_json", pa.string()),
])
RUNS_SCHEMA = pa.schema([
    ("target", pa.string()), ("benchmark", pa.string()), ("run", pa.int32()),
    ("division", pa.string()), ("seed", pa.int64()), ("status", pa.string()),
    ("run_start_ms", pa.int64()), ("run_stop_ms", pa.int64()),
    ("time_to_train_min", pa.float64()), ("epochs", pa.int32()),
    ("best_eval_accuracy", pa.float64()), ("quality_target", pa.float64()),
    ("log_sha256", pa.string()), ("training_ruleset", pa.string()),
])
SCORES_SCHEMA = pa.schema([
    ("target", pa.string()), ("benchmark", pa.string()), ("runs", pa.int32()),
    ("successful_runs", pa.int32()), ("olympic_mean_min", pa.float64()), ("reason", pa.string()),
    ("training_ruleset", pa.string()),
    # The stated score: olympic_mean_min (in the summarizer's arithmetic) times scaling_factor, the
    # RCP checker's factor for a closed run set of an MLPerf benchmark that converged faster than
    # its reference (1.0 otherwise); null with olympic_mean_min.
    ("scaling_factor", pa.float64()), ("score_min", pa.float64()),
])
# provenance.json's flags: a boolean column each.
PROVENANCE_FLAGS = frozenset({"code_dirty"})
# provenance.json's structured values: a "<name>_json" column each, their JSON text.
PROVENANCE_JSON = frozenset({"wheels", "attempts"})


def _provenance_column(name: str) -> tuple[str, pa.DataType]:
    if name in PROVENANCE_JSON:
        return f"{name}_json", pa.string()
    # A flag stays a flag: a string "true" reads as set in every language, "false" included.
    return name, pa.bool_() if name in PROVENANCE_FLAGS else pa.string()


INFERENCE_SCHEMA = pa.schema([
    ("target", pa.string()), ("benchmark", pa.string()), ("scenario", pa.string()),
    ("mode", pa.string()), ("result_validity", pa.string()), ("invalid_reason", pa.string()),
    ("samples_per_second", pa.float64()), ("latency_p50_ns", pa.int64()),
    ("latency_p90_ns", pa.int64()), ("latency_p99_ns", pa.int64()),
    ("early_stopping_latency_ns", pa.int64()), ("query_count", pa.int64()),
    ("min_duration_ms", pa.int64()), ("errors", pa.int32()), ("warnings", pa.int32()),
    ("accuracy", pa.float64()), ("accuracy_target", pa.float64()),
    ("official_round_valid", pa.bool_()), ("loadgen_version", pa.string()),
    ("log_sha256", pa.string()),
    # The scenario's result under the detail-log key it is ranked by, in the column of its unit:
    # a latency (SingleStream, MultiStream: LoadGen logs both in ns, whatever the key's suffix)
    # or a throughput (Offline, Server); the other column is null.
    ("result_key", pa.string()), ("result_latency_ns", pa.int64()), ("result_samples_per_s", pa.float64()),
    ("early_stopping_met", pa.bool_()), ("official_run", pa.bool_()), ("model_sha256", pa.string()),
    ("inference_round", pa.string()),
    # An LLM's token figures (null for a classifier, and TTFT/TPOT for Offline, which does not
    # time tokens): the p99 time to first token and time per output token the checker holds to
    # the round's limits, and the run's tokens/s. An LLM throughput result is in tokens/s:
    # result_tokens_per_s, with result_samples_per_s null.
    ("ttft_p99_ns", pa.int64()), ("tpot_p99_ns", pa.int64()), ("tokens_per_second", pa.float64()),
    ("result_tokens_per_s", pa.float64()),
])
PROVENANCE_SCHEMA = pa.schema(
    [("target", pa.string()), ("benchmark", pa.string()), ("job", pa.string())]
    + [_provenance_column(f) for f in provenance.FIELDS]
)
# One Mobile app task run on LiteRT (benchpipe mobile run): the figures of the app's extended
# result (mobile.result.derive_run), from the same logs; accuracy runs carry the accuracy.
MOBILE_SCHEMA = pa.schema([
    ("target", pa.string()), ("benchmark", pa.string()), ("precision", pa.string()), ("task_id", pa.string()),
    ("scenario", pa.string()), ("mode", pa.string()), ("run_mode", pa.string()),
    ("result_validity", pa.string()), ("query_count", pa.int64()), ("samples", pa.int64()),
    ("latency_mean_ns", pa.int64()), ("latency_p90_ns", pa.int64()),
    # The app's throughput: SingleStream 1 / p90 latency, Offline samples / p90 latency (per second).
    ("throughput", pa.float64()), ("accuracy", pa.float64()), ("accuracy_samples", pa.int64()),
    ("model_sha256", pa.string()), ("tflite_bytes", pa.int64()), ("delegate", pa.string()),
    ("threads", pa.int32()), ("log_sha256", pa.string()),
])
TABLES = {
    "training_events.parquet": EVENTS_SCHEMA,
    "runs.parquet": RUNS_SCHEMA,
    "scores.parquet": SCORES_SCHEMA,
    "inference.parquet": INFERENCE_SCHEMA,
    "provenance.parquet": PROVENANCE_SCHEMA,
    "mobile.parquet": MOBILE_SCHEMA,
}
MOBILE_RUN_JSON = "mobile_run.json"  # benchpipe.mobile.run.MOBILE_RUN, read here as plain JSON


def mobile_row(target: str, benchmark: str, precision: str, task: str, mode: str, run_dir: Path) -> dict[str, Any]:
    """One mobile.parquet row from a Mobile run folder's detail log and mobile_run.json."""
    path = run_dir / MOBILE_RUN_JSON
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ParseError(f"{path}: cannot read the Mobile run record: {exc}") from exc
    if (record.get("task_id"), record.get("mode"), record.get("precision")) != (task, mode, precision):
        raise ParseError(f"{path}: records {record.get('task_id')}/{record.get('precision')}/{record.get('mode')}, "
                         f"its folder is {task}/{precision}/{mode}")
    detail = parse_detail_log(run_dir / DETAIL_LOG)
    row: dict[str, Any] = {
        "target": target, "benchmark": benchmark, "precision": precision, "task_id": task,
        "scenario": record["scenario"], "mode": mode, "run_mode": record["run_mode"],
        "result_validity": None, "query_count": None, "samples": None, "latency_mean_ns": None,
        "latency_p90_ns": None, "throughput": None, "accuracy": record.get("accuracy"),
        "accuracy_samples": record.get("accuracy_samples"), "model_sha256": record["model_sha256"],
        "tflite_bytes": record["conversion"]["tflite_bytes"], "delegate": record["backend"]["delegate"],
        "threads": record["backend"]["threads"], "log_sha256": sha256_file(run_dir / DETAIL_LOG),
    }
    if mode == "performance":
        queries = int(detail.get("result_query_count"))
        samples = queries * int(detail.get("generated_samples_per_query", 1))
        p90 = int(detail.get("result_90.00_percentile_latency_ns"))
        row.update(result_validity=detail.get("result_validity"), query_count=queries, samples=samples,
                   latency_mean_ns=int(detail.get("result_mean_latency_ns")), latency_p90_ns=p90,
                   throughput=(samples if record["scenario"] == "Offline" else 1) / (p90 / 1e9) if p90 else 0.0)
    return row


def training_log_rows(
    target: str, benchmark: str, index: int, path: Path, ruleset: str = TRAINING_RULESET
) -> tuple[list[dict], dict]:
    """(training_events rows, runs row) of one MLLOG log, wherever it lies (a run folder, a tree),
    judged under training ``ruleset``.

    From parse_mllog's Events, the other path from the one write_tables takes: the audit
    re-derives a tree's tables with it.
    """
    from benchpipe.results.mllog_parser import metadata_json, value_json

    events = parse_mllog(path)
    # value_json and metadata_json: json.dumps(value) and json.dumps(metadata, sort_keys=True),
    # without the fresh encoder json.dumps makes per call.
    event_rows = [
        {"target": target, "benchmark": benchmark, "run": index, "line": e.line,
         "time_ms": e.time_ms, "event_type": e.event_type, "key": e.key,
         "value_json": value_json(e.value), "metadata_json": metadata_json(e.metadata)}
        for e in events
    ]
    return event_rows, run_row(target, benchmark, index, path, summarize_run(events, path), ruleset)


def _run_sets(run_rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in run_rows:
        groups.setdefault((row["target"], row["benchmark"]), []).append(row)
    return groups


def is_rcp_scaled(benchmark: str, group: list[dict]) -> bool:
    """Whether the RCP checker scales this run set's score: closed runs of a benchmark of their
    training ruleset (the official tools check no other)."""
    from benchpipe.mlcommons import training

    # One config makes all of a benchmark's runs: they share their ruleset.
    closed = all(r["division"] == "closed" for r in group)
    return closed and training.is_official(benchmark, group[0]["training_ruleset"])


def scaling_factors(run_rows: list[dict], logs: Mapping[tuple[str, str, int], Path]) -> dict[tuple[str, str], float]:
    """(target, benchmark) -> the RCP checker's scaling factor of its logs, for each run set it
    scales (is_rcp_scaled); ``logs``: (target, benchmark, run) -> the run's MLLOG log. What
    score_rows multiplies by: the parse stage and the audit both derive it from the logs.
    """
    from benchpipe.mlcommons import training

    factors = {}
    for (target, benchmark), group in sorted(_run_sets(run_rows).items()):
        if not is_rcp_scaled(benchmark, group):
            continue
        missing = [r["run"] for r in group if (target, benchmark, r["run"]) not in logs]
        if missing:
            raise ValidationError(f"runs.parquet: {target} {benchmark} run(s) {missing}: no log to derive the RCP "
                                  "scaling factor from")
        paths = [logs[(target, benchmark, r["run"])] for r in sorted(group, key=lambda r: r["run"])]
        factors[(target, benchmark)] = training.rcp_scaling_factor(paths, benchmark, group[0]["training_ruleset"])
    return factors


def is_summarized_open(benchmark: str, group: list[dict]) -> bool:
    """Whether the result summarizer scores this run set as an open one of its round: open runs of
    a benchmark of their training ruleset. It counts each run whose log the compliance checker
    passes, by run_start..run_stop, whether or not the run reached the quality target."""
    from benchpipe.mlcommons import training

    opened = all(r["division"] == "open" for r in group)
    return opened and training.is_official(benchmark, group[0]["training_ruleset"])


def summarizer_counted(
    run_rows: list[dict], logs: Mapping[tuple[str, str, int], Path]
) -> dict[tuple[str, str, int], bool]:
    """(target, benchmark, run) -> whether the result summarizer counts the run's time, for the runs
    of each open run set it scores (is_summarized_open) in which not every run reached the target:
    the one case where that differs from the run's status. ``logs`` as for scaling_factors."""
    from benchpipe.mlcommons import training

    counted = {}
    for (target, benchmark), group in sorted(_run_sets(run_rows).items()):
        if not is_summarized_open(benchmark, group) or all(r["status"] == "success" for r in group):
            continue
        for row in group:
            key = (target, benchmark, row["run"])
            if key not in logs:
                raise ValidationError(f"runs.parquet: {target} {benchmark} run {row['run']}: no log to judge as the "
                                      "result summarizer does")
            counted[key] = training.summarizer_counts(logs[key], row["training_ruleset"])
    return counted


def _open_score(target: str, benchmark: str, group: list[dict],
                counted: Mapping[tuple[str, str, int], bool]) -> tuple[Score, Score]:
    """(score, the same in the summarizer's arithmetic) of an open run set the summarizer scores."""
    if all(r["status"] == "success" for r in group):
        ok = [True] * len(group)
    else:
        missing = [r["run"] for r in group if (target, benchmark, r["run"]) not in counted]
        if missing:
            raise ValidationError(f"scores.parquet: {target} {benchmark}: open runs short of the target are scored "
                                  f"as the result summarizer counts them, and run(s) {missing} were not judged "
                                  "(summarizer_counted)")
        ok = [counted[(target, benchmark, r["run"])] and r["run_stop_ms"] is not None for r in group]
    timed = olympic_score([(r["run_stop_ms"] - r["run_start_ms"]) / 60_000 if keep else None
                           for r, keep in zip(group, ok)])
    exact = olympic_score([summarizer_run_minutes(r["run_start_ms"], r["run_stop_ms"]) if keep else None
                           for r, keep in zip(group, ok)])
    successful = sum(r["status"] == "success" for r in group)
    short = len(group) - successful
    reason = timed.reason
    if short and timed.olympic_mean_minutes is not None:
        reason = (f"open division: {short} of {len(group)} runs stopped at the epoch or step limit short of the "
                  f"quality target {group[0]['quality_target']}; scored by run_start..run_stop of each run whose "
                  "log passes the open rules, as the official result summarizer scores open runs")
    return Score(len(group), successful, timed.olympic_mean_minutes, reason), exact


def score_rows(run_rows: list[dict], scaling: Mapping[tuple[str, str], float] | None = None,
               counted: Mapping[tuple[str, str, int], bool] | None = None) -> list[dict]:
    """One scores row per (target, benchmark) of ``run_rows``; ``scaling``: scaling_factors of their
    logs; ``counted``: summarizer_counted of their logs.

    ``olympic_mean_min`` is the olympic mean of the runs' time_to_train_min; ``score_min`` the
    same runs' olympic mean in the result summarizer's arithmetic (summarizer_run_minutes) times
    ``scaling_factor``, so that it equals the summarizer's score to the last bit. An open run set
    of an MLPerf benchmark counts the runs the summarizer counts (_open_score).
    """
    scaling = scaling or {}
    scores = []
    for (target, benchmark), group in sorted(_run_sets(run_rows).items()):
        score = olympic_score([r["time_to_train_min"] for r in group])
        exact = olympic_score([None if r["time_to_train_min"] is None
                               else summarizer_run_minutes(r["run_start_ms"], r["run_stop_ms"]) for r in group])
        if is_summarized_open(benchmark, group):
            score, exact = _open_score(target, benchmark, group, counted or {})
        elif score.olympic_mean_minutes is None and _open_and_finished(group):
            # The open rules do not require the quality target, and MLCommons' result
            # summarizer scores such runs by run_start..run_stop; so does this row, saying so.
            timed = olympic_score([(r["run_stop_ms"] - r["run_start_ms"]) / 60_000 for r in group])
            exact = olympic_score([summarizer_run_minutes(r["run_start_ms"], r["run_stop_ms"]) for r in group])
            label = (
                f"open division: {score.runs - score.successful_runs} of {score.runs} runs stopped at "
                f"the epoch limit short of the quality target {group[0]['quality_target']}; scored by "
                "run_start..run_stop, as the official result summarizer scores open runs"
            )
            score = Score(score.runs, score.successful_runs, timed.olympic_mean_minutes, timed.reason or label)
        factor = 1.0
        if is_rcp_scaled(benchmark, group):
            if (target, benchmark) in scaling:
                factor = scaling[(target, benchmark)]
            elif exact.olympic_mean_minutes is not None:
                # A silent 1.0 would state a score the summarizer does not give.
                raise ValidationError(
                    f"scores.parquet: {target} {benchmark}: closed runs of training {group[0]['training_ruleset']} "
                    "are scaled by the RCP checker's factor, and none was derived from their logs (scaling_factors)"
                )
        scores.append({
            "target": target, "benchmark": benchmark, "runs": score.runs,
            "successful_runs": score.successful_runs, "olympic_mean_min": score.olympic_mean_minutes,
            "reason": score.reason,
            # One config makes all of a benchmark's runs: its runs share their ruleset.
            "training_ruleset": group[0]["training_ruleset"],
            "scaling_factor": factor, "score_min": scaled_score(exact.olympic_mean_minutes, factor),
        })
    return scores


def _open_and_finished(group: list[dict]) -> bool:
    return all(r["division"] == "open" and r["run_stop_ms"] is not None for r in group)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# The figure each scenario is ranked by, as LoadGen logs it (latencies in ns): the same key the
# compliance scripts read.
SCENARIO_METRIC = RESULT_KEY
# Scenarios ranked by a latency (result_latency_ns); the others by a throughput (result_samples_per_s).
LATENCY_SCENARIOS = frozenset({"SingleStream", "MultiStream"})


# What an inference row takes from its LoadGen logs alone (an audit re-derives these from a tree).
LOADGEN_FIELDS = (
    "result_validity", "invalid_reason", "samples_per_second", "latency_p50_ns", "latency_p90_ns",
    "latency_p99_ns", "early_stopping_latency_ns", "query_count", "min_duration_ms", "errors", "warnings",
    "accuracy", "loadgen_version", "log_sha256", "result_key", "result_latency_ns", "result_samples_per_s",
    "early_stopping_met", "ttft_p99_ns", "tpot_p99_ns", "tokens_per_second", "result_tokens_per_s",
)
# An LLM's accuracy column: ROUGE-1, the first of the checker's accuracy metrics for
# llama3.1-8b, as a fraction like a classifier's top-1 (the reference prints points: 38.7792);
# accuracy.txt holds the others.
LLM_ACCURACY_METRIC = ("rouge1", "ROUGE1")
POINTS = 100.0


def accuracy_target(benchmark: str) -> float:
    """The accuracy column's target, a fraction: a classifier's top-1, an LLM's ROUGE-1 (99 % of the reference)."""
    task = registry.get(benchmark).inference
    if isinstance(task, LLMInferenceTask):
        return dict(task.accuracy_targets)[LLM_ACCURACY_METRIC[1]] / POINTS
    return task.accuracy_target


def inference_row(
    target: str, benchmark: str, scenario: str, mode: str, test_dir: Path, round_: str = ROUND
) -> dict:
    """One LoadGen test's row, judged under inference round ``round_``."""
    fields = loadgen_fields(scenario, mode, test_dir / DETAIL_LOG, test_dir / ACCURACY_TXT)
    kind = read_run_kind(test_dir)
    return {
        "target": target, "benchmark": benchmark, "scenario": scenario, "mode": mode, **fields,
        "accuracy_target": accuracy_target(benchmark) if mode == "accuracy" else None,
        # Valid for an official round needs the full duration; benchpipe's own checks come on top.
        "official_round_valid": (kind.official and fields["min_duration_ms"] >= OFFICIAL_MIN_DURATION_MS
                                 and fields["result_validity"] == "VALID"),
        "official_run": kind.official,
        "model_sha256": read_model_record(test_dir).sha256,
        "inference_round": round_,
    }


def loadgen_fields(scenario: str, mode: str, path: Path, accuracy_txt: Path) -> dict:
    """The LOADGEN_FIELDS of one test, from its detail log and (accuracy mode) accuracy.txt.

    A log with token latencies on is an LLM's: ranked by the checker's token metric, its
    accuracy ROUGE-1; the log says so itself, so that the audit re-derives a row from it alone.
    """
    detail = parse_detail_log(path)
    min_duration = int(detail.require("effective_min_duration_ms", path))
    tokens = uses_token_latencies(detail)
    accuracy = None
    if mode == "accuracy":
        accuracy = (parse_rouge_txt(accuracy_txt)[LLM_ACCURACY_METRIC[0]] / POINTS if tokens
                    else parse_accuracy_txt(accuracy_txt))
    # Compliance runs are performance runs under an audit.config: their validity counts too.
    validity = None if mode == "accuracy" else detail.get("result_validity")
    key = (TOKEN_RESULT_KEY if tokens else SCENARIO_METRIC)[scenario] if validity is not None else None
    result = None if key is None else detail.get(key)
    latency = scenario in LATENCY_SCENARIOS
    throughput = None if latency or result is None else float(result)
    return {
        "result_validity": validity,
        "invalid_reason": detail.get("result_invalid_reason") or None,
        "samples_per_second": detail.get("result_samples_per_second", detail.get("result_qps_with_loadgen_overhead")),
        "latency_p50_ns": _int(detail.get("result_50.00_percentile_latency_ns")),
        "latency_p90_ns": _int(detail.get("result_90.00_percentile_latency_ns")),
        "latency_p99_ns": _int(detail.get("result_99.00_percentile_latency_ns")),
        "early_stopping_latency_ns": _int(detail.get("early_stopping_latency_ss", detail.get("early_stopping_latency_ms"))),
        "query_count": _int(detail.get("result_query_count")),
        "min_duration_ms": min_duration,
        "errors": len(detail.errors), "warnings": len(detail.warnings),
        "accuracy": accuracy,
        "loadgen_version": str(detail.require("loadgen_version", path)),
        "log_sha256": sha256_file(path),
        "result_key": key,
        "result_latency_ns": _int(result) if latency else None,
        "result_samples_per_s": None if tokens else throughput,
        "early_stopping_met": detail.get("early_stopping_met"),
        "ttft_p99_ns": _int(detail.get(TTFT_P99)) if tokens else None,
        "tpot_p99_ns": _int(detail.get(TPOT_P99)) if tokens else None,
        "tokens_per_second": tokens_per_second(detail) if tokens else None,
        "result_tokens_per_s": throughput if tokens else None,
    }


def provenance_row(target: str, benchmark: str, job: str, job_dir: Path) -> dict:
    fields = provenance.read(job_dir)
    row = {"target": target, "benchmark": benchmark, "job": job}
    for key in provenance.FIELDS:
        value = fields[key]
        if key in PROVENANCE_JSON:
            row[f"{key}_json"] = None if value is None else json.dumps(value, sort_keys=True)
        elif key in PROVENANCE_FLAGS:
            row[key] = None if value is None else bool(value)
        else:
            row[key] = None if value is None else str(value)
    return row


# training_events' row groups: this many rows each, whatever batches the parser gave, so that
# the same logs give the same file on any machine (a large log's batches follow its CPU count).
EVENTS_ROW_GROUP = 1 << 16
# Dictionaries only where values repeat: on the line, time and JSON columns they cost time
# and make the file larger.
EVENTS_WRITE_OPTIONS = {"compression": "zstd", "use_dictionary": ["target", "benchmark", "event_type", "key"]}


def write_training_events(
    writer: pq.ParquetWriter, target: str, benchmark: str, index: int, path: Path, ruleset: str = TRAINING_RULESET
) -> dict:
    """One MLLOG log's events appended to an open training_events writer, streamed (a large log
    by several processes: event_batches); returns the log's runs row, derived on the way."""
    summary = RunSummary(path)
    pending: list[pa.RecordBatch] = []

    # Arrow scalars made without pa.scalar, which loads pandas (see string_array).
    keys = (string_array([target])[0], string_array([benchmark])[0], int_array([index], pa.int32())[0])

    def write(table: pa.Table) -> None:
        rows = table.num_rows
        writer.write_table(table.add_column(0, "target", pa.repeat(keys[0], rows))
                           .add_column(1, "benchmark", pa.repeat(keys[1], rows))
                           .add_column(2, "run", pa.repeat(keys[2], rows)),
                           row_group_size=EVENTS_ROW_GROUP)

    for batch in event_batches(path, summary=summary):
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= EVENTS_ROW_GROUP:
            table = pa.Table.from_batches(pending)
            whole = table.num_rows - table.num_rows % EVENTS_ROW_GROUP
            write(table.slice(0, whole))
            pending = table.slice(whole).to_batches()
    if pending:
        write(pa.Table.from_batches(pending))
    return run_row(target, benchmark, index, path, summary.run(), ruleset)


def run_row(
    target: str, benchmark: str, index: int, path: Path, run: TrainingRun, ruleset: str = TRAINING_RULESET
) -> dict:
    return {
        "target": target, "benchmark": benchmark, "run": index, "division": run.division,
        "seed": run.seed, "status": run.status, "run_start_ms": run.run_start_ms,
        "run_stop_ms": run.run_stop_ms, "time_to_train_min": run.time_to_train_min,
        "epochs": run.epochs,
        "best_eval_accuracy": run.lowest_eval_accuracy if registry.get(benchmark).lower_is_better
        else run.best_eval_accuracy,
        "quality_target": registry.get(benchmark).quality_target, "log_sha256": sha256_file(path),
        "training_ruleset": ruleset,
    }


def write_tables(
    runs: Path,
    out: Path,
    run_dirs: list[Path],
    test_dirs: list[Path],
    training_ruleset: str = TRAINING_RULESET,
    inference_round: str = ROUND,
    mobile_dirs: list[Path] | None = None,
) -> dict[str, int]:
    """The tables of exactly the given run and test directories (not whatever else lies in runs/),
    their rows labelled with the rounds they are judged under.

    training_events goes to its file a batch at a time: a log of any size, with the memory of a batch.
    """
    rows: dict[str, list[dict]] = {name: [] for name in TABLES if name != "training_events.parquet"}
    written = {}
    logs: dict[tuple[str, str, int], Path] = {}
    with atomic_dir(out) as tmp:
        events = tmp / "training_events.parquet"
        with pq.ParquetWriter(events, EVENTS_SCHEMA, **EVENTS_WRITE_OPTIONS) as writer:
            for run_dir in sorted(run_dirs, key=lambda p: layout.identify_run(runs, p)):
                target, benchmark, index = layout.identify_run(runs, run_dir)
                logs[(target, benchmark, index)] = run_dir / MLLOG_FILE
                rows["runs.parquet"].append(
                    write_training_events(writer, target, benchmark, index, run_dir / MLLOG_FILE, training_ruleset))
                rows["provenance.parquet"].append(provenance_row(target, benchmark, f"train/run_{index}", run_dir))
        written["training_events.parquet"] = pq.read_metadata(events).num_rows
        rows["scores.parquet"] = score_rows(rows["runs.parquet"], scaling_factors(rows["runs.parquet"], logs),
                                            summarizer_counted(rows["runs.parquet"], logs))
        for test_dir in sorted(test_dirs, key=lambda p: layout.identify_test(runs, p)):
            target, benchmark, scenario, mode = layout.identify_test(runs, test_dir)
            rows["inference.parquet"].append(
                inference_row(target, benchmark, scenario, mode, test_dir, inference_round))
            rows["provenance.parquet"].append(provenance_row(target, benchmark, f"infer/{scenario}/{mode}", test_dir))
        for run_dir in sorted(mobile_dirs or [], key=lambda p: layout.identify_mobile_run(runs, p)):
            target, benchmark, precision, task, mode = layout.identify_mobile_run(runs, run_dir)
            rows["mobile.parquet"].append(mobile_row(target, benchmark, precision, task, mode, run_dir))
            rows["provenance.parquet"].append(
                provenance_row(target, benchmark, f"mobile/{precision}/{task}/{mode}", run_dir))
        for name, table_rows in rows.items():
            pq.write_table(pa.Table.from_pylist(table_rows, schema=TABLES[name]), tmp / name, compression="zstd")
            written[name] = len(table_rows)
    return {name: written[name] for name in TABLES}


def read_table(tables_dir: Path, name: str) -> list[dict]:
    path = tables_dir / name
    if not path.is_file():
        raise ParseError(f"{path}: missing: run `benchpipe parse` first")
    try:
        return pq.read_table(path, schema=TABLES[name]).to_pylist()
    except OSError as exc:
        raise ParseError(f"{path}: cannot read table: {exc}") from exc
    except pa.ArrowException as exc:
        raise ParseError(f"{path}: not a {name} table: {exc}") from exc


PARTITIONS = ("round", "division", "target")
PARTITION_SCHEMA = pa.schema([(key, pa.string()) for key in PARTITIONS])


def _partitioning() -> Any:
    # pyarrow.dataset loads pandas: 55 MB that parsing (every worker process forked from it
    # included) has no use for, so only the tree's tables import it.
    import pyarrow.dataset as ds

    return ds, ds.partitioning(PARTITION_SCHEMA, flavor="hive")


def table_folder(name: str) -> str:
    """A table's folder in a tree: runs.parquet -> runs."""
    return name.removesuffix(".parquet")


def partitioned_schema(name: str) -> pa.Schema:
    """What reading a tree's table gives: its columns but target, then the partition keys."""
    kept = [f for f in TABLES[name] if f.name not in PARTITIONS]
    return pa.schema(kept + list(PARTITION_SCHEMA))


def write_partitioned(table: pa.Table, out: Path, round_: str, division: str) -> None:
    """``table`` as a hive-partitioned dataset under ``out`` (which must not exist)."""
    rows = table.num_rows
    full = table
    # runs.parquet has its own division (each log's), which the package stage has checked.
    for key, value in (("round", round_), ("division", division)):
        if key not in full.column_names:
            full = full.append_column(key, pa.array([value] * rows, pa.string()))
    if rows == 0:
        # No partition to hold it: one empty file keeps the table and its schema present.
        out.mkdir(parents=True)
        pq.write_table(full.drop_columns(list(PARTITIONS)), out / "part-0.parquet", compression="zstd")
        return
    ds, partitioning = _partitioning()
    ds.write_dataset(
        full, out, format="parquet", partitioning=partitioning, basename_template="part-{i}.parquet",
        existing_data_behavior="error", use_threads=False,  # rows keep their order within a partition
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
    )


def read_partitioned(folder: Path) -> pa.Table:
    """A tree's table folder as one table, partition columns included (see partitioned_schema)."""
    ds, partitioning = _partitioning()
    return ds.dataset(folder, format="parquet", partitioning=partitioning).to_table()
