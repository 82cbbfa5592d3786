"""MLPerf Inference compliance tests TEST01 and TEST04: their audit.config and our verification.

Each test is a performance run of the submission's exact user.conf with an audit.config that
LoadGen applies on top of it (``StartTestWithLogSettings(..., audit_config_filename)``):

- TEST01 logs a random sample of performance-mode responses to mlperf_log_accuracy.json; they
  must equal the accuracy run's responses for the same samples, and the run's performance
  must be within 10 % of the submission run's.
- TEST04 issues one sample over and over; the run must not be more than 10 % faster than the
  submission run (a SUT that caches answers would be).

The verification is our own implementation of the rules of the round's compliance/TEST01 and
compliance/TEST04 scripts (verify_accuracy.py, verify_performance.py). Where a checkout of
mlcommons/inference is configured, packaging runs those scripts themselves
(``benchpipe.mlcommons.compliance_tests``) and this one only cross-checks them; without one
(benchpipe's development trees) its files stand in, labelled as benchpipe's. It writes the
verify_*.txt files that the submission checker's compliance check reads: it looks for a line
that is exactly ``TEST PASS`` in verify_accuracy.txt and for ``TEST PASS`` anywhere in a line
of verify_performance.txt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.contracts.atomic import atomic_file
from benchpipe.contracts.errors import InferenceError, ParseError
from benchpipe.contracts.layout import ACCURACY_LOG, DETAIL_LOG, VERIFY_ACCURACY, VERIFY_PERFORMANCE
from benchpipe.contracts.rounds import COMPLIANCE_TESTS, ROUND
from benchpipe.mlcommons.compliance_tests import FAIL_LINE, PASS_LINE
from benchpipe.results.loadgen_parser import RESULT_KEY, DetailLog, parse_detail_log

# The first line of each verify file benchpipe writes: a tree must tell them from the official ones.
OWN_LABEL = "benchpipe's own {test} verification (the rules of MLCommons' compliance/{test} scripts, not the scripts)"

# --- audit.config -------------------------------------------------------------------------------

# LoadGen reads the audit file for model '*' (it does not know the model's name), so only
# '*.<scenario>.<key>' and '*.*.<key>' lines take effect; we write every key in that form.
TEST01_ACCURACY_LOG_RNG_SEED = 720381539243781796
# accuracy_log_sampling_target of compliance/TEST01/<model>/audit.config in the v6.1 tree,
# keyed by LoadGen model name (the gpt-j folder is LoadGen's gptj). Every file also sets
# mode = 2 and accuracy_log_rng_seed = 720381539243781796.
TEST01_SAMPLING_TARGET: dict[str, int] = {
    "3d-unet": 64,
    "bert": 4096,
    "dlrm": 4096,
    "dlrm-v2": 4096,
    "gptj": 4096,
    "pointpainting": 256,
    "resnet50": 4096,
    "retinanet": 256,
    "rgat": 4096,
    "rnnt": 4096,
    "stable-diffusion-xl": 128,
    "wan-2.2-t2v-a14b": 50,
    "whisper": 4096,
    "yolo": 64,
}
# The v6.1 tree has no generic compliance/TEST01/audit.config: models it does not know get the
# value most of the per-model files use. It suits our responses (4 bytes each).
TEST01_DEFAULT_SAMPLING_TARGET = 4096

# compliance/TEST04/audit.config of the v6.1 tree: in every scenario, performance mode issuing
# the same sample (index 3) instead of unique ones.
TEST04_SAME_INDEX = 3
TEST04_SCENARIOS = ("MultiStream", "Offline", "SingleStream", "Server")
# That file's per-model lines. It names the model, which LoadGen ignores in an audit file (its
# README asks the SUT to apply them itself); we write them for '*' in that model's file instead.
TEST04_MODEL_KEYS: dict[str, dict[str, int]] = {
    "stable-diffusion-xl": {"Offline.min_query_count": 500},
    "wan-2.2-t2v-a14b": {"Offline.min_query_count": 20, "SingleStream.min_query_count": 20},
}


def _sampling_target(loadgen_model: str) -> int:
    return TEST01_SAMPLING_TARGET.get(loadgen_model, TEST01_DEFAULT_SAMPLING_TARGET)


def _test01_keys(loadgen_model: str) -> list[tuple[str, int]]:
    return [
        ("*.*.mode", 2),  # 2: PerformanceOnly
        ("*.*.accuracy_log_rng_seed", TEST01_ACCURACY_LOG_RNG_SEED),
        ("*.*.accuracy_log_sampling_target", _sampling_target(loadgen_model)),
    ]


def _test04_keys(loadgen_model: str) -> list[tuple[str, int]]:
    keys: list[tuple[str, int]] = []
    for scenario in TEST04_SCENARIOS:
        keys += [
            (f"*.{scenario}.mode", 2),
            (f"*.{scenario}.performance_issue_unique", 0),
            (f"*.{scenario}.performance_issue_same", 1),
            (f"*.{scenario}.performance_issue_same_index", TEST04_SAME_INDEX),
        ]
    keys += [(f"*.{key}", value) for key, value in TEST04_MODEL_KEYS.get(loadgen_model, {}).items()]
    return keys


def _check_test(test: str) -> None:
    if test not in COMPLIANCE_TESTS:
        raise InferenceError(f"compliance test '{test}' is not one of {', '.join(COMPLIANCE_TESTS)}")


def audit_config(test: str, loadgen_model: str) -> str:
    """The text of ``test``'s audit.config for ``loadgen_model`` in the round."""
    _check_test(test)
    if test == "TEST01":
        source = f"compliance/TEST01/{loadgen_model}/audit.config"
        if loadgen_model not in TEST01_SAMPLING_TARGET:
            source = f"no compliance/TEST01/{loadgen_model}: the per-model files' common values"
        keys = _test01_keys(loadgen_model)
    else:
        source = "compliance/TEST04/audit.config"
        keys = _test04_keys(loadgen_model)
    lines = [
        f"# {test} audit.config for {loadgen_model}, MLPerf Inference {ROUND} ({source}).",
        "# LoadGen applies it on top of user.conf; it reads it for model '*', hence '*.' keys.",
        *(f"{key} = {value}" for key, value in keys),
    ]
    return "\n".join(lines) + "\n"


