"""The audit of a benchpipe tree: everything it claims, checked from the tree alone.

Each item passes or fails with its reasons, and every item runs whatever the others found:

    manifest  every file's sha256, no file missing or extra, no link (package.manifest)
    json      every JSON file parses; config.json, systems, rows and measurements validate
              against their schemas; every file MLPerf's layouts require is there (audit.required)
    tables    every Parquet table has its schema and valid rows, and the rows that come from
              logs equal those re-derived from the logs in the tree (events, runs, inference);
              every provenance row's config_sha256 is the hash of its job's part of config.json
    scores    the olympic scores, RCP scaling factors (MLCommons' RCP checker on the logs) and
              scores recomputed from the training logs equal scores.parquet and checks.json
    claims    every other number the tree states (checks.json, the scenario and implementation
              READMEs, accuracy.txt, the verify files, measurements.json) equals the logs in the
              tree or restates config.json (audit.claims)
    checkers  MLCommons' compliance checker on every training log and its system-description
              checker on every training system, the package checker and result summarizer on
              training/<org> (MLPerf benchmarks), and benchpipe's LoadGen rules on every
              detail log, with each summary log held against its detail log (audit.loadgen);
              the inference submission checker when given a checkout

Checkers run on a scratch copy, never in the tree: the tree must stay as its manifest says.
Only benchpipe and the tree are needed; the exit code is 0 only when every item passes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchpipe.audit.claims import check_claims
from benchpipe.audit.loadgen import crosscheck_logs
from benchpipe.audit.logs import Seen, benchmark_of, detail_logs, training_logs
from benchpipe.audit.mobile import check_mobile
from benchpipe.audit.required import check_required_files
from benchpipe.audit.verdicts import AuditReport, Item, guarded
from benchpipe.contracts import registry
from benchpipe.contracts.errors import BenchpipeError, ValidationError
from benchpipe.contracts.layout import (
    ACCURACY_LOG,
    CHECKS_JSON,
    CONFIG_JSON,
    INFERENCE_SECTIONS,
    RAW_DIR,
    RULES_DIR,
    TABLES_DIR,
    TRAINING_SECTIONS,
)
from benchpipe.contracts.schemas import validate

ITEMS = ("manifest", "json", "tables", "scores", "claims", "mobile", "checkers")
# Folders of copied source code: their JSON files are code, not claims about results.
CODE_PARTS = frozenset({"implementations", "src"})
_KEY_TRAINING = ("target", "benchmark", "run")
_KEY_INFERENCE = ("target", "benchmark", "scenario", "mode")
_KEY_MOBILE = ("target", "benchmark", "precision", "task_id", "mode")


def audit_tree(tree: Path, inference_checker: Path | None = None) -> AuditReport:
    roots: list[str] = []
    seen = Seen()
    checks: dict[str, Callable[[Item], None]] = {
        "manifest": lambda item: _manifest(tree, item, roots),
        "json": lambda item: _json_files(tree, item),
        "tables": lambda item: _tables(tree, item, seen),
        "scores": lambda item: _scores(tree, item, seen),
        "claims": lambda item: check_claims(tree, item, seen),
        "mobile": lambda item: check_mobile(tree, item),
        "checkers": lambda item: _checkers(tree, item, inference_checker),
    }
    # In ITEMS' order: the manifest names the root, and the scores use what the tables read.
    items = [guarded(name, checks[name]) for name in ITEMS]
    return AuditReport(str(tree), items, roots[0] if roots else None)


# --- 1. manifest -------------------------------------------------------------------------------


def _manifest(tree: Path, item: Item, roots: list[str]) -> None:
    from benchpipe.package.manifest import TreeMismatch, verify_tree

    try:
        verified = verify_tree(tree)
    except TreeMismatch as exc:
        item.check("manifest.json against the files of the tree", len(exc.problems))
        for problem in exc.problems:
            item.fail(str(problem))
        return
    item.check(f"{verified.files} files against their sha256 in manifest.json", verified.files)
    if verified.root_sha256:
        item.reasons.append(f"root sha256 {verified.root_sha256}")
        roots.append(verified.root_sha256)


# --- 2. JSON files -----------------------------------------------------------------------------


def _rounds(tree: Path) -> tuple[str, str]:
    """(training ruleset, inference round) the tree was made for, as its config.json says.

    The config was stored with the schema's defaults filled in; one that cannot be read is the
    json item's finding, and the defaults stand in so that the other items still run.
    """
    from benchpipe.contracts import rounds

    try:
        settings = json.loads((tree / CONFIG_JSON).read_text())
        return settings["training"]["ruleset"], settings["inference"]["round"]
    except (OSError, ValueError, KeyError, TypeError):
        return rounds.TRAINING_RULESET, rounds.ROUND


def _check_json(rel: Path, data: Any, made_for: tuple[str, str]) -> None:
    """What a JSON file of the tree must meet beyond parsing; raises BenchpipeError naming it.

    ``made_for``: the (training ruleset, inference round) of the tree's config.json.
    """
    from benchpipe.mlcommons import training
    from benchpipe.package.inference import INFERENCE_STATUS

    parts = rel.parts
    if rel == CONFIG_JSON:
        validate(data, "config.schema.json", what=str(rel))
    elif rel == CHECKS_JSON:
        recorded = (data.get("training_ruleset"), data.get("inference_round"))
        if recorded != made_for:
            raise ValidationError(f"{rel}: records training {recorded[0]} and inference {recorded[1]}, "
                                  f"{CONFIG_JSON} says training {made_for[0]} and inference {made_for[1]}")
    elif len(parts) >= 2 and parts[-2] == "systems" and _under(rel, TRAINING_SECTIONS):
        training.check_training_system_desc(data, str(rel), made_for[0])
    elif len(parts) >= 2 and parts[-2] == "systems" and _under(rel, INFERENCE_SECTIONS):
        # The same description as the target's, its status in the inference rules' words.
        ours = {label: status for status, label in INFERENCE_STATUS.items()}
        status = data.get("status") if isinstance(data, dict) else None
        if status not in ours:
            raise ValidationError(f"{rel}: key 'status' is {status!r}, not one of {', '.join(ours)}")
        validate(dict(data, status=ours[status]), "system_desc.schema.json", what=str(rel))
    elif rel.name == "measurements.json":
        validate(data, "measurements.schema.json", what=str(rel))


def _under(rel: Path, sections: Iterable[str]) -> bool:
    text = rel.as_posix()
    return any(text.startswith(section + "/") for section in sections)


def _json_rule(rel: Path) -> str:
    """What _check_json holds ``rel`` to beyond parsing, for the item's details."""
    if rel in (CONFIG_JSON, CHECKS_JSON) or rel.name == "measurements.json" or "systems" in rel.parts[-2:-1]:
        return ", and its schema and rules"
    return ""


