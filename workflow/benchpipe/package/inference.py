"""The inference half of a submission tree: checked, laid out as MLPerf's v6 tree, then judged.

    inference/<division>/<org>/...            MLPerf models (resnet): the official checker reads it
    benchpipe/inference/<division>/<org>/...  benchpipe's own models (digits, mnist), same layout

Both hold ``systems/<target>.json``, ``src/<model>/`` and, per scenario,
``results/<target>/<model>/<scenario>/`` with ``performance/run_1/``, ``accuracy/``,
``user.conf``, ``measurements.json``, ``README.md`` and, in the closed division,
``TEST01/`` and ``TEST04/`` with their ``verify_*.txt``.

With a checkout of mlcommons/inference (``inference.checker``), TEST01 and TEST04 are verified by
its ``compliance/TEST0x/run_verification.py``, whose output folder goes into the tree as it is;
benchpipe's own verification runs beside it as a cross-check, and the two must agree. Without
one, benchpipe's own verify files stand in, labelled as such, in the same layout.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe import provenance
from benchpipe.contracts import layout, registry
from benchpipe.contracts.benchmark import LLMInferenceTask
from benchpipe.contracts.config import inference_benchmarks, inference_modes, inference_tests
from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.layout import (
    ACCURACY_LOG,
    ACCURACY_TXT,
    CALIBRATION,
    DETAIL_LOG,
    RAW_DIR,
    USER_CONF,
)
from benchpipe.contracts.records import RunKind, read_model_record
from benchpipe.contracts.rounds import RUNNABLE_COMPLIANCE_TESTS
from benchpipe.contracts.schemas import validate
from benchpipe.infer.compliance import Verification, verify_test01, verify_test04, verify_test06
from benchpipe.infer.crosscheck import check_run_logs
from benchpipe.infer.llm_run import read_llm_calibration
from benchpipe.infer.sut import RESPONSE_DTYPE
from benchpipe.infer.validity import check_accuracy, check_performance
from benchpipe.mlcommons import compliance_tests as official
from benchpipe.package.files import copy_code, copy_file, dump_json
from benchpipe.results.loadgen_parser import parse_detail_log, parse_rouge_txt

INFERENCE_STATUS = {"onprem": "available", "cloud": "available", "preview": "preview", "research": "rdi"}
ACCURACY_LOG_LIMIT = 10 * 1024  # official trees keep at most 10 KiB of the accuracy log
LOADGEN_LOGS = (DETAIL_LOG, "mlperf_log_summary.txt")
CHECKER_REPORTS = Path("benchpipe", "compliance", "official", "inference")


@dataclass
class ScenarioResults:
    """The test directories of one (target, benchmark, scenario), by mode."""

    target: str
    benchmark: str
    scenario: str
    tests: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, dict] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.benchmark} on {self.target}, {self.scenario}"


OWN_VERIFICATION = "benchpipe's own verification (no inference.checker configured)"


@dataclass(frozen=True)
class ComplianceVerdict:
    """One compliance test of a scenario: MLCommons' verdict where a checkout is configured, ours beside it."""

    test: str
    own: Verification
    official: official.OfficialVerdict | None = None

    @property
    def passed(self) -> bool:
        return (self.official or self.own).passed

    @property
    def accuracy_passed(self) -> bool | None:
        return (self.official or self.own).accuracy_passed

    @property
    def reasons(self) -> list[str]:
        # The official verdict lines say only pass or fail; ours say by how much, hence both.
        return [*(self.official.reasons if self.official else []), *self.own.reasons]

    @property
    def verified_by(self) -> str:
        if self.official is None:
            return OWN_VERIFICATION
        script = f"compliance/{self.test}/{official.SCRIPT}"
        return f"MLCommons' {script} (round {self.official.round}), cross-checked by benchpipe's"

    def disagreement(self) -> str | None:
        """Why MLCommons' scripts and benchpipe's verification disagree, if they do."""
        theirs, ours = self.official, self.own
        if theirs is None or (theirs.passed, theirs.accuracy_passed) == (ours.passed, ours.accuracy_passed):
            return None
        return (
            f"{self.test}: MLCommons' {official.SCRIPT} and benchpipe's verification disagree: "
            f"theirs {'; '.join(theirs.decided_by)}; ours {'; '.join(ours.reasons) or 'TEST PASS'}"
        )


