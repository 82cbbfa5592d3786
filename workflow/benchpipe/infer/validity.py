"""Our own checks of one LoadGen log against the round's rules; each problem names its rule.

The official submission checker does not look at ``result_validity`` and lets LoadGen errors
in a performance log through, so benchpipe checks these itself, with the rules the checker
does apply (seeds, min duration, min query count, early stopping, the Server latency bound,
an LLM's token latencies on and its TTFT and TPOT p99s below the round's limits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.rounds import (
    OFFICIAL_MIN_DURATION_MS,
    ROUND,
    RUNNABLE_COMPLIANCE_TESTS,
    inference_round,
)
from benchpipe.infer.compliance import expected_effective_settings
from benchpipe.results.loadgen_parser import DetailLog

# The checker's MODEL_CONFIG[round]["seeds"]; for v6.1 the seeds of loadgen/mlperf.conf, which
# mlcommons-loadgen 6.0.17 builds in.
ROUND_SEEDS: dict[str, int] = dict(inference_round(ROUND).seeds)
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline", "Interactive")
# Interactive is LoadGen's Server scenario under the model's "-interactive" key: its log says Server.
LOADGEN_SCENARIO = {"Interactive": "Server"}
# The checker's Config.uses_early_stopping: these scenarios must meet LoadGen's early-stopping
# criterion, and their min query count is then not checked.
EARLY_STOPPING_SCENARIOS = frozenset({"SingleStream", "MultiStream", "Server"})


# MLPerf's LLMs benchpipe serves, from the checker's Config.get_llm_models: their runs must time
# tokens, the edge one too, which has no Server scenario and so no TTFT/TPOT limits.
LLM_MODELS = frozenset({"llama3.1-8b", "llama3.1-8b-edge"})


@dataclass(frozen=True)
class ModelRules:
    """What the round requires of one model's performance runs."""

    mlperf_name: str | None  # the checker's model name; None: not an MLPerf model
    min_query_count: dict[str, int]
    offline_min_samples_per_query: int | None  # closed division only
    performance_sample_count: int | None
    server_latency_ns: int | None  # the p99 bound the Server run's target latency may not exceed
    llm: bool = False  # token latencies must be on (the checker's llm_check)
    # The round's scenario whose TTFT and TPOT p99 limits (ns) a Server-scenario log of this
    # LoadGen model is held to, and those limits: {"ttft": ..., "tpot": ...}; None: no limits.
    token_limits_scenario: str | None = None
    token_limits_ns: dict[str, int] | None = None


def _round_rules(mlperf_name: str, round_: str = ROUND, token_scenario: str | None = None) -> ModelRules:
    """A model's rules from the round's table (the checker's "min-queries",
    OFFLINE_MIN_SPQ_SINCE_V4, "performance-sample-count", "latency-constraint" and
    LLM_LATENCY_LIMITS): ``token_scenario`` names the limits its Server-scenario runs meet."""
    table = inference_round(round_)
    limits = table.llm_latency_limits_ns.get(mlperf_name)
    return ModelRules(
        mlperf_name=mlperf_name,
        min_query_count=dict(table.min_queries[mlperf_name]),
        offline_min_samples_per_query=table.offline_min_samples_per_query.get(mlperf_name),
        performance_sample_count=table.performance_sample_count.get(mlperf_name),
        server_latency_ns=table.latency_constraint_ns.get(mlperf_name, {}).get("Server"),
        llm=limits is not None or mlperf_name in LLM_MODELS,
        token_limits_scenario=token_scenario if limits and token_scenario in limits else None,
        token_limits_ns=dict(limits[token_scenario]) if limits and token_scenario in limits else None,
    )


# By LoadGen's model name: the checker's model_mapping makes "resnet" of LoadGen's resnet50 and
# "llama3.1-8b" of llama3_1-8b. Interactive runs LoadGen's Server scenario under its own key,
# whose limits are the round's Interactive ones.
MODEL_RULES: dict[str, ModelRules] = {
    "resnet50": _round_rules("resnet"),
    "llama3_1-8b": _round_rules("llama3.1-8b", token_scenario="Server"),
    "llama3_1-8b-interactive": _round_rules("llama3.1-8b", token_scenario="Interactive"),
    "llama3_1-8b-edge": _round_rules("llama3.1-8b-edge"),
}
# Models unknown to MLPerf: what LoadGen runs when user.conf leaves min_query_count alone
# (LoadGen's TestSettings default of 100; mlperf.conf's *.MultiStream.min_query_count = 662;
# Offline issues one query). Nothing else is required of them.
DEFAULT_RULES = ModelRules(
    mlperf_name=None,
    min_query_count={"SingleStream": 100, "MultiStream": 662, "Server": 100, "Offline": 1},
    offline_min_samples_per_query=None,
    performance_sample_count=None,
    server_latency_ns=None,
)
_MISSING = object()