def _json_files(tree: Path, item: Item) -> None:
    made_for = _rounds(tree)
    for path in sorted(tree.rglob("*.json")):
        rel = path.relative_to(tree)
        if CODE_PARTS & set(rel.parts) or path.is_symlink():
            continue
        if rel.name == ACCURACY_LOG and "results" in rel.parts:
            continue  # truncated as the rules ask; the whole log is in benchpipe/raw/, checked here
        item.check(f"{rel}: parses{_json_rule(rel)}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            _check_json(rel, data, made_for)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            item.fail(f"{rel}: not JSON: {exc}")
        except BenchpipeError as exc:
            item.fail(str(exc))
    check_required_files(tree, item, json.loads((tree / CONFIG_JSON).read_text()))


# --- 3. tables ---------------------------------------------------------------------------------


def _read_tables(tree: Path, item: Item) -> dict[str, list[dict]]:
    """Each table's rows, columns as the parse stage wrote them (partition keys back in place)."""
    from benchpipe.package.checks import ROW_SCHEMAS
    from benchpipe.results.tables import TABLES, partitioned_schema, read_partitioned, table_folder

    submission = json.loads((tree / CONFIG_JSON).read_text())["submission"]
    rows: dict[str, list[dict]] = {}
    for name in TABLES:
        rel = TABLES_DIR / table_folder(name)
        if not (tree / rel).is_dir():
            item.fail(f"{rel}/: missing")
            continue
        table = read_partitioned(tree / rel)
        if not table.schema.equals(partitioned_schema(name), check_metadata=False):
            item.fail(f"{rel}/: schema differs from benchpipe's {name}: "
                      f"{_schema_difference(table.schema, partitioned_schema(name))}")
            continue
        found = table.to_pylist()
        item.check(f"{rel}/: {len(found)} rows against {name}'s schema", len(found))
        wrong = {(r["round"], r["division"]) for r in found} - {(submission["round"], submission["division"])}
        if wrong:
            item.fail(f"{rel}/: partitions {sorted(wrong)}, the tree is round {submission['round']}, "
                      f"division {submission['division']}")
        rows[name] = [{k: r[k] for k in TABLES[name].names} for r in found]
        if name in ROW_SCHEMAS:
            for i, row in enumerate(rows[name]):
                try:
                    validate(row, ROW_SCHEMAS[name], what=f"{rel}/ row {i}")
                except BenchpipeError as exc:
                    item.fail(str(exc))
    return rows


def _schema_difference(actual: pa.Schema, expected: pa.Schema) -> str:
    have = {f.name: str(f.type) for f in actual}
    want = {f.name: str(f.type) for f in expected}
    diffs = [f"{k}: {have.get(k, 'absent')}, expected {want.get(k, 'absent')}"
             for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
    return "; ".join(diffs) or "column order"


def _compare(item: Item, what: str, table: dict[tuple, dict], derived: dict[tuple, dict],
             fields: Iterable[str] | None = None) -> None:
    for key in sorted(set(table) | set(derived), key=str):
        label = " ".join(str(k) for k in key)
        if key not in derived:
            item.fail(f"{what}: row {label} has no log in the tree")
        elif key not in table:
            item.fail(f"{what}: the tree's log for {label} has no row")
        else:
            names = fields if fields is not None else derived[key].keys()
            differ = [f"{f} {table[key].get(f)!r} in the table, {derived[key].get(f)!r} from the log"
                      for f in names if table[key].get(f) != derived[key].get(f)]
            if differ:
                item.fail(f"{what}: row {label}: " + "; ".join(differ))


def _tables(tree: Path, item: Item, seen: Seen) -> None:
    from benchpipe.contracts.errors import ParseError
    from benchpipe.contracts.layout import ACCURACY_TXT
    from benchpipe.results.tables import LOADGEN_FIELDS, loadgen_fields, training_log_rows

    rows = seen.tables = _read_tables(tree, item)
    ruleset, round_ = _rounds(tree)
    events, runs, broken = [], [], []
    for (target, benchmark, run), log in training_logs(tree).items():
        try:
            event_rows, run_row = training_log_rows(target, benchmark, run, log, ruleset)
        except ParseError as exc:  # names the log and its line; the other logs are still compared
            item.fail(str(exc))
            broken.append(((target, benchmark, run), str(exc)))
            continue
        events += event_rows
        runs.append(run_row)
    if broken:
        # Scores from the logs that could be read would be scores of other runs than the tree's.
        more = f" (and {len(broken) - 1} more training logs)" if len(broken) > 1 else ""
        seen.runs_error = f"runs.parquet not re-derived: {broken[0][1]}{more}"
    else:
        seen.runs = runs
    # A broken log's rows have nothing to be compared with: its failure above says why.
    unread = {key for key, _ in broken}
    table = {name: [r for r in rows[name] if tuple(r.get(k) for k in _KEY_TRAINING) not in unread]
             for name in ("runs.parquet", "training_events.parquet") if name in rows}
    if "runs.parquet" in table:
        _compare(item, "runs.parquet", _by(table["runs.parquet"], _KEY_TRAINING), _by(runs, _KEY_TRAINING))
    if "training_events.parquet" in table:
        key = (*_KEY_TRAINING, "line")
        _compare(item, "training_events.parquet", _by(table["training_events.parquet"], key), _by(events, key))
    tests = seen.tests
    for key, log in detail_logs(tree).items():
        tests[key] = dict(loadgen_fields(key[2], key[3], log, log.parent / ACCURACY_TXT), inference_round=round_)
    if "inference.parquet" in rows:
        _compare(item, "inference.parquet", _by(rows["inference.parquet"], _KEY_INFERENCE), tests,
                 (*LOADGEN_FIELDS, "inference_round"))
    if "mobile.parquet" in rows:
        _compare(item, "mobile.parquet", _by(rows["mobile.parquet"], _KEY_MOBILE), _mobile_rows(tree))
    if "provenance.parquet" in rows:
        _check_config_hash(tree, item, rows["provenance.parquet"])


def _mobile_rows(tree: Path) -> dict[tuple, dict]:
    """mobile.parquet's rows derived from the mobile/ section's logs and run records."""
    from benchpipe.results.tables import MOBILE_RUN_JSON, mobile_row

    derived = {}
    for record in sorted(tree.glob(f"mobile/*/*/*/*/*/{MOBILE_RUN_JSON}")):
        run_dir = record.parent
        target, benchmark, precision, task, mode = run_dir.relative_to(tree / "mobile").parts
        derived[(target, benchmark, precision, task, mode)] = mobile_row(target, benchmark, precision, task, mode,
                                                                         run_dir)
    return derived


def _check_config_hash(tree: Path, item: Item, rows: list[dict]) -> None:
    """Every result was made with the tree's own config: its provenance names the hash of the
    part of config.json that its kind of job reads."""
    from benchpipe.provenance import config_sha256, job_kind

    config = json.loads((tree / CONFIG_JSON).read_text())
    for row in rows:
        kind = job_kind(row["job"])
        want = config_sha256(config, kind)
        if row["config_sha256"] != want:
            item.fail(f"provenance.parquet: row {row['target']} {row['benchmark']} {row['job']}: config_sha256 "
                      f"{row['config_sha256']!r}, but the {kind} part of {CONFIG_JSON} hashes to {want}")


def _by(rows: list[dict], key: tuple[str, ...]) -> dict[tuple, dict]:
    return {tuple(row[k] for k in key): row for row in rows}


# --- 4. scores ---------------------------------------------------------------------------------


def _scores(tree: Path, item: Item, seen: Seen) -> None:
    from benchpipe.mlcommons import training
    from benchpipe.results.tables import scaling_factors, score_rows, summarizer_counted

    if seen.runs is None:
        item.fail(seen.runs_error or "no training logs could be read (see tables)")
        return
    logs = training_logs(tree)
    # The factor the package checker wrote into scaling.json, derived anew from the logs: the
    # tree's scaling.json is one of the claims checked, not evidence.
    scores = score_rows(seen.runs, scaling_factors(seen.runs, logs), summarizer_counted(seen.runs, logs))
    for score in scores:
        item.check(f"{score['target']} {score['benchmark']}: olympic score from its {score['runs']} logs, "
                   f"scaling factor {score['scaling_factor']!r}")
        folders = {log.parent for (t, b, _), log in logs.items() if (t, b) == (score["target"], score["benchmark"])}
        for folder in sorted(folders):
            # What the result summarizer would multiply by: the folder's scaling.json, or 1.0.
            try:
                stated = training.read_scaling_factor(folder)
            except BenchpipeError as exc:
                item.fail(str(exc).replace(f"{tree}/", ""))
                continue
            if stated != score["scaling_factor"]:
                item.fail(f"{folder.relative_to(tree)}/scaling.json: scaling_factor {stated!r}, the RCP checker "
                          f"derives {score['scaling_factor']!r} from the logs")
    key = ("target", "benchmark")
    if "scores.parquet" in seen.tables:
        _compare(item, "scores.parquet", _by(seen.tables["scores.parquet"], key), _by(scores, key))
    else:
        item.fail("scores.parquet could not be read (see tables)")
    recorded = json.loads((tree / CHECKS_JSON).read_text()).get("scores", [])
    _compare(item, "checks.json scores", _by(recorded, key), _by(scores, key))


# --- 5. official checkers and benchpipe's LoadGen rules -----------------------------------------


def _checkers(tree: Path, item: Item, inference_checker: Path | None) -> None:
    settings = json.loads((tree / CONFIG_JSON).read_text())
    with tempfile.TemporaryDirectory(prefix="benchpipe-audit-") as scratch:
        copy, reports = Path(scratch) / "tree", Path(scratch) / "reports"
        reports.mkdir()
        for section in (*TRAINING_SECTIONS, *INFERENCE_SECTIONS):
            if (tree / section).is_dir():
                shutil.copytree(tree / section, copy / section, symlinks=True)
        ruleset, round_ = _rounds(tree)
        _training_checkers(tree, copy, item, reports, ruleset)
        _loadgen_rules(tree, copy, item, settings)
        _inference_checker(copy, item, settings, inference_checker, reports, round_)


def _training_checkers(tree: Path, copy: Path, item: Item, reports: Path, ruleset: str) -> None:
    from benchpipe.mlcommons import checkers, training

    for n, ((_, benchmark, _), log) in enumerate(training_logs(copy).items()):
        # benchpipe's own benchmarks' rules travel in the tree; the MLPerf ones come with mlperf-logging.
        own = tree / RULES_DIR / f"{benchmark}.yaml"
        rules = own if own.is_file() else registry.get(benchmark).rules_file
        result = checkers.run_compliance_checker(log.relative_to(copy), rules, reports / f"compliance_{n}.log",
                                                 cwd=copy, ruleset=ruleset)
        item.check(f"compliance checker: {log.relative_to(copy)}")
        if not result.passed:
            item.fail(f"{log.relative_to(copy)}: compliance checker: {result.problems()}")
    for section in TRAINING_SECTIONS:
        for system in sorted((copy / section).glob("*/systems/*.json")):
            result = checkers.run_system_desc_checker(system.relative_to(copy), reports / f"system_{system.stem}.log",
                                                   cwd=copy, ruleset=ruleset)
            item.check(f"system description checker: {system.relative_to(copy)}")
            if not result.passed:
                item.fail(f"{system.relative_to(copy)}: system description checker: {result.problems()}")
    for org_dir in sorted(p for p in (copy / "training").glob("*") if p.is_dir()):
        verdicts = [training.run_package_checker(org_dir, reports / f"package_checker_{org_dir.name}.log", ruleset)]
        for name in sorted({p.name for p in org_dir.glob("results/*/*") if p.is_dir()}):
            verdicts.append(training.run_result_summarizer(
                org_dir, reports / f"summary_{org_dir.name}_{name}.csv",
                reports / f"result_summarizer_{org_dir.name}_{name}.log", ruleset, benchmark=name))
        for verdict in verdicts:
            item.check(f"{verdict.tool}: training/{org_dir.name}")
            if not verdict.passed:
                item.fail(f"training/{org_dir.name}: {verdict.tool}: {verdict.problems()}")


def _loadgen_rules(tree: Path, copy: Path, item: Item, settings: dict[str, Any]) -> None:
    """benchpipe's LoadGen rules (infer.validity) on every test, and TEST01/TEST04 verified again."""
    from benchpipe.contracts.records import RunKind
    from benchpipe.infer.validity import check_accuracy, check_performance
    from benchpipe.results.loadgen_parser import parse_detail_log

    kind = RunKind.from_settings(settings["inference"])
    division = settings["submission"]["division"]
    for (_, benchmark, scenario, mode), log in detail_logs(copy).items():
        item.check(f"LoadGen rules: {log.relative_to(copy)}")
        detail = parse_detail_log(log)
        if mode == "accuracy":
            problems = check_accuracy(detail, log)
        else:
            problems = check_performance(
                detail, log, scenario=scenario, official=kind.official, min_duration_ms=kind.min_duration_ms,
                loadgen_model=registry.get(benchmark).inference.loadgen_model, division=division,
                compliance_test=None if mode == "performance" else mode)
        for problem in problems:
            item.fail(problem.replace(str(copy) + "/", ""))
    crosscheck_logs(copy, item, detail_logs(copy))
    _compliance_tests(tree, copy, item, kind)


def _compliance_tests(tree: Path, copy: Path, item: Item, kind) -> None:
    from benchpipe.infer.compliance import verify_test01, verify_test04
    from benchpipe.package.inference import judged

    for section in INFERENCE_SECTIONS:
        for test_dir in sorted((copy / section).glob("*/*/results/*/*/*/TEST0[14]")):
            scenario_dir = test_dir.parent
            perf = scenario_dir / "performance" / "run_1"
            run = test_dir / "performance" / "run_1"
            if test_dir.name == "TEST01":
                # The accuracy log in results/ is truncated, as the rules allow; the whole one is in raw/.
                system, model = scenario_dir.parent.parent.name, scenario_dir.parent.name
                full = tree / RAW_DIR / system / benchmark_of(model) / scenario_dir.name
                # MLCommons' run_verification.py keeps the TEST01 run's accuracy log in TEST01/accuracy/;
                # trees packaged before that kept it beside the performance logs.
                logged = test_dir / "accuracy"
                verification = verify_test01(accuracy_dir=full, test_dir=run,
                                             submission_perf_dir=perf, scenario=scenario_dir.name,
                                             test_accuracy_dir=logged if (logged / ACCURACY_LOG).is_file() else run)
            else:
                verification = verify_test04(test_dir=run, submission_perf_dir=perf, scenario=scenario_dir.name)
            item.check(f"{test_dir.name} verification: {test_dir.relative_to(copy)}")
            if not verification.passed and judged(verification, kind):
                rel = test_dir.relative_to(copy)
                item.fail(f"{rel}: " + "; ".join(verification.reasons))


def _inference_checker(copy: Path, item: Item, settings: dict[str, Any], checkout: Path | None,
                       reports: Path, round_: str) -> None:
    from benchpipe.contracts.records import RunKind
    from benchpipe.mlcommons.inference_checker import run_inference_checker

    if not (copy / "inference").is_dir():
        return
    if checkout is None:
        item.reasons.append("MLCommons' inference checker not re-run: give --inference-checker "
                            "<mlcommons/inference checkout>; checks.json records the packaging verdict")
        return
    kind = RunKind.from_settings(settings["inference"])
    try:
        run_inference_checker(Path(checkout), copy / "inference", submitter=settings["submission"]["submitter"],
                              version=round_,
                              development=not kind.official, subset_accuracy=not kind.official,
                              keep_dir=copy / "checker")
    except BenchpipeError as exc:
        item.fail(f"inference checker: {exc}".replace(str(copy) + "/", ""))
    item.check(f"MLCommons inference submission checker {round_}: inference/")