def group_tests(runs_dir: Path, rows: list[dict]) -> list[ScenarioResults]:
    groups: dict[tuple[str, str, str], ScenarioResults] = {}
    for row in rows:
        key = (row["target"], row["benchmark"], row["scenario"])
        group = groups.setdefault(key, ScenarioResults(*key))
        group.tests[row["mode"]] = layout.test_dir(runs_dir, *key, row["mode"])
        group.rows[row["mode"]] = row
    return [groups[k] for k in sorted(groups)]


def check_coverage(settings: dict, rows: list[dict], system_types: dict[str, str]) -> None:
    """Every (target, benchmark, scenario, mode) the workflow runs is in inference.parquet: an LLM's
    scenarios depend on each target's ``system_types``, the compliance tests on the benchmark."""
    expected = set(inference_tests(settings, system_types))
    found = {(r["target"], r["benchmark"], r["scenario"], r["mode"]) for r in rows}
    if missing := sorted(expected - found):
        raise ValidationError(f"inference.parquet: no result for {', '.join(' '.join(m) for m in missing)}")


def check_scenario(group: ScenarioResults, settings: dict,
                   staging: Path | None = None) -> dict[str, ComplianceVerdict]:
    """benchpipe's own rules on one scenario's tests; the compliance verdicts. Raises on any failure.

    With a checker checkout configured, MLCommons' verification scripts write their output
    folders under ``staging`` (required then), to be copied into the tree once everything passed.
    """
    kind = RunKind.from_settings(settings["inference"])
    division = settings["submission"]["division"]
    task = registry.get(group.benchmark).inference
    problems: list[str] = []
    models = {read_model_record(d).sha256 for d in group.tests.values()}
    if len(models) != 1:
        problems.append(f"rule 'one model': the tests served {len(models)} different models: re-run them")
    for mode, test_dir in group.tests.items():
        row = group.rows[mode]
        if row["official_run"] != kind.official:
            problems.append(
                f"{test_dir}: rule 'run kind': made as a {'official' if row['official_run'] else 'development'} "
                f"run, the config asks for {'official' if kind.official else 'development'} runs: re-run infer"
            )
        path = test_dir / DETAIL_LOG
        detail = parse_detail_log(path)
        if mode == "accuracy":
            problems += check_accuracy(detail, path)
            if isinstance(task, LLMInferenceTask):
                if division == "closed":
                    problems += llm_accuracy_problems(task, test_dir / ACCURACY_TXT)
            elif division == "closed" and row["accuracy"] < row["accuracy_target"]:
                problems.append(
                    f"{test_dir / ACCURACY_TXT}: rule 'accuracy target': {row['accuracy']:.4f} is below "
                    f"{row['accuracy_target']:.4f} (99 % of the reference), required in the closed division"
                )
        else:
            problems += check_performance(
                detail, path, scenario=group.scenario, official=kind.official,
                min_duration_ms=kind.min_duration_ms, loadgen_model=loadgen_model(task, group.scenario),
                division=division, compliance_test=mode if mode in RUNNABLE_COMPLIANCE_TESTS else None,
            )
            problems += check_run_logs(test_dir)
    verdicts = {}
    if not problems:
        for test in RUNNABLE_COMPLIANCE_TESTS:
            if test not in group.tests:
                continue
            verdict = verify_test(test, group, settings, staging)
            verdicts[test] = verdict
            if disagreement := verdict.disagreement():
                problems.append(f"{group.tests[test]}: {disagreement}")
            elif not verdict.passed and judged(verdict, kind):
                problems += [f"{group.tests[test]}: {test}: {reason}" for reason in verdict.reasons]
    if problems:
        raise ValidationError(f"{group.where}: " + "; ".join(problems))
    return verdicts