def rules_for(loadgen_model: str) -> ModelRules:
    return MODEL_RULES.get(loadgen_model, DEFAULT_RULES)


class _Problems:
    """Collects '<path>: rule '<rule>': <what>' lines."""

    def __init__(self, detail: DetailLog, path: Path) -> None:
        self.detail = detail
        self.path = path
        self.lines: list[str] = []

    def add(self, rule: str, what: str) -> None:
        self.lines.append(f"{self.path}: rule '{rule}': {what}")

    def value(self, rule: str, key: str) -> Any:
        """The key's value, or _MISSING after recording the missing key against ``rule``."""
        value = self.detail.get(key, _MISSING)
        if value is _MISSING:
            self.add(rule, f"key '{key}' missing from the log")
        return value


# LoadGen's own recommendations for an INVALID run (mlcommons-loadgen 6.0.x, results.cc:
# PerformanceSummary::MinDurationMet and PerfConstraintsMet), as it writes them, each followed by
# a space, into result_invalid_reason.
RAISE_OFFLINE_QPS = "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
LOWER_EXPECTED_LATENCY = "Decrease the expected latency so the loadgen pre-generates more queries."
LOWER_SERVER_QPS = "Reduce target QPS to improve latency."
RAISE_SERVER_QPS = "Increase the target QPS so the loadgen pre-generates more queries."
EXITED_EARLY = "The test exited early, before enough queries were issued."
# The error LoadGen logs (error_runtime) beside LOWER_EXPECTED_LATENCY when a SingleStream or
# MultiStream run used up the queries it generated from the expected latency.
RAN_OUT_OF_QUERIES = "Ran out of generated queries to issue"


@dataclass(frozen=True)
class Recommendation:
    """A user.conf setting LoadGen's reason for an INVALID run names, and which way to move it."""

    key: str  # the user.conf key, as `<model>.<scenario>.<key> = value`
    lower: bool  # LoadGen asks for a lower value (True) or a higher one (False)
    text: str  # LoadGen's sentence


# Per scenario, the one recommendation a user.conf setting answers: the run's length or its
# load followed from a figure calibration measured on a host that then changed under it.
CORRECTABLE: dict[str, Recommendation] = {
    "Offline": Recommendation("target_qps", False, RAISE_OFFLINE_QPS),
    "SingleStream": Recommendation("target_latency", True, LOWER_EXPECTED_LATENCY),
    "MultiStream": Recommendation("target_latency", True, LOWER_EXPECTED_LATENCY),
    "Server": Recommendation("target_qps", True, LOWER_SERVER_QPS),
}
_RECOMMENDATIONS = (RAISE_OFFLINE_QPS, LOWER_EXPECTED_LATENCY, LOWER_SERVER_QPS, RAISE_SERVER_QPS, EXITED_EARLY)


def loadgen_recommendations(detail: DetailLog) -> tuple[list[str], str]:
    """(LoadGen's known sentences in result_invalid_reason, whatever text is left beside them)."""
    left = str(detail.get("result_invalid_reason") or "")
    found = []
    for sentence in _RECOMMENDATIONS:
        if sentence in left:
            found.append(sentence)
            left = left.replace(sentence, " ")
    return found, " ".join(left.split())


def correctable_recommendation(detail: DetailLog, scenario: str) -> Recommendation | None:
    """The setting LoadGen asks to move when that is all that made the run INVALID; else None.

    Only when LoadGen's reason is exactly the scenario's correctable recommendation, and its
    only errors are the out-of-queries error that comes with a SingleStream or MultiStream one:
    any other error, an early exit, or a reason LoadGen left empty (early stopping alone) is not
    a setting's doing. Early stopping may fail beside it: too few queries, or too many of them
    over the Server bound, are what the recommendation cures.
    """
    wanted = CORRECTABLE.get(scenario)
    if wanted is None or detail.get("result_validity") != "INVALID":
        return None
    found, left = loadgen_recommendations(detail)
    if found != [wanted.text] or left:
        return None
    if any(RAN_OUT_OF_QUERIES not in error for error in detail.errors):
        return None
    return wanted


def invalid_reason(detail: DetailLog) -> str:
    reason = str(detail.get("result_invalid_reason") or "").strip()
    if reason:
        return reason
    # LoadGen leaves the reason empty when only early stopping or the minimums failed.
    flags = {
        "result_min_duration_met": "min duration not met",
        "result_min_queries_met": "min query count not met",
        "early_stopping_met": "early stopping not met",
    }
    missed = [text for key, text in flags.items() if detail.get(key) is False]
    early = str(detail.get("early_stopping_result") or "").strip()
    if "early stopping not met" in missed and early:
        missed[missed.index("early stopping not met")] += f": {early}"
    return "; ".join(missed) or "no reason logged"


