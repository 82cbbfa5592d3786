"""The submission tree: MLPerf training and inference layouts, benchpipe's tables, a manifest.

    <out>/training/<org>/{systems,benchmarks,results}/...
    <out>/inference/<division>/<org>/{systems,src,results}/...            (MLPerf models)
    <out>/benchpipe/inference/<division>/<org>/{systems,src,results}/...  (benchpipe's own)
    <out>/benchpipe/{config.json, checks.json, tables/, compliance/, raw/}
    <out>/manifest.json
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchpipe.contracts import layout, registry, rounds
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.config import training_benchmarks
from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.layout import DATASET_MANIFEST, DETAIL_LOG, MLLOG_FILE
from benchpipe.contracts.schemas import validate
from benchpipe.mlcommons import checkers, training
from benchpipe.package import checks, inference, mobile
from benchpipe.package.files import copy_code, copy_file, dump_json
from benchpipe.package.manifest import verify_manifest, write_manifest
from benchpipe.results.tables import TABLES, read_table, table_folder, write_partitioned

TRAINING_STATUS = {
    "onprem": "Available on-premise",
    "cloud": "Available cloud",
    "preview": "Preview",
    "research": "Research, Development, or Internal (RDI)",
}
INFERENCE_ONLY = ("system_type", "host_network_card_count", "system_type_detail")


@dataclass(frozen=True)
class PackageRequest:
    settings: dict[str, Any]  # the validated workflow config
    runs_dir: Path
    tables_dir: Path
    out: Path
    datasets_dir: Path


def load_inputs(request: PackageRequest) -> dict[str, list[dict]]:
    """Read and validate every table row, and check each against the log it came from."""
    rows = {name: read_table(request.tables_dir, name) for name in TABLES}
    for name in checks.ROW_SCHEMAS:
        checks.validate_rows(name, rows[name])
    for row in rows["runs.parquet"]:
        log = layout.run_dir(request.runs_dir, row["target"], row["benchmark"], row["run"]) / MLLOG_FILE
        checks.check_log_hash("runs.parquet", log, row["log_sha256"])
    for row in rows["inference.parquet"]:
        log = _test_dir(request.runs_dir, row) / DETAIL_LOG
        checks.check_log_hash("inference.parquet", log, row["log_sha256"])
    return rows


def _test_dir(runs: Path, row: dict) -> Path:
    return layout.test_dir(runs, row["target"], row["benchmark"], row["scenario"], row["mode"])


def _check_coverage(settings: dict, rows: dict[str, list[dict]], systems: dict[str, dict[str, str]]) -> None:
    """Every configured (target, benchmark[, scenario, mode]) is in the tables; ``systems``: each
    target's description, whose system_type decides an LLM's scenarios."""
    inference.check_coverage(settings, rows["inference.parquet"],
                             {target: description["system_type"] for target, description in systems.items()})
    scored = {(r["target"], r["benchmark"]) for r in rows["scores.parquet"]}
    # An inference-only benchmark (llama31_8b) has no runs, hence no score.
    trained = {(t, b) for t in settings["targets"] for b in training_benchmarks(settings)}
    if missing_scores := sorted(trained - scored):
        raise ValidationError(f"scores.parquet: no score for {', '.join(' '.join(m) for m in missing_scores)}")


def _system_descriptions(request: PackageRequest) -> dict[str, dict[str, str]]:
    systems = {}
    for target in request.settings["targets"]:
        path = layout.system_file(request.runs_dir, target)
        try:
            description = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValidationError(f"{path}: cannot read system description: {exc}") from exc
        validate(description, "system_desc.schema.json", what=str(path))
        submission = request.settings["submission"]
        for key, want in (("submitter", submission["submitter"]), ("division", submission["division"])):
            if description[key] != want:
                raise ValidationError(f"{path}: key '{key}' is '{description[key]}', the config says '{want}'")
        systems[target] = description
    return systems


def _mobile_systems(request: PackageRequest) -> dict[str, Path]:
    """The system description of each Mobile target that runs LiteRT on a host; an Android
    device has none (its runs' device.json describe it)."""
    systems = {}
    for target in request.settings["mobile"]["targets"]:
        path = layout.system_file(request.runs_dir, target)
        if path.is_file():
            description = json.loads(path.read_text())
            validate(description, "system_desc.schema.json", what=str(path))
            systems[target] = path
    return systems


def training_org_dir(root: Path, org: str, benchmark: str, ruleset: str = rounds.TRAINING_RULESET) -> Path:
    """Where a benchmark's training results go: the official tools read ``training/<org>/``.

    They know only the rules' benchmarks (the package checker skips others, the result
    summarizer crashes on them), so benchpipe's own benchmarks go to
    ``benchpipe/training/<org>/``, in the same layout, checked by benchpipe's rules.
    """
    base = root / "training" if training.is_official(benchmark, ruleset) else root / "benchpipe" / "training"
    return base / org


def _write_training_systems(root: Path, org_dir: Path, systems, ruleset: str) -> list[checkers.ComplianceResult]:
    results = []
    for target, description in systems.items():
        training_desc = {k: v for k, v in description.items() if k not in INFERENCE_ONLY}
        training_desc["status"] = TRAINING_STATUS[description["status"]]
        system_json = org_dir / "systems" / f"{target}.json"
        dump_json(system_json, training_desc)
        section = ("official",) if org_dir.parent == root / "training" else ()
        report = Path("benchpipe", "compliance", *section, "systems", f"{target}.log")
        (root / report).parent.mkdir(parents=True, exist_ok=True)
        results.append(checkers.run_system_desc_checker(system_json.relative_to(root), report, cwd=root,
                                                        ruleset=ruleset))
    return results


def _option(hyperparameters: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the values that depart from the reference, the command-line option that sets them)."""
    changed = {k: d["used"] for k, d in hyperparameters["departures_from_reference"].items()}
    option = f" --hyperparameters-json {shlex.quote(json.dumps(changed, sort_keys=True))}" if changed else ""
    return changed, option


def implementation_readme(name: str, hyperparameters: dict[str, Any]) -> str:
    """The implementation's README, from checks.json's hyperparameters entry: the audit renders it anew."""
    changed, option = _option(hyperparameters)
    values = "\n".join(f"| {k} | {v} | {'reference' if k not in changed else 'changed'} |"
                       for k, v in hyperparameters["values"].items())
    return (
        f"# {name}: benchpipe implementation\n\nThe `benchpipe` package as it ran. Each result_<i>.txt "
        f"comes from `benchpipe train --benchmark {name}{option} --seed <seed> ...` (run_and_time.sh).\n\n"
        f"| hyperparameter | value | |\n|---|---|---|\n{values}\n"
    )


def _write_implementation(impl: Path, name: str, hyperparameters: dict[str, Any], ruleset: str) -> None:
    """The code as it ran, a README and the command of one run, with the hyperparameters it used."""
    copy_code(impl / "benchpipe")
    _, option = _option(hyperparameters)
    (impl / "README.md").write_text(implementation_readme(name, hyperparameters))
    (impl / "run_and_time.sh").write_text(
        "#!/usr/bin/env bash\n# One training run: run_and_time.sh --data DATA --seed SEED --org ORG "
        "--platform SYSTEM --division DIV --status STATUS --out OUT [--target-file TARGET]\n"
        f'set -euo pipefail\nexec benchpipe train --benchmark {name}{option} --training-ruleset {ruleset} "$@"\n'
    )


def _write_training(root: Path, request: PackageRequest, systems, rows, hyperparameters) -> list[dict]:
    org = request.settings["submission"]["submitter"]
    ruleset = request.settings["training"]["ruleset"]
    compliance = []
    trained = training_benchmarks(request.settings)
    org_dirs = {training_org_dir(root, org, name, ruleset) for name in trained}
    for org_dir in sorted(org_dirs):
        compliance += _write_training_systems(root, org_dir, systems, ruleset)
    for name in trained:
        bench = registry.get(name)
        org_dir = training_org_dir(root, org, name, ruleset)
        impl = org_dir / "benchmarks" / name / "implementations" / "benchpipe"
        if not impl.exists():
            _write_implementation(impl, name, hyperparameters[name], ruleset)
        for row in (r for r in rows["runs.parquet"] if r["benchmark"] == name):
            target = row["target"]
            src = layout.run_dir(request.runs_dir, target, name, row["run"]) / MLLOG_FILE
            dst = org_dir / "results" / target / name / f"result_{row['run']}.txt"
            copy_file(src, dst)
            report = Path("benchpipe", "compliance", target, name, f"result_{row['run']}.log")
            (root / report).parent.mkdir(parents=True, exist_ok=True)
            compliance.append(
                checkers.run_compliance_checker(dst.relative_to(root), bench.rules_file, report, cwd=root,
                                                ruleset=ruleset)
            )
        if not training.is_official(name, ruleset):
            # The official rules come with mlperf-logging (its version is in checks.json);
            # benchpipe's own rules travel with the logs they judged.
            copy_file(bench.rules_file, root / layout.RULES_DIR / f"{name}.yaml")
    failed = [c for c in compliance if not c.passed]
    if failed:
        first = failed[0]
        raise ValidationError(
            f"{len(failed)} training file(s) fail the official checkers; first: {first.log}: "
            f"{first.problems()}"
        )
    return [{"log": str(c.log), "passed": c.passed} for c in compliance]


OFFICIAL_REPORTS = Path("benchpipe", "compliance", "official")
RESULTS_SUMMARY = OFFICIAL_REPORTS / "results_summary.csv"


def _run_official_tools(root: Path, org: str, names: list[str], ruleset: str, scores: list[dict],
                        systems: dict[str, dict[str, str]]) -> dict[str, Any] | None:
    """MLCommons' package checker and result summarizer on training/<org>/, as reviewers run them.

    Both exit 0 whatever they find, so their verdicts are read (benchpipe.mlcommons.training);
    the summarizer's CSV stays in the tree beside their logs. Each score it gives must equal the
    score_min of ``scores`` (scores.parquet) for that target: the package checker has just written
    the scaling.json the summarizer multiplies by, and benchpipe derived the same factor.
    """
    official_names = sorted(n for n in names if training.is_official(n, ruleset))
    if not official_names:
        return None
    org_dir = root / "training" / org
    checker = training.run_package_checker(org_dir, root / OFFICIAL_REPORTS / "package_checker.log", ruleset).require()
    summaries = {}
    for name in official_names:
        csv_out = root / RESULTS_SUMMARY if len(official_names) == 1 else root / OFFICIAL_REPORTS / f"{name}_summary.csv"
        verdict = training.run_result_summarizer(
            org_dir, csv_out, root / OFFICIAL_REPORTS / f"result_summarizer_{name}.log", ruleset, benchmark=name
        ).require()
        # require() has seen a positive number in every row's column for the benchmark.
        checks.check_summarizer_scores(
            name, [(row["system"], float(row[name])) for row in verdict.rows], scores,
            {target: description["system_name"] for target, description in systems.items()},
            where=str(csv_out.relative_to(root)))
        summaries[name] = {"csv": str(csv_out.relative_to(root)), "minutes": verdict.scores}
    return {
        "ruleset": f"training {ruleset}",
        "mlperf_logging": training.mlperf_logging_version(),
        "package_checker": {"verdict": training.PACKAGE_VERDICT_OK, "log": str(checker.log.relative_to(root.resolve()))},
        "result_summarizer": summaries,
    }


def hyperparameters_report(settings: dict) -> dict[str, Any]:
    """Per benchmark, the values the runs used and, in either division, each departure from the reference.

    Checked again here, as before the first job: a tree is never written from runs whose
    closed hyperparameters the rules refuse.
    """
    from benchpipe.benchmarks.hyperparameters import departures, resolve_hyperparameters

    table = settings["training"].get("hyperparameters", {})
    report = {}
    for name in training_benchmarks(settings):
        used = resolve_hyperparameters(name, table, settings["submission"]["division"], settings["training"]["ruleset"])
        report[name] = {
            "values": dataclasses.asdict(used.hyperparameters),
            "departures_from_reference": departures(used, registry.get(name)),
        }
    return report


def package(request: PackageRequest) -> dict[str, Any]:
    """Check everything first; only then write the tree, atomically, with its manifest."""
    settings = request.settings
    validate(settings, "config.schema.json", what="package settings", fill_defaults=True)
    rows = load_inputs(request)
    checks.check_rounds(rows, settings)
    systems = _system_descriptions(request)
    _check_coverage(settings, rows, systems)
    for row in rows["scores.parquet"]:
        checks.check_score(row)
    stacks = checks.check_provenance(rows["provenance.parquet"])
    dataset_names = {name: registry.get(name).dataset_name for name in settings["benchmarks"]}
    datasets = {
        name: checks.check_dataset(name, request.datasets_dir / dataset, rows["provenance.parquet"])
        for name, dataset in dataset_names.items()
    }
    hyperparameters = hyperparameters_report(settings)
    app_dir = request.datasets_dir / "mobile_app"
    mobile_results = mobile.expected_results(settings, request.runs_dir, app_dir)
    mobile_checks = mobile.check_results(settings, mobile_results, app_dir)
    mobile_systems = _mobile_systems(request)
    with atomic_dir(request.out) as tmp:
        compliance = _write_training(tmp, request, systems, rows, hyperparameters)
        official_tools = _run_official_tools(tmp, settings["submission"]["submitter"], training_benchmarks(settings),
                                             settings["training"]["ruleset"], rows["scores.parquet"], systems)
        inference_checks = inference.write_inference(
            tmp, request.runs_dir, settings, systems, rows["inference.parquet"]
        )
        if mobile_results:
            mobile.write_mobile(tmp, mobile_results, app_dir, mobile_systems)
        for name in TABLES:
            write_partitioned(pq.read_table(request.tables_dir / name, schema=TABLES[name]),
                              tmp / layout.TABLES_DIR / table_folder(name),
                              settings["submission"]["round"], settings["submission"]["division"])
        for dataset in sorted(set(dataset_names.values())):
            # The dataset's manifest: the sha256 of every source and shard the results were made from.
            copy_file(request.datasets_dir / dataset / DATASET_MANIFEST,
                  tmp / layout.DATASETS_DIR / dataset / DATASET_MANIFEST)
        dump_json(tmp / layout.CONFIG_JSON, settings)
        dump_json(tmp / layout.CHECKS_JSON, {
            "training_compliance": compliance,
            # The rounds the tree was made for: what its checkers ran with and its rows were judged by.
            "training_ruleset": settings["training"]["ruleset"],
            "inference_round": settings["inference"]["round"],
            "official_tools": official_tools,
            "hyperparameters": hyperparameters,
            "software": stacks,
            "datasets": datasets,
            "scores": rows["scores.parquet"],
            "inference": dict(inference_checks, tests=[
                {k: r[k] for k in ("target", "benchmark", "scenario", "mode", "result_validity", "result_key",
                                   "result_latency_ns", "result_samples_per_s", "accuracy", "official_round_valid",
                                   "ttft_p99_ns", "tpot_p99_ns", "tokens_per_second", "result_tokens_per_s")}
                for r in rows["inference.parquet"]
            ]),
            "mobile": {"results": mobile.summary(mobile_results), "accuracy_checks": mobile_checks},
        })
        manifest = write_manifest(tmp)
        verify_manifest(tmp)
    return manifest