def loadgen_model(task: Any, scenario: str) -> str:
    """The LoadGen model key a scenario ran under: an LLM's Interactive has its own."""
    return task.loadgen_model_for(scenario) if isinstance(task, LLMInferenceTask) else task.loadgen_model


def llm_accuracy_problems(task: LLMInferenceTask, accuracy_txt: Path) -> list[str]:
    """The closed division's accuracy rule for an LLM: every one of the checker's targets (99 %
    of each reference ROUGE, at least 90 % of its generated length), from accuracy.txt."""
    scores = parse_rouge_txt(accuracy_txt)
    names = {"ROUGE1": "rouge1", "ROUGE2": "rouge2", "ROUGEL": "rougeL", "ROUGELSUM": "rougeLsum", "GEN_LEN": "gen_len"}
    return [
        f"{accuracy_txt}: rule 'accuracy target': {names[metric]} {scores[names[metric]]:g} is below {target:g} "
        f"(the round's target for {task.official_name}), required in the closed division"
        for metric, target in task.accuracy_targets if scores[names[metric]] < target
    ]


def judged(verification: Verification | ComplianceVerdict, kind: RunKind) -> bool:
    """Whether a failed verification stops packaging.

    Always for an official run, and always for TEST01's accuracy part, which compares answers
    and is not subject to noise. A development run's performance comparisons are reported,
    not judged: two separate runs of a few seconds on a shared machine differ by more than the
    rules' 10 % (measured: up to 20 % between identical runs), and TEST01's accuracy logging
    (about 4,096 answers whatever the run's length) loads a short run far more than a 600 s
    one (digits SingleStream: +37 % latency in 5 s), so their verdict says little until the
    runs of an official round.
    """
    if kind.official:
        return True
    return verification.accuracy_passed is False


def verify_test(test: str, group: ScenarioResults, settings: dict, staging: Path | None) -> ComplianceVerdict:
    """``test`` verified by benchpipe and, with ``inference.checker`` set, by MLCommons' script into ``staging``."""
    perf, run = group.tests["performance"], group.tests[test]
    eos: tuple[int, ...] = ()
    if test == "TEST01":
        own = verify_test01(accuracy_dir=group.tests["accuracy"], test_dir=run,
                            submission_perf_dir=perf, scenario=group.scenario)
    elif test == "TEST06":
        # The served checkpoint's end-of-sequence ids, as its calibration read them from generation_config.json.
        eos = read_llm_calibration(run)[2].eos_token_ids
        own = verify_test06(test_dir=run, scenario=group.scenario, eos_token_ids=eos)
    else:
        own = verify_test04(test_dir=run, submission_perf_dir=perf, scenario=group.scenario)
    checkout = settings["inference"].get("checker")
    if not checkout:
        return ComplianceVerdict(test, own)
    if staging is None:
        raise ValidationError(f"{group.where}: {test}: MLCommons' verification needs a staging folder")
    out = staging / group.target / group.benchmark / group.scenario
    round_ = settings["inference"]["round"]
    if test == "TEST01":
        theirs = official.verify_test01(
            Path(checkout), accuracy_log=group.tests["accuracy"] / ACCURACY_LOG, submission_perf_dir=perf,
            test_dir=run, output_dir=out, dtype=RESPONSE_DTYPE.name, round=round_,
        )
    elif test == "TEST06":
        # The script takes one id; Llama 3.1's first (<|end_of_text|>) ends the reference's outputs.
        theirs = official.verify_test06(Path(checkout), test_dir=run, output_dir=out, scenario=group.scenario,
                                        eos_token_id=eos[0], round=round_)
    else:
        theirs = official.verify_test04(Path(checkout), submission_perf_dir=perf, test_dir=run, output_dir=out,
                                        round=round_)
    return ComplianceVerdict(test, own, theirs)