def _check_kind(p: _Problems, scenario: str | None, mode: str) -> None:
    if scenario is not None:
        found = p.value("scenario", "effective_scenario")
        if found is not _MISSING and found != scenario:
            p.add("scenario", f"the log is of a {found} run, expected {scenario}")
    found = p.value("test_mode", "effective_test_mode")
    if found is not _MISSING and found != mode:
        p.add("test_mode", f"the log is of a {found} run, expected {mode}")


def _check_errors(p: _Problems) -> None:
    errors = p.detail.errors
    if errors:
        p.add("loadgen_errors", f"{len(errors)} LoadGen error(s), the first: {errors[0]}")


def _check_validity(p: _Problems) -> None:
    validity = p.value("result_validity", "result_validity")
    if validity is not _MISSING and validity != "VALID":
        p.add("result_validity", f"{validity} ({invalid_reason(p.detail)})")


def _check_seeds(p: _Problems) -> None:
    for name, expected in ROUND_SEEDS.items():
        found = p.value("rng_seeds", f"effective_{name}")
        if found is not _MISSING and found != expected:
            p.add("rng_seeds",
                  f"effective_{name} is {found}, the {ROUND} rules need {expected} (leave it to mlperf.conf)")


def _check_duration(p: _Problems, official: bool, min_duration_ms: int) -> None:
    found = p.value("min_duration", "effective_min_duration_ms")
    if found is _MISSING:
        return
    if official and found < OFFICIAL_MIN_DURATION_MS:
        p.add("min_duration",
              f"effective_min_duration_ms is {found}, an official run needs at least {OFFICIAL_MIN_DURATION_MS}")
    elif not official and found != min_duration_ms:
        p.add("min_duration", f"effective_min_duration_ms is {found}, the development run asked for {min_duration_ms}")


def _check_query_count(p: _Problems, scenario: str, official: bool, rules: ModelRules, division: str) -> None:
    if not official:
        met = p.value("min_query_count", "result_min_queries_met")
        if met is not _MISSING and met is not True:
            p.add("min_query_count",
                  "result_min_queries_met is false: the run issued fewer queries than min_query_count")
        return
    # As the checker: the minimum applies where early stopping does not decide the run's length.
    if scenario not in EARLY_STOPPING_SCENARIOS:
        required = rules.min_query_count.get(scenario)
        found = p.value("min_query_count", "effective_min_query_count")
        if required and found is not _MISSING and found < required:
            p.add("min_query_count", f"effective_min_query_count is {found}, the rules need at least {required}")
    needed = rules.offline_min_samples_per_query
    if scenario == "Offline" and needed and division == "closed":
        found = p.value("offline_samples_per_query", "effective_samples_per_query")
        if found is not _MISSING and found < needed:
            p.add("offline_samples_per_query",
                  f"effective_samples_per_query is {found}, the closed division needs at least {needed}")


def _check_sample_count(p: _Problems, official: bool, rules: ModelRules) -> None:
    needed = rules.performance_sample_count
    if not (official and needed):
        return
    found = p.value("performance_sample_count", "effective_performance_sample_count")
    if found is not _MISSING and found < needed:
        p.add("performance_sample_count",
              f"effective_performance_sample_count is {found}, the rules need at least {needed}")


def _check_latency(p: _Problems, scenario: str, rules: ModelRules) -> None:
    if scenario in EARLY_STOPPING_SCENARIOS:
        met = p.value("early_stopping", "early_stopping_met")
        if met is not _MISSING and met is not True:
            result = str(p.detail.get("early_stopping_result") or "").strip()
            p.add("early_stopping", f"early_stopping_met is false ({result or 'no early_stopping_result'})")
    if scenario == "Server" and rules.server_latency_ns:
        # The checker compares the target LoadGen's early stopping held the p99 latency to.
        found = p.value("server_latency_bound", "effective_target_latency_ns")
        if found is not _MISSING and found > rules.server_latency_ns:
            p.add(
                "server_latency_bound",
                f"effective_target_latency_ns is {found}, above the {rules.server_latency_ns / 1e6:g} ms "
                f"p99 bound of {rules.mlperf_name}",
            )