def expected_effective_settings(test: str, loadgen_model: str) -> dict[str, Any]:
    """The ``effective_*`` values a detail log shows when ``test``'s audit.config took effect."""
    _check_test(test)
    if test == "TEST01":
        return {
            "effective_test_mode": "PerformanceOnly",
            "effective_accuracy_log_rng_seed": TEST01_ACCURACY_LOG_RNG_SEED,
            "effective_accuracy_log_sampling_target": _sampling_target(loadgen_model),
        }
    return {
        "effective_test_mode": "PerformanceOnly",
        "effective_performance_issue_unique": False,
        "effective_performance_issue_same": True,
        "effective_performance_issue_same_index": TEST04_SAME_INDEX,
    }


# --- reading logs -------------------------------------------------------------------------------

def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise InferenceError(f"{path}: missing: {what}")


def _detail(directory: Path, what: str) -> tuple[Path, DetailLog]:
    path = directory / DETAIL_LOG
    _require_file(path, f"the {what}'s LoadGen detail log")
    try:
        return path, parse_detail_log(path)
    except ParseError as exc:
        raise InferenceError(str(exc)) from exc


def _accuracy_entries(path: Path, what: str) -> list[tuple[int, bytes]]:
    """(qsl_idx, response bytes) of each entry of a LoadGen accuracy log, in log order."""
    _require_file(path, f"the {what}'s LoadGen accuracy log")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # A submission tree keeps only a truncated accuracy log: verify before truncating.
        raise InferenceError(f"{path}: not a LoadGen accuracy log (truncated?): {exc}") from exc
    if not isinstance(entries, list):
        raise InferenceError(f"{path}: not a LoadGen accuracy log: expected a JSON list")
    decoded = []
    for n, entry in enumerate(entries):
        try:
            decoded.append((int(entry["qsl_idx"]), bytes.fromhex(entry["data"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InferenceError(f"{path}: entry {n}: malformed ({exc!r})") from exc
    return decoded


# --- the verification ---------------------------------------------------------------------------

@dataclass
class Verification:
    """The outcome of one compliance test and the verify_*.txt files that record it."""

    test: str
    passed: bool
    files: dict[str, str]  # file name -> text, as the submission tree holds them
    reasons: list[str] = field(default_factory=list)  # why it failed, one rule per line
    figures: dict[str, float] = field(default_factory=dict)  # counts and scores behind the verdict

    @property
    def accuracy_passed(self) -> bool | None:
        """TEST01's comparison of answers (verify_accuracy.txt), TEST06's checks of outputs; None for
        TEST04, which has none."""
        if self.test == "TEST06":
            return self.passed
        text = self.files.get(VERIFY_ACCURACY)
        return None if text is None else PASS_LINE in text.splitlines()

    def write(self, directory: Path) -> list[Path]:
        written = []
        for name, text in self.files.items():
            with atomic_file(directory / name) as f:
                f.write(text)
            written.append(directory / name)
        return written


@dataclass(frozen=True)
class _AccuracyComparison:
    acc_entries: int
    acc_duplicates: int
    acc_duplicate_mismatches: int
    perf_entries: int
    compared: int
    compared_with_accuracy_run: int
    mismatched: int
    missing: int
    first_mismatch: tuple[int, bytes, bytes, bool] | None  # qsl_idx, reference, found, from the accuracy run

    @property
    def passed(self) -> bool:
        # Stricter than the official script in one degenerate case: it would also pass a run
        # whose responses were compared only among themselves, none with the accuracy run.
        return self.mismatched == 0 and self.compared_with_accuracy_run > 0


def _compare_responses(reference: list[tuple[int, bytes]], test: list[tuple[int, bytes]]) -> _AccuracyComparison:
    # As the official verify_accuracy.py: the accuracy run's first response per qsl_idx is the
    # reference. A sample the accuracy run never answered is counted as missing, not failed, and
    # its first performance-mode response becomes the reference for its later ones. The verdict
    # is the official one; the mismatch count differs: we count every response that differs
    # from the reference, it counts changes from the previous response.
    first: dict[int, bytes] = {}
    duplicates = duplicate_mismatches = 0
    for idx, data in reference:
        if idx in first:
            duplicates += 1
            duplicate_mismatches += int(first[idx] != data)
        else:
            first[idx] = data
    answered = set(first)
    compared = with_accuracy = mismatched = missing = 0
    first_mismatch = None
    for idx, data in test:
        if idx not in first:
            missing += 1
            first[idx] = data
            continue
        compared += 1
        with_accuracy += int(idx in answered)
        # The whole response, not only its first element: ours is one int32 per sample.
        if data != first[idx]:
            mismatched += 1
            first_mismatch = first_mismatch or (idx, first[idx], data, idx in answered)
    return _AccuracyComparison(
        len(reference), duplicates, duplicate_mismatches, len(test), compared, with_accuracy, mismatched, missing,
        first_mismatch,
    )


def _show(data: bytes) -> str:
    if data and len(data) % 4 == 0:
        values = [int.from_bytes(data[i:i + 4], "little", signed=True) for i in range(0, len(data), 4)]
        return str(values[0]) if len(values) == 1 else str(values)
    return f"0x{data.hex()}"


def _accuracy_text(c: _AccuracyComparison) -> str:
    # The counters of the official verify_accuracy.py, under the same names.
    lines = [
        OWN_LABEL.format(test="TEST01"),
        "Verifying accuracy: TEST01 performance-mode responses against the accuracy run's first response per qsl_idx.",
        f"num_acc_log_entries = {c.acc_entries}",
        f"num_acc_log_duplicate_keys = {c.acc_duplicates}",
        f"num_acc_log_data_mismatch = {c.acc_duplicate_mismatches}",
        f"num_perf_log_entries = {c.perf_entries}",
        f"num_perf_log_qsl_idx_match = {c.compared}",
        f"num_perf_log_compared_with_accuracy_run = {c.compared_with_accuracy_run}",
        f"num_perf_log_data_mismatch = {c.mismatched}",
        f"num_missing_qsl_idxs = {c.missing}",
        PASS_LINE if c.passed else FAIL_LINE,
    ]
    return "\n".join(lines) + "\n"


def _accuracy_reasons(c: _AccuracyComparison, reference: Path, test: Path) -> list[str]:
    if c.passed:
        return []
    if c.compared_with_accuracy_run == 0:
        return [
            f"TEST01 accuracy: none of the {c.perf_entries} responses in {test} is for a sample of the "
            f"accuracy run {reference} (did the TEST01 audit.config take effect, and do both runs use "
            f"the same samples?)"
        ]
    idx, expected, found, from_accuracy = c.first_mismatch  # type: ignore[misc]
    if from_accuracy:
        first = f"qsl_idx {idx}: accuracy run {_show(expected)}, performance run {_show(found)}"
    else:
        first = f"qsl_idx {idx}, not in the accuracy run: {_show(expected)}, then {_show(found)} in performance mode"
    return [
        f"TEST01 accuracy: {c.mismatched} of {c.compared} performance-mode responses in {test} differ from "
        f"the accuracy run's for the same qsl_idx (first: {first}); the SUT must answer the same every time"
    ]


# TEST01/verify_performance.py reads RESULT_KEY's figures from the detail logs;
# TEST04/verify_performance.py reads the same from the summaries (it turns the latencies into
# rates, 1e9 / ns).
LATENCY_SCENARIOS = ("SingleStream", "MultiStream")
THRESHOLD = 0.10
# Both scripts relax the bound to 20 % below these scores of the submission run, because short
# latencies vary more from run to run. TEST01 compares them with latencies in ns, TEST04 with
# its rates (1e9 / latency): the same numbers, so TEST04 relaxes for latencies of 5 us and more.
RELAXED_THRESHOLD = 0.20
RELAXED_BELOW = {"SingleStream": 200_000, "MultiStream": 1_600_000}


@dataclass(frozen=True)
class _PerfResult:
    path: Path
    label: str
    scenario: str
    valid: bool
    invalid_reason: str
    score: float  # RESULT_KEY's value: samples/s, or a latency in ns
    target_latency_ns: Any
    errors: int


def _perf_result(directory: Path, label: str) -> _PerfResult:
    path, detail = _detail(directory, label)
    scenario = detail.require("effective_scenario", path)
    if scenario not in RESULT_KEY:
        raise InferenceError(f"{path}: key 'effective_scenario': unknown scenario '{scenario}'")
    try:
        score = float(detail.require(RESULT_KEY[scenario], path))
    except ParseError as exc:
        raise InferenceError(str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise InferenceError(f"{path}: key '{RESULT_KEY[scenario]}': not a number ({exc})") from exc
    return _PerfResult(
        path, label, scenario,
        detail.get("result_validity") == "VALID",
        str(detail.get("result_invalid_reason") or "").strip(),
        score, detail.get("effective_target_latency_ns"), len(detail.errors),
    )


def _score_name(scenario: str) -> str:
    return f"{RESULT_KEY[scenario]} ({'ns' if scenario in LATENCY_SCENARIOS else 'samples/s'})"


@dataclass(frozen=True)
class _PerfVerdict:
    passed: bool
    text: str  # verify_performance.txt
    reasons: list[str]
    figures: dict[str, float]


def _verdict(test: str, lines: list[str], ref: _PerfResult, run: _PerfResult,
             failure: str | None, figures: dict[str, float]) -> _PerfVerdict:
    # The file goes into the submission tree: no local paths there, only in the reasons.
    lines = [OWN_LABEL.format(test=test), *lines]
    if failure is None:
        return _PerfVerdict(True, "\n".join([*lines, PASS_LINE]) + "\n", [], figures)
    text = "\n".join([*lines, f"{FAIL_LINE}: {failure}"]) + "\n"
    reason = f"{test} performance: {failure} ({run.path} against {ref.path})"
    return _PerfVerdict(False, text, [reason], figures)


def _common_performance_failure(ref: _PerfResult, run: _PerfResult, scenario: str) -> str | None:
    """The official scripts' failures before any comparison: invalid runs, scenario, latency target."""
    for result in (ref, run):
        if not result.valid:
            why = f": {result.invalid_reason}" if result.invalid_reason else ""
            return f"Invalid results in the {result.label}{why}"
    if not (ref.scenario == run.scenario == scenario):
        return (
            f"Test and reference scenarios do not match! (expected {scenario}; the {ref.label} ran "
            f"{ref.scenario}, the {run.label} {run.scenario})"
        )
    if scenario == "Server" and ref.target_latency_ns != run.target_latency_ns:
        return (
            f"Server target latency mismatch (the {ref.label} ran with {ref.target_latency_ns} ns, the "
            f"{run.label} with {run.target_latency_ns} ns)"
        )
    return None


def _header(ref: _PerfResult, run: _PerfResult) -> list[str]:
    # LoadGen errors do not fail the comparison (as in the official scripts): the validity
    # checks report them.
    warnings = [f"WARNING: {r.errors} ERROR reported in {r.label} results" for r in (ref, run) if r.errors]
    return ["Verifying performance.", *warnings]


def _test01_performance(ref: _PerfResult, run: _PerfResult, scenario: str) -> _PerfVerdict:
    lines = _header(ref, run)
    failure = _common_performance_failure(ref, run, scenario)
    if failure:
        return _verdict("TEST01", lines, ref, run, failure, {})
    threshold = THRESHOLD
    if scenario in RELAXED_BELOW and ref.score <= RELAXED_BELOW[scenario]:
        threshold = RELAXED_THRESHOLD
    figures = {"reference_score": ref.score, "test_score": run.score, "threshold": threshold}
    lines += [
        f"Metric = {_score_name(scenario)}",
        f"Reference score = {ref.score}",
        f"Test score = {run.score}",
        f"Threshold = {threshold}",
    ]
    # Within the band on either side: too slow means sampling the accuracy log slowed the SUT
    # (the score would not be representative); too fast means the submission run was not.
    if ref.score * (1 - threshold) <= run.score <= ref.score * (1 + threshold):
        return _verdict("TEST01", lines, ref, run, None, figures)
    deviation = (run.score / ref.score - 1) * 100 if ref.score else float("inf")
    failure = (
        f"Test score invalid: the TEST01 run's {_score_name(scenario)} {run.score:g} is {deviation:+.1f} % "
        f"off the submission run's {ref.score:g}; it must be within {threshold:.0%}"
    )
    return _verdict("TEST01", lines, ref, run, failure, figures)


def _rate(result: _PerfResult) -> float | None:
    """TEST04 compares rates, higher is faster in every scenario; None: no estimate to compare."""
    if result.scenario not in LATENCY_SCENARIOS:
        return result.score
    return 1e9 / result.score if result.score > 0 else None


def _test04_performance(ref: _PerfResult, run: _PerfResult, scenario: str) -> _PerfVerdict:
    lines = _header(ref, run)
    failure = _common_performance_failure(ref, run, scenario)
    if failure:
        return _verdict("TEST04", lines, ref, run, failure, {})
    ref_rate, run_rate = _rate(ref), _rate(run)
    for result, rate in ((ref, ref_rate), (run, run_rate)):
        if rate is None:
            failure = f"no early-stopping latency estimate ({RESULT_KEY[scenario]} = 0) in the {result.label}"
            return _verdict("TEST04", lines, ref, run, failure, {})
    threshold = THRESHOLD
    if scenario in RELAXED_BELOW and ref_rate <= RELAXED_BELOW[scenario]:
        threshold = RELAXED_THRESHOLD
    figures = {"reference_score": ref_rate, "test_score": run_rate, "threshold": threshold}
    unit = f"queries/s (1e9 / {RESULT_KEY[scenario]})" if scenario in LATENCY_SCENARIOS else _score_name(scenario)
    lines += [
        f"Metric = {unit}",
        f"reference score = {ref_rate}",
        f"test score = {run_rate}",
        f"Threshold = {threshold}",
    ]
    # One-sided: issuing the same sample may be slower (it breaks locality), never much faster.
    if run_rate < ref_rate * (1 + threshold):
        return _verdict("TEST04", lines, ref, run, None, figures)
    failure = (
        f"Test score invalid: the TEST04 run (one sample issued repeatedly) is "
        f"{(run_rate / ref_rate - 1) * 100:.1f} % faster than the submission run ({run_rate:g} against "
        f"{ref_rate:g} {unit}); at most {threshold:.0%} is allowed, more suggests cached answers"
    )
    return _verdict("TEST04", lines, ref, run, failure, figures)


def verify_test01(*, accuracy_dir: Path, test_dir: Path, submission_perf_dir: Path, scenario: str,
                  test_accuracy_dir: Path | None = None) -> Verification:
    """TEST01 from the accuracy run's, the TEST01 run's and the submission performance run's logs.

    Reads accuracy_dir/mlperf_log_accuracy.json (the full log, before any truncation),
    test_dir/mlperf_log_detail.txt, the TEST01 run's mlperf_log_accuracy.json from
    test_accuracy_dir (default test_dir; a tree keeps it in TEST01/accuracy/) and
    submission_perf_dir/mlperf_log_detail.txt.
    """
    reference_log, test_log = accuracy_dir / ACCURACY_LOG, (test_accuracy_dir or test_dir) / ACCURACY_LOG
    comparison = _compare_responses(
        _accuracy_entries(reference_log, "accuracy run"), _accuracy_entries(test_log, "TEST01 run")
    )
    ref = _perf_result(submission_perf_dir, "submission performance run")
    run = _perf_result(test_dir, "TEST01 run")
    performance = _test01_performance(ref, run, scenario)
    figures = dict(performance.figures)
    figures.update(
        compared=comparison.compared, compared_with_accuracy_run=comparison.compared_with_accuracy_run,
        mismatched=comparison.mismatched, missing=comparison.missing,
    )
    return Verification(
        test="TEST01",
        passed=comparison.passed and performance.passed,
        files={VERIFY_ACCURACY: _accuracy_text(comparison), VERIFY_PERFORMANCE: performance.text},
        reasons=_accuracy_reasons(comparison, reference_log, test_log) + performance.reasons,
        figures=figures,
    )


def verify_test04(*, test_dir: Path, submission_perf_dir: Path, scenario: str) -> Verification:
    """TEST04 from test_dir/mlperf_log_detail.txt and submission_perf_dir/mlperf_log_detail.txt."""
    ref = _perf_result(submission_perf_dir, "submission performance run")
    run = _perf_result(test_dir, "TEST04 run")
    performance = _test04_performance(ref, run, scenario)
    return Verification("TEST04", performance.passed, {VERIFY_PERFORMANCE: performance.text},
                        performance.reasons, performance.figures)


# --- TEST06 (an LLM's outputs) ------------------------------------------------------------------

# The checks of compliance/TEST06/run_verification.py, by the labels its verify_accuracy.txt uses.
TEST06_FIRST_TOKEN, TEST06_EOS, TEST06_LENGTH = "First token check pass", "EOS check pass", "Sample length check pass"
TEST06_TOKEN_DTYPE = "<i4"  # the LLM SUT's int32 tokens, as the script's --dtype int32 reads them


@dataclass(frozen=True)
class _Test06Entry:
    qsl_idx: int
    tokens: list[int]
    first: list[int] | None  # token_data: the first token(s) as reported on their own; None: not logged
    count: int | None  # token_count: the count reported to LoadGen


def _test06_entries(path: Path) -> list[_Test06Entry]:
    _require_file(path, "the TEST06 run's LoadGen accuracy log")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InferenceError(f"{path}: cannot read the LoadGen accuracy log: {exc}") from exc
    import numpy as np

    entries = []
    for n, entry in enumerate(raw):
        try:
            tokens = np.frombuffer(bytes.fromhex(entry["data"]), dtype=TEST06_TOKEN_DTYPE).tolist()
            first = entry.get("token_data")
            entries.append(_Test06Entry(
                int(entry["qsl_idx"]), tokens,
                None if first is None else np.frombuffer(bytes.fromhex(first), dtype=TEST06_TOKEN_DTYPE).tolist(),
                None if entry.get("token_count") is None else int(entry["token_count"]),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise InferenceError(f"{path}: entry {n}: malformed ({exc!r})") from exc
    return entries


def test06_outputs(path: Path) -> dict[int, list[list[int]]]:
    """qsl_idx -> the output tokens of each response to that sample, in log order, from a TEST06
    run's accuracy log (every response logged)."""
    outputs: dict[int, list[list[int]]] = {}
    for entry in _test06_entries(path):
        outputs.setdefault(entry.qsl_idx, []).append(entry.tokens)
    return outputs


def _trailing_eos(tokens: list[int], eos: frozenset[int]) -> int:
    count = 0
    for token in reversed(tokens):
        if token not in eos:
            break
        count += 1
    return count


def verify_test06(*, test_dir: Path, scenario: str, eos_token_ids: tuple[int, ...]) -> Verification:
    """TEST06 from the TEST06 run's accuracy log (every response logged): the first token reported
    on its own is the output's first (not in Offline, which reports none), no output ends with
    more than one end-of-sequence token (any of ``eos_token_ids``: the script takes one id), and
    each reported token count is the output's length."""
    path = test_dir / ACCURACY_LOG
    entries = _test06_entries(path)
    eos = frozenset(eos_token_ids)
    reasons: list[str] = []
    check_first = scenario != "Offline"
    wrong_first = [e for e in entries if check_first and (e.first is None or e.tokens[:len(e.first)] != e.first)]
    doubled = [e for e in entries if _trailing_eos(e.tokens, eos) > 1]
    miscounted = [e for e in entries if e.count != len(e.tokens)]
    if not entries:
        reasons.append(f"TEST06: {path} logs no response: did TEST06's audit.config take effect?")
    if wrong_first:
        e = wrong_first[0]
        reasons.append(f"TEST06 first token: {len(wrong_first)} of {len(entries)} responses in {path} report a "
                       f"first token that is not their output's (qsl_idx {e.qsl_idx}: {e.first} reported, "
                       f"output {e.tokens[:3]})")
    if doubled:
        e = doubled[0]
        reasons.append(f"TEST06 EOS: {len(doubled)} of {len(entries)} responses in {path} end with more than one "
                       f"end-of-sequence token {sorted(eos)} (qsl_idx {e.qsl_idx}: {e.tokens[-4:]})")
    if miscounted:
        e = miscounted[0]
        reasons.append(f"TEST06 sample length: {len(miscounted)} of {len(entries)} responses in {path} report a "
                       f"token count other than their length (qsl_idx {e.qsl_idx}: {e.count} for {len(e.tokens)})")
    passed = not reasons
    first_line = ("True" if not wrong_first and entries else "False") if check_first else "Skipped"
    text = "\n".join([
        OWN_LABEL.format(test="TEST06"),
        f"{TEST06_FIRST_TOKEN}: {first_line}",
        f"{TEST06_EOS}: {bool(entries) and not doubled}",
        f"{TEST06_LENGTH}: {bool(entries) and not miscounted}",
        "TEST06 verification complete" if passed else "TEST06 verification failed",
    ]) + "\n"
    figures = {"responses": float(len(entries)), "wrong_first_token": float(len(wrong_first)),
               "doubled_eos": float(len(doubled)), "miscounted": float(len(miscounted))}
    return Verification("TEST06", passed, {VERIFY_ACCURACY: text}, reasons, figures)