def section_of(root: Path, benchmark: str) -> tuple[Path, str]:
    """(section root, results folder name): MLPerf's tree for MLPerf models, benchpipe's otherwise."""
    official_name = registry.get(benchmark).inference.official_name
    if official_name:
        return root / "inference", official_name
    return root / "benchpipe" / "inference", benchmark


def measurements(test_dir: Path, scenario: str, llm: bool = False) -> dict[str, Any]:
    model = read_model_record(test_dir)
    return {
        # An LLM is fed the prompts' token ids (int32), a classifier its preprocessed images.
        "input_data_types": "int32" if llm else "fp32",
        # Weights benchpipe trained are not MLPerf's reference weights: say so.
        "retraining": "yes" if model.retrained else "no",
        "starting_weights_filename": model.description,
        "weight_data_types": "fp32",
        # The Llama loader widens bfloat16 and float16 tensors to float32, exactly.
        "weight_transformations": "bf16/fp16 checkpoint tensors widened to fp32 at load (exact)" if llm else "none",
        "scenario": scenario,
    }


def correction_note(attempts: list[dict] | None) -> str:
    """The README's word on a performance run whose user.conf the harness corrected; empty if none was."""
    corrected = [a for a in attempts or [] if a.get("correction")]
    if not corrected:
        return ""
    steps = "; ".join(
        f"attempt {a['attempt']}: {a['correction']['key']} {a['correction']['before']} -> {a['correction']['after']} "
        f"({a['correction']['recommendation']})" for a in corrected
    )
    return (
        f"\n**user.conf corrected**: LoadGen judged {len(corrected)} performance attempt(s) INVALID for a setting "
        f"its reason names, and `benchpipe infer` corrected it from what the attempt measured ({steps}). The "
        "user.conf beside this file is the corrected one, which the VALID performance run and the compliance "
        "tests ran with; provenance.parquet's attempts_json records every attempt.\n"
    )


def scenario_readme(target: str, benchmark: str, scenario: str, model: str, loadgen_version: str, kind: RunKind,
                    verdicts: dict[str, tuple[str, bool]], attempts: list[dict] | None = None) -> str:
    """A scenario's README: only what the tree's own files say again (the audit renders it anew
    from them). ``model``: the served model's description (measurements.json's starting weights);
    ``loadgen_version``: the performance run's detail log's; ``verdicts``: test -> (verified by, passed);
    ``attempts``: the performance run's, as provenance records them.

    A failed comparison's figures stay in its verify_*.txt, which the audit re-derives; here it is named.
    """
    note = "" if kind.official else (
        f"\n**Not valid for an official round**: a {kind.label.split(':')[0]} run. "
        "Make official runs with `inference.official: true` (docs/inference.md).\n"
    )
    return (
        f"# {benchmark} {scenario} on {target}\n\n"
        f"Model: {model}.\n\n"
        f"Each test ran as `benchpipe infer --benchmark {benchmark} --scenario {scenario} "
        f"--mode <mode> --calibration <dir>` under mlcommons-loadgen {loadgen_version}, with the "
        f"user.conf beside this file, which `benchpipe calibrate` wrote from measurements of this model.\n{note}"
        + correction_note(attempts)
        + "".join(f"\n{test} verified by {verified_by}.\n" for test, (verified_by, _) in verdicts.items())
        + "".join(
            f"\n**{test} failed, reported but not judged**: a development run's performance comparisons are "
            f"not (docs/inference.md); {test}/verify_performance.txt says by how much.\n"
            for test, (_, passed) in verdicts.items() if not passed
        )
    )