def _check_token_latencies(p: _Problems, scenario: str, rules: ModelRules) -> None:
    """An LLM's: token latencies on, and in the Server scenario (Interactive's too) the TTFT and
    TPOT p99s strictly below the round's limits, as the checker's llm_check compares them."""
    if not rules.llm:
        return
    # LoadGen logs the key only when token latencies were asked for.
    requested = p.detail.get("requested_use_token_latencies")
    if requested is not True:
        said = "not logged" if requested is None else f"{requested}"
        p.add("token_latencies", f"requested_use_token_latencies is {said}: an LLM's runs must time tokens "
              "(user.conf: use_token_latencies = 1)")
    if scenario != "Server" or not rules.token_limits_ns:
        return
    where = f"{rules.mlperf_name} {rules.token_limits_scenario}'s"
    for name, key in (("ttft", "result_first_token_99.00_percentile_latency_ns"),
                      ("tpot", "result_time_per_output_token_99.00_percentile_ns")):
        found, limit = p.value(f"{name}_limit", key), rules.token_limits_ns[name]
        if found is _MISSING or found is None:
            continue
        if found >= limit:
            verb = "exceeds" if found > limit else "equals (must be below)"
            p.add(f"{name}_limit", f"{name.upper()} p99 {found / 1e6:.1f} ms ({key} {found}) {verb} "
                  f"{where} {limit / 1e6:g} ms limit")


def _check_audit(p: _Problems, compliance_test: str | None, loadgen_model: str) -> None:
    if compliance_test is None:
        # An audit.config found by LoadGen (e.g. left in the working directory) silently
        # turns a submission run into a compliance run.
        found = [w for w in p.detail.warnings if "Audit Config" in w]
        if found:
            p.add("audit_config", f"LoadGen applied an audit.config to this submission run ({found[0]})")
        return
    if compliance_test not in RUNNABLE_COMPLIANCE_TESTS:
        raise ValidationError(
            f"compliance test '{compliance_test}' is not one of {', '.join(RUNNABLE_COMPLIANCE_TESTS)}")
    expected_settings = (test06_effective_settings() if compliance_test == "TEST06"
                         else expected_effective_settings(compliance_test, loadgen_model))
    for key, expected in expected_settings.items():
        found = p.value("audit_config", key)
        if found is not _MISSING and found != expected:
            p.add("audit_config",
                  f"{key} is {found}, {compliance_test}'s audit.config sets {expected}: it did not take effect")


def test06_effective_settings() -> dict[str, Any]:
    """The ``effective_*`` values a detail log shows when TEST06's audit.config took effect."""
    from benchpipe.infer.llm_run import TEST06_SETTINGS

    return {
        "effective_test_mode": "PerformanceOnly",
        "effective_accuracy_log_rng_seed": TEST06_SETTINGS["accuracy_log_rng_seed"],
        "effective_accuracy_log_sampling_target": TEST06_SETTINGS["accuracy_log_sampling_target"],
        "effective_min_query_count": TEST06_SETTINGS["min_query_count"],
        "effective_min_duration_ms": TEST06_SETTINGS["min_duration"],
        "effective_sample_concatenate_permutation": bool(TEST06_SETTINGS["sample_concatenate_permutation"]),
    }


def check_performance(
    detail: DetailLog,
    path: Path,
    *,
    scenario: str,
    official: bool,
    min_duration_ms: int,
    loadgen_model: str,
    division: str = "closed",
    compliance_test: str | None = None,
    rules: ModelRules | None = None,
) -> list[str]:
    """Problems of one performance run's detail log (empty: none).

    ``compliance_test`` ("TEST01", "TEST04", "TEST06") for a compliance run: its audit settings
    must show in the log; None for a submission run: no audit.config may have been applied.
    ``loadgen_model`` is the key the run was configured under: an LLM's Interactive scenario
    runs under its "-interactive" key, whose rules hold the Interactive limits.

    TEST06 logs every response of at least 100 queries with no minimum duration: it checks
    outputs, not timing, so its run is not required to be VALID, nor its duration, early
    stopping or token latencies to meet the submission run's rules.

    ``rules``: the model's rules, by default the round's for ``loadgen_model``.
    """
    if scenario not in SCENARIOS:
        raise ValidationError(f"scenario '{scenario}' is not one of {', '.join(SCENARIOS)}")
    rules = rules or rules_for(loadgen_model)
    run_scenario = LOADGEN_SCENARIO.get(scenario, scenario)
    p = _Problems(detail, path)
    timed = compliance_test != "TEST06"
    _check_kind(p, run_scenario, "PerformanceOnly")
    if timed:
        _check_validity(p)
    _check_errors(p)
    _check_seeds(p)
    if timed:
        _check_duration(p, official, min_duration_ms)
        _check_query_count(p, run_scenario, official, rules, division)
        _check_sample_count(p, official, rules)
        _check_latency(p, run_scenario, rules)
        _check_token_latencies(p, run_scenario, rules)
    _check_audit(p, compliance_test, loadgen_model)
    return p.lines


def check_accuracy(detail: DetailLog, path: Path) -> list[str]:
    """Problems of one accuracy run's detail log: the mode, no LoadGen errors, no audit.config."""
    p = _Problems(detail, path)
    _check_kind(p, None, "AccuracyOnly")
    _check_errors(p)
    _check_audit(p, None, "")
    return p.lines
