"""The audit's claims item: every number a tree states, outside its logs and tables, equals the logs.

A tree states numbers in these files (logs, tables, copied code and the manifest aside: the
tables and scores items and the manifest item hold those). Each is re-derived from the logs in
the tree, or restates config.json (hashed into every job's provenance), or is not a result:

    file                          number                         checked against
    ----------------------------  -----------------------------  ------------------------------------------------
    checks.json inference.tests   result_validity, result_key,   the test's mlperf_log_detail.txt (result_*,
                                  result_latency_ns,             effective_min_duration_ms) and accuracy.txt;
                                  result_samples_per_s,          official_round_valid from those and config.json
                                  accuracy, official_round_valid
    checks.json inference         kind, official                 config.json's inference section (RunKind)
    checks.json inference         passed, judged, reasons        TEST01/TEST04 verified again on the tree's logs
      .compliance                   (figures, counts)            (reasons compared without their file paths)
    TEST0x/verify_*.txt           counts, scores, threshold      the same verification, text for text
    checks.json scores            olympic means, run counts      the scores item (training logs)
    checks.json hyperparameters   values, departures             config.json, resolved as packaging resolves it
    implementation README.md      hyperparameter table           checks.json hyperparameters, rendered anew
    checks.json datasets          manifest_sha256, shards,       benchpipe/datasets/<dataset>/manifest.json in the
                                  sources, subset                tree, and provenance.parquet's dataset hashes
    checks.json software          runtime, image, lock hashes    provenance.parquet (one stack per target)
    checks.json training_         log paths, passed              the tree's training logs and systems, all passed
      compliance                                                 (the checkers item runs the checkers again)
    accuracy.txt                  hash=                          sha256 of the full accuracy log in benchpipe/raw/
                                  total=                         the samples (distinct qsl_idx) of that log
                                  accuracy=, good=               good/total; the labels are not in the tree, so the
                                                                 accuracy is not recomputed from the answers
    scenario README.md            loadgen version, model,        the performance run's detail log,
                                  run kind, verdicts,            measurements.json, config.json, the verification,
                                  user.conf corrections          provenance.parquet's attempts_json
    measurements.json             model sha256 (in the           inference.parquet's model_sha256 of the scenario
                                  weights' description)
    systems/*.json                core counts, memory            not results: the machine as `benchpipe system`
                                                                 described it (the system-description checker)
    user.conf, raw/calibration    rates, latencies, durations    not results: LoadGen's settings, which the detail
                                                                 log records as it ran them (requested_*)
    datasets/*/manifest.json      hashes, counts                 the dataset's record, named by provenance

Every mismatch names the file, the key and both values, and the rule 'stated numbers equal the logs'.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from benchpipe.audit.logs import Seen, benchmark_of, detail_logs, training_logs
from benchpipe.audit.verdicts import Item
from benchpipe.contracts.config import inference_benchmarks
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.layout import (
    ACCURACY_LOG,
    ACCURACY_TXT,
    CHECKS_JSON,
    CONFIG_JSON,
    DATASET_MANIFEST,
    DATASETS_DIR,
    INFERENCE_SECTIONS,
    RAW_DIR,
    TRAINING_SECTIONS,
)
from benchpipe.contracts.records import RunKind
from benchpipe.contracts.rounds import OFFICIAL_MIN_DURATION_MS

RULE = "rule 'stated numbers equal the logs'"
TEST_FIELDS = ("result_validity", "result_key", "result_latency_ns", "result_samples_per_s", "accuracy",
               "ttft_p99_ns", "tpot_p99_ns", "tokens_per_second", "result_tokens_per_s")
_TEST_KEY = ("target", "benchmark", "scenario", "mode")
_ACCURACY_LINE = re.compile(r"^accuracy=([0-9.]+)%, good=(\d+), total=(\d+)$")
# A path in a reason: packaging names the runs/ folder, the audit the tree's; the figures must agree.
_PATH = re.compile(r"/?[\w.\-]+(?:/[\w.\-]+)+")
_SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


def check_claims(tree: Path, item: Item, seen: Seen) -> None:
    config = json.loads((tree / CONFIG_JSON).read_text())
    checks = json.loads((tree / CHECKS_JSON).read_text())
    kind = RunKind.from_settings(config["inference"])
    verifications = _verify_again(tree, item)
    if not inference_benchmarks(config):
        # A training-only tree: packaging states no inference run, and must not.
        item.check(f"{CHECKS_JSON}: no inference claim in a tree without inference benchmarks")
        stated = {k: v for k, v in (checks.get("inference") or {}).items() if v}
        if stated:
            item.fail(f"{CHECKS_JSON}: inference states {', '.join(sorted(stated))}, but {CONFIG_JSON} has no "
                      "benchmark that LoadGen tests (rule 'stated numbers equal the logs')")
    elif checks.get("inference"):
        _inference_tests(tree, item, seen, checks["inference"].get("tests", []), kind)
        _inference_kind(item, checks["inference"], kind)
        _compliance_entries(tree, item, checks["inference"].get("compliance", []), verifications)
    for scenario_dir in _scenario_dirs(tree):
        _accuracy_txt(tree, item, scenario_dir)
        _scenario_files(tree, item, scenario_dir, seen, checks, kind, verifications)
    _hyperparameters(tree, item, config, checks.get("hyperparameters"))
    _datasets(tree, item, seen, checks.get("datasets"))
    _software(item, seen, checks.get("software"))
    _training_compliance(tree, item, checks.get("training_compliance"))


def _differ(item: Item, rel: Any, key: str, claimed: Any, derived: Any, source: Any) -> None:
    item.fail(f"{rel}: {key}: {claimed!r} stated, {derived!r} from {source} ({RULE})")


# --- checks.json's inference section ------------------------------------------------------------


def _inference_tests(tree: Path, item: Item, seen: Seen, stated: list[dict], kind: RunKind) -> None:
    logs = detail_logs(tree)
    derived = {key: _test_entry(fields, kind) for key, fields in seen.tests.items()}
    item.check(f"{CHECKS_JSON}: inference.tests ({len(stated)}) against their detail logs and accuracy.txt")
    found = set()
    for i, entry in enumerate(stated):
        key = tuple(entry.get(k) for k in _TEST_KEY)
        found.add(key)
        where = f"inference.tests[{i}] ({' '.join(map(str, key))})"
        if key not in derived:
            item.fail(f"{CHECKS_JSON}: {where}: no such test's log in the tree ({RULE})")
            continue
        source = logs[key].relative_to(tree)
        for name, want in derived[key].items():
            if entry.get(name) != want:
                _differ(item, CHECKS_JSON, f"{where}.{name}", entry.get(name), want, source)
    for key in sorted(set(derived) - found):
        item.fail(f"{CHECKS_JSON}: inference.tests: no entry for the test logged in "
                  f"{logs[key].relative_to(tree)} ({RULE})")


def _test_entry(fields: dict, kind: RunKind) -> dict:
    return {
        **{name: fields[name] for name in TEST_FIELDS},
        # As tables.inference_row judges it: packaging refuses a test whose run kind is not the config's.
        "official_round_valid": (kind.official and fields["min_duration_ms"] >= OFFICIAL_MIN_DURATION_MS
                                 and fields["result_validity"] == "VALID"),
    }


def _inference_kind(item: Item, stated: dict, kind: RunKind) -> None:
    item.check(f"{CHECKS_JSON}: inference.kind and inference.official against {CONFIG_JSON}")
    for key, want in (("kind", kind.label), ("official", kind.official)):
        if stated.get(key) != want:
            _differ(item, CHECKS_JSON, f"inference.{key}", stated.get(key), want, CONFIG_JSON)


def _verify_again(tree: Path, item: Item) -> dict[tuple[str, str, str, str], tuple[Path, Any]]:
    """(target, benchmark, scenario, test) -> (TEST0x folder, benchpipe's verification on the tree's logs)."""
    from benchpipe.infer.compliance import verify_test01, verify_test04, verify_test06
    from benchpipe.infer.llm_run import read_llm_calibration

    found = {}
    for section in INFERENCE_SECTIONS:
        for test_dir in sorted((tree / section).glob("*/*/results/*/*/*/TEST0[146]")):
            scenario_dir = test_dir.parent
            target, benchmark = scenario_dir.parent.parent.name, benchmark_of(scenario_dir.parent.name)
            perf, run = scenario_dir / "performance" / "run_1", test_dir / "performance" / "run_1"
            if test_dir.name == "TEST06":
                # The end-of-sequence ids the served checkpoint named, as its calibration (kept in raw/) read them.
                raw = tree / RAW_DIR / target / benchmark / scenario_dir.name
                verification = verify_test06(test_dir=test_dir / "accuracy", scenario=scenario_dir.name,
                                             eos_token_ids=read_llm_calibration(raw)[2].eos_token_ids)
            elif test_dir.name == "TEST01":
                logged = test_dir / "accuracy"
                verification = verify_test01(
                    accuracy_dir=tree / RAW_DIR / target / benchmark / scenario_dir.name, test_dir=run,
                    submission_perf_dir=perf, scenario=scenario_dir.name,
                    test_accuracy_dir=logged if (logged / ACCURACY_LOG).is_file() else run)
            else:
                verification = verify_test04(test_dir=run, submission_perf_dir=perf, scenario=scenario_dir.name)
            found[(target, benchmark, scenario_dir.name, test_dir.name)] = (test_dir, verification)
            _verify_files(tree, item, test_dir, verification)
    return found


def _verify_files(tree: Path, item: Item, test_dir: Path, verification: Any) -> None:
    # MLCommons' scripts write their own folder (with a checkout configured): benchpipe's files
    # stand in only without one, and only those are benchpipe's text.
    for name, text in verification.files.items():
        path = test_dir / name
        if not path.is_file() or not path.read_text().startswith("benchpipe's own"):
            continue
        item.check(f"{path.relative_to(tree)}: against {verification.test} verified again")
        if path.read_text() != text:
            stated, derived = _first_difference(path.read_text(), text)
            _differ(item, path.relative_to(tree), "line", stated, derived,
                    f"{verification.test} verified again on the tree's logs")


def _first_difference(stated: str, derived: str) -> tuple[str, str]:
    for a, b in zip(stated.splitlines(), derived.splitlines(), strict=False):
        if a != b:
            return a, b
    return stated[-80:], derived[-80:]


def _compliance_entries(tree: Path, item: Item, stated: list[dict], verifications: dict) -> None:
    item.check(f"{CHECKS_JSON}: inference.compliance ({len(stated)}) against TEST01/TEST04 verified again")
    for i, entry in enumerate(stated):
        key = tuple(entry.get(k) for k in ("target", "benchmark", "scenario", "test"))
        where = f"inference.compliance[{i}] ({' '.join(map(str, key))})"
        if key not in verifications:
            item.fail(f"{CHECKS_JSON}: {where}: no such compliance test in the tree ({RULE})")
            continue
        test_dir, verification = verifications[key]
        official = entry.get("decided_by") is not None
        if not official and entry.get("passed") != verification.passed:
            _differ(item, CHECKS_JSON, f"{where}.passed", entry.get("passed"), verification.passed, test_dir.name)
        # Official reasons come first, benchpipe's after them (package.inference.ComplianceVerdict).
        reasons = entry.get("reasons") or []
        ours = [_without_paths(r) for r in verification.reasons]
        theirs = [_without_paths(r) for r in reasons[len(reasons) - len(ours):]] if ours else []
        if theirs != ours or (not official and len(reasons) != len(ours)):
            derived = [r.replace(f"{tree}/", "") for r in verification.reasons]
            _differ(item, CHECKS_JSON, f"{where}.reasons", reasons, derived,
                    f"{test_dir.name} verified again on the tree's logs")


def _without_paths(reason: str) -> str:
    return _PATH.sub("<file>", reason)


# --- each scenario folder ----------------------------------------------------------------------


def _scenario_dirs(tree: Path) -> list[Path]:
    return [p for section in INFERENCE_SECTIONS for p in sorted((tree / section).glob("*/*/results/*/*/*"))
            if p.is_dir()]


def _scenario_key(scenario_dir: Path) -> tuple[str, str, str]:
    return scenario_dir.parent.parent.name, benchmark_of(scenario_dir.parent.name), scenario_dir.name


def _accuracy_txt(tree: Path, item: Item, scenario_dir: Path) -> None:
    path = scenario_dir / "accuracy" / ACCURACY_TXT
    if not path.is_file():
        return  # the json item's required files name it
    rel = path.relative_to(tree)
    target, benchmark, scenario = _scenario_key(scenario_dir)
    full = tree / RAW_DIR / target / benchmark / scenario / ACCURACY_LOG
    item.check(f"{rel}: against {full.relative_to(tree)}")
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("{"):
        _rouge_txt(tree, item, path, full, lines)
        return
    match = _ACCURACY_LINE.match(lines[0]) if lines else None
    if match is None or len(lines) < 2 or not lines[1].startswith("hash="):
        item.fail(f"{rel}: expected 'accuracy=<percent>%, good=<n>, total=<n>' and 'hash=<sha256>' ({RULE})")
        return
    percent, good, total = float(match.group(1)), int(match.group(2)), int(match.group(3))
    if not full.is_file():
        item.fail(f"{rel}: the full accuracy log {full.relative_to(tree)} is missing ({RULE})")
        return
    source = full.relative_to(tree)
    if lines[1].removeprefix("hash=") != (digest := sha256_file(full)):
        _differ(item, rel, "hash", lines[1].removeprefix("hash="), digest, source)
    try:
        samples = len({int(entry["qsl_idx"]) for entry in json.loads(full.read_text())})
    except (ValueError, KeyError, TypeError) as exc:
        item.fail(f"{source}: cannot count its samples: {exc} ({RULE})")
        return
    if total != samples:
        _differ(item, rel, "total", total, samples, source)
    if good > total or f"{good / total * 100:.3f}" != f"{percent:.3f}":
        _differ(item, rel, "accuracy", f"{percent:.3f}%", f"{good / max(total, 1) * 100:.3f}%",
                f"good={good} of total={total} on the same line")


def _rouge_txt(tree: Path, item: Item, path: Path, full: Path, lines: list[str]) -> None:
    """An LLM's accuracy.txt: its hash is the full log's, and gen_num that log's samples. Its ROUGE
    scores need the dataset's reference summaries, which a tree does not hold: the tables item
    compares ROUGE-1 with inference.parquet, and `benchpipe reproduce` scores the log again."""
    from benchpipe.contracts.errors import ParseError
    from benchpipe.results.loadgen_parser import parse_rouge_txt

    rel = path.relative_to(tree)
    try:
        scores = parse_rouge_txt(path)
    except ParseError as exc:
        item.fail(f"{exc} ({RULE})")
        return
    if len(lines) < 2 or not lines[1].startswith("hash="):
        item.fail(f"{rel}: line 2: expected 'hash=<sha256>' ({RULE})")
        return
    if not full.is_file():
        item.fail(f"{rel}: the full accuracy log {full.relative_to(tree)} is missing ({RULE})")
        return
    source = full.relative_to(tree)
    if lines[1].removeprefix("hash=") != (digest := sha256_file(full)):
        _differ(item, rel, "hash", lines[1].removeprefix("hash="), digest, source)
    try:
        samples = len({int(entry["qsl_idx"]) for entry in json.loads(full.read_text())})
    except (ValueError, KeyError, TypeError) as exc:
        item.fail(f"{source}: cannot count its samples: {exc} ({RULE})")
        return
    if scores["gen_num"] != samples:
        _differ(item, rel, "gen_num", int(scores["gen_num"]), samples, source)


def _scenario_files(tree: Path, item: Item, scenario_dir: Path, seen: Seen, checks: dict, kind: RunKind,
                    verifications: dict) -> None:
    from benchpipe.package.inference import scenario_readme

    target, benchmark, scenario = _scenario_key(scenario_dir)
    measured_path, readme_path = scenario_dir / "measurements.json", scenario_dir / "README.md"
    if not measured_path.is_file() or not readme_path.is_file():
        return  # the json item's required files name them
    measured = json.loads(measured_path.read_text())
    model = str(measured.get("starting_weights_filename"))
    rel = measured_path.relative_to(tree)
    item.check(f"{rel}: scenario and model sha256 against inference.parquet")
    if measured.get("scenario") != scenario:
        _differ(item, rel, "scenario", measured.get("scenario"), scenario, "its folder")
    served = {r["model_sha256"] for r in seen.tables.get("inference.parquet", [])
              if (r["target"], r["benchmark"], r["scenario"]) == (target, benchmark, scenario)}
    if served and set(_SHA256.findall(model)) - served:
        _differ(item, rel, "starting_weights_filename", model, sorted(served), "inference.parquet model_sha256")
    perf = seen.tests.get((target, benchmark, scenario, "performance"))
    if perf is None:
        item.fail(f"{readme_path.relative_to(tree)}: no performance run to state a LoadGen version of ({RULE})")
        return
    entries = {e.get("test"): e for e in (checks.get("inference") or {}).get("compliance", [])
               if (e.get("target"), e.get("benchmark"), e.get("scenario")) == (target, benchmark, scenario)}
    verdicts = {test: (str(entries.get(test, {}).get("verified_by")), v.passed)
                for (t, b, s, test), (_, v) in verifications.items() if (t, b, s) == (target, benchmark, scenario)}
    want = scenario_readme(target, benchmark, scenario, model, perf["loadgen_version"], kind, verdicts,
                           _attempts(seen, target, benchmark, scenario))
    _compare_text(tree, item, readme_path, want, "the performance run's detail log, measurements.json, "
                  f"{CONFIG_JSON}, the compliance tests verified again and provenance.parquet")


def _attempts(seen: Seen, target: str, benchmark: str, scenario: str) -> list[dict] | None:
    """The performance run's attempts as provenance.parquet records them (the README's correction note)."""
    job = f"infer/{scenario}/performance"
    for row in seen.tables.get("provenance.parquet", []):
        if (row["target"], row["benchmark"], row["job"]) == (target, benchmark, job) and row.get("attempts_json"):
            return json.loads(row["attempts_json"])
    return None


def _compare_text(tree: Path, item: Item, path: Path, want: str, source: str) -> None:
    rel = path.relative_to(tree)
    item.check(f"{rel}: rendered anew from {source}")
    text = path.read_text()
    if text != want:
        stated, derived = _first_difference(text, want)
        _differ(item, rel, "line", stated, derived, source)


# --- checks.json's training, dataset and software sections ------------------------------------


def _hyperparameters(tree: Path, item: Item, config: dict, stated: Any) -> None:
    from benchpipe.package.tree import hyperparameters_report, implementation_readme

    want = hyperparameters_report(config)
    item.check(f"{CHECKS_JSON}: hyperparameters against {CONFIG_JSON}")
    for name in sorted(set(want) | set(stated or {})):
        if (stated or {}).get(name) != want.get(name):
            _differ(item, CHECKS_JSON, f"hyperparameters.{name}", (stated or {}).get(name), want.get(name),
                    CONFIG_JSON)
    for section in TRAINING_SECTIONS:
        for readme in sorted((tree / section).glob("*/benchmarks/*/implementations/benchpipe/README.md")):
            name = readme.parent.parent.parent.name
            if name in want:
                _compare_text(tree, item, readme, implementation_readme(name, want[name]),
                              f"{CONFIG_JSON}'s hyperparameters")


def _datasets(tree: Path, item: Item, seen: Seen, stated: Any) -> None:
    from benchpipe.contracts import registry
    from benchpipe.contracts.errors import ValidationError
    from benchpipe.package.checks import check_dataset

    provenance = seen.tables.get("provenance.parquet", [])
    for name, entry in sorted((stated or {}).items()):
        folder = tree / DATASETS_DIR / registry.get(name).dataset_name
        item.check(f"{CHECKS_JSON}: datasets.{name} against {(folder / DATASET_MANIFEST).relative_to(tree)}")
        try:
            want = check_dataset(name, folder, provenance)
        except ValidationError as exc:
            item.fail(f"{CHECKS_JSON}: datasets.{name}: {exc} ({RULE})")
            continue
        if entry != want:
            _differ(item, CHECKS_JSON, f"datasets.{name}", entry, want, (folder / DATASET_MANIFEST).relative_to(tree))


def _software(item: Item, seen: Seen, stated: Any) -> None:
    from benchpipe.contracts.errors import ValidationError
    from benchpipe.package.checks import check_provenance

    item.check(f"{CHECKS_JSON}: software against provenance.parquet")
    try:
        want = check_provenance(seen.tables.get("provenance.parquet", []))
    except ValidationError as exc:
        item.fail(f"{CHECKS_JSON}: software: {exc} ({RULE})")
        return
    if stated != want:
        _differ(item, CHECKS_JSON, "software", stated, want, "provenance.parquet")


def _training_compliance(tree: Path, item: Item, stated: Any) -> None:
    """The files the checkers passed at packaging: every training log and system, each passed."""
    item.check(f"{CHECKS_JSON}: training_compliance against the tree's training logs and systems")
    want = {str(log.relative_to(tree)) for log in training_logs(tree).values()}
    want |= {str(p.relative_to(tree)) for s in TRAINING_SECTIONS for p in (tree / s).glob("*/systems/*.json")}
    listed = {str(e.get("log")) for e in stated or []}
    if listed != want:
        _differ(item, CHECKS_JSON, "training_compliance", sorted(listed), sorted(want), "the tree's training files")
    for i, entry in enumerate(stated or []):
        if entry.get("passed") is not True:
            item.fail(f"{CHECKS_JSON}: training_compliance[{i}].passed: {entry.get('passed')!r} stated, "
                      f"but a tree is written only when every file passes ({RULE})")