def scenario_dir_of(root: Path, group: ScenarioResults, settings: dict) -> Path:
    submission = settings["submission"]
    section, folder = section_of(root, group.benchmark)
    org_dir = section / submission["division"] / submission["submitter"]
    return org_dir / "results" / group.target / folder / group.scenario


def write_scenario(root: Path, group: ScenarioResults, settings: dict, verdicts: dict) -> None:
    submission = settings["submission"]
    section, folder = section_of(root, group.benchmark)
    scenario_dir = scenario_dir_of(root, group, settings)
    kind = RunKind.from_settings(settings["inference"])
    perf = group.tests["performance"]
    for log in LOADGEN_LOGS:
        copy_file(perf / log, scenario_dir / "performance" / "run_1" / log)
    copy_file(perf / USER_CONF, scenario_dir / USER_CONF)
    measured = measurements(perf, group.scenario,
                            llm=isinstance(registry.get(group.benchmark).inference, LLMInferenceTask))
    validate(measured, "measurements.schema.json", what=f"{scenario_dir}/measurements.json")
    dump_json(scenario_dir / "measurements.json", measured)
    readme = scenario_readme(group.target, group.benchmark, group.scenario, read_model_record(perf).description,
                             group.rows["performance"]["loadgen_version"], kind,
                             {test: (v.verified_by, v.passed) for test, v in verdicts.items()},
                             provenance.read(perf)["attempts"])
    (scenario_dir / "README.md").write_text(readme)
    acc = group.tests["accuracy"]
    for log in (*LOADGEN_LOGS, ACCURACY_TXT):
        copy_file(acc / log, scenario_dir / "accuracy" / log)
    full = acc / ACCURACY_LOG
    (scenario_dir / "accuracy" / ACCURACY_LOG).write_bytes(full.read_bytes()[:ACCURACY_LOG_LIMIT])
    # The full log stays in the tree: accuracy.txt's hash line is checked against it.
    copy_file(full, root / RAW_DIR / group.target / group.benchmark / group.scenario / ACCURACY_LOG)
    # The calibration behind user.conf (run kind, batching): what `benchpipe reproduce` re-runs a test with.
    copy_file(perf / CALIBRATION, root / RAW_DIR / group.target / group.benchmark / group.scenario / CALIBRATION)
    for test, verdict in verdicts.items():
        write_test(scenario_dir / test, group, verdict, section, folder, submission)


def write_test(out: Path, group: ScenarioResults, verdict: ComplianceVerdict, section: Path, folder: str,
               submission: dict) -> None:
    """TEST01/ or TEST04/ as MLCommons' run_verification.py lays it out (and, with a checkout, wrote it)."""
    if verdict.official is not None:
        # Where the round's checker looks for it (results/.../<scenario>/TEST0x since v6.0).
        placed = section / verdict.official.tree_path.format(
            division=submission["division"], submitter=submission["submitter"], system=group.target,
            benchmark=folder, scenario=group.scenario,
        )
        shutil.copytree(verdict.official.folder, placed)
        return
    test_dir = group.tests[verdict.test]
    if verdict.test == "TEST06":
        # As compliance/TEST06/run_verification.py lays it out: the whole log of every response.
        copy_file(test_dir / ACCURACY_LOG, out / "accuracy" / ACCURACY_LOG)
        verdict.own.write(out)
        return
    for log in LOADGEN_LOGS:
        copy_file(test_dir / log, out / "performance" / "run_1" / log)
    if verdict.test == "TEST01":
        copy_file(test_dir / ACCURACY_LOG, out / "accuracy" / ACCURACY_LOG)
    verdict.own.write(out)


def check_written(root: Path, groups: list[ScenarioResults], settings: dict) -> None:
    """Every file the layout requires, in every scenario folder as written: the writers above and
    MLCommons' verification scripts each place some of them, and the manifest would vouch for a gap."""
    round_ = settings["inference"]["round"]
    missing = []
    for group in groups:
        scenario_dir = scenario_dir_of(root, group, settings)
        modes = inference_modes(settings, group.benchmark)
        missing += [layout.missing_reason(str((scenario_dir / rel).relative_to(root)), group.scenario, mode, round_)
                    for rel, mode in layout.missing_scenario_files(scenario_dir, modes)]
    if missing:
        raise ValidationError(f"{root}: the inference tree as written lacks {len(missing)} file(s): "
                              + "; ".join(missing))


def write_org_files(root: Path, settings: dict, systems: dict[str, dict], names: list[str]) -> None:
    """systems/ and src/ of each section that holds results."""
    submission = settings["submission"]
    for name in names:
        section, folder = section_of(root, name)
        org_dir = section / submission["division"] / submission["submitter"]
        for target, description in systems.items():
            system_file = org_dir / "systems" / f"{target}.json"
            if not system_file.exists():
                dump_json(system_file, dict(description, status=INFERENCE_STATUS[description["status"]]))
        src = org_dir / "src" / folder / "benchpipe"
        if not src.exists():
            copy_code(src)


# MLPerf models whose closed division round v6.1 holds for edge systems only (its checker has
# no datacenter scenario list for them, and crashes on such a tree).
EDGE_ONLY_IN_CLOSED = {"resnet"}


def check_round_scenarios(settings: dict, systems: dict[str, dict], names: list[str]) -> None:
    if settings["submission"]["division"] != "closed":
        return
    for name in names:
        official_name = registry.get(name).inference.official_name
        for target, description in systems.items():
            if official_name in EDGE_ONLY_IN_CLOSED and description.get("system_type") != "edge":
                raise ValidationError(
                    f"runs/{target}/system.json: system_type is {description.get('system_type')}, but round "
                    f"v6.1 has {official_name} in the closed division for edge systems only: submit it in "
                    "the open division, or from an edge system"
                )


def write_inference(root: Path, runs_dir: Path, settings: dict, systems: dict, rows: list[dict]) -> dict[str, Any]:
    """Check every scenario, lay out both sections, run the official checker on MLPerf's.

    Returns the checks.json entry. Nothing is written before every scenario passes.
    """
    names = inference_benchmarks(settings)
    if not names:
        return {}  # a training-only submission
    check_round_scenarios(settings, systems, names)
    groups = group_tests(runs_dir, rows)
    with tempfile.TemporaryDirectory(prefix="benchpipe-compliance-") as staging:
        verdicts = {(g.target, g.benchmark, g.scenario): check_scenario(g, settings, Path(staging)) for g in groups}
        write_org_files(root, settings, systems, names)
        for group in groups:
            write_scenario(root, group, settings, verdicts[(group.target, group.benchmark, group.scenario)])
    check_written(root, groups, settings)
    kind = RunKind.from_settings(settings["inference"])
    return {
        "kind": kind.label,
        "official": kind.official,
        "compliance": [
            {"target": t, "benchmark": b, "scenario": s, "test": test, "passed": v.passed,
             "judged": v.passed or judged(v, kind), "reasons": v.reasons, "verified_by": v.verified_by,
             "decided_by": v.official.decided_by if v.official else None,
             "cross_check": "benchpipe's own verification agrees" if v.official else None}
            for (t, b, s), tests in verdicts.items() for test, v in tests.items()
        ],
        "official_checker": _run_checker(root, settings, names, kind),
    }


def _run_checker(root: Path, settings: dict, names: list[str], kind: RunKind) -> dict[str, Any] | None:
    from benchpipe.mlcommons.inference_checker import run_inference_checker

    if not any(registry.get(n).inference.official_name for n in names):
        return None
    return run_inference_checker(
        Path(settings["inference"]["checker"]), root / "inference",
        submitter=settings["submission"]["submitter"],
        version=settings["inference"]["round"],
        development=not kind.official,
        subset_accuracy=not kind.official,
        keep_dir=root / CHECKER_REPORTS,
    )
