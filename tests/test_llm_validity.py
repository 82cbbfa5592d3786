"""benchpipe's rules on real LLM LoadGen logs (tests/llm_logs.py): token latencies, the round's
TTFT and TPOT limits per scenario, TEST06's run and its verification, MLCommons' and benchpipe's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from llm_decoders import EOS
from llm_logs import run_llm_loadgen

from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.layout import ACCURACY_LOG, DETAIL_LOG, VERIFY_ACCURACY
from benchpipe.infer.compliance import verify_test06
from benchpipe.infer.llm_run import audit_config_test06
from benchpipe.infer.validity import check_performance, rules_for
from benchpipe.mlcommons import compliance_tests as official
from benchpipe.results.loadgen_parser import TPOT_P99, TTFT_P99, parse_detail_log
from benchpipe.results.tables import loadgen_fields

pytestmark = pytest.mark.slow

MIN_MS = 1000
# Early stopping for TTFT and TPOT at p99 needs about 460 queries with none over the bound.
SERVER = {"target_qps": 200, "min_duration": MIN_MS, "min_query_count": 600}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("llm-validity")
    audit = tmp / "TEST06.audit.config"
    audit.write_text(audit_config_test06())
    plan = {
        "server": dict(conf=SERVER),
        "interactive": dict(model="llama3_1-8b-interactive", conf=SERVER),
        "no_tokens": dict(conf={**SERVER, "use_token_latencies": 0}),
        "TEST06": dict(conf=SERVER, audit_config=audit),
        "offline": dict(scenario="Offline", conf={"target_qps": 2000, "min_duration": MIN_MS}),
    }
    return {name: run_llm_loadgen(tmp / name, **kwargs) for name, kwargs in plan.items()}


def _check(runs, name: str, scenario: str = "Server", model: str = "llama3_1-8b", **kwargs) -> list[str]:
    path = runs[name] / DETAIL_LOG
    return check_performance(parse_detail_log(path), path, scenario=scenario, official=False,
                             min_duration_ms=MIN_MS, loadgen_model=model, division="open", **kwargs)


def test_rules_hold_the_rounds_token_limits_per_loadgen_key():
    server, interactive, edge = rules_for("llama3_1-8b"), rules_for("llama3_1-8b-interactive"), rules_for(
        "llama3_1-8b-edge")
    assert (server.mlperf_name, server.token_limits_scenario, server.token_limits_ns) == (
        "llama3.1-8b", "Server", {"ttft": 2_000_000_000, "tpot": 100_000_000})
    assert (interactive.mlperf_name, interactive.token_limits_scenario, interactive.token_limits_ns) == (
        "llama3.1-8b", "Interactive", {"ttft": 500_000_000, "tpot": 30_000_000})
    assert edge.llm and edge.token_limits_ns is None


def test_server_and_interactive_runs_within_the_limits_pass(runs):
    assert _check(runs, "server") == []
    assert _check(runs, "interactive", scenario="Interactive", model="llama3_1-8b-interactive") == []
    assert _check(runs, "offline", scenario="Offline") == []


def test_a_tpot_p99_above_a_tightened_limit_is_refused_naming_limit_and_measurement(runs):
    detail = parse_detail_log(runs["server"] / DETAIL_LOG)
    tpot, ttft = detail.get(TPOT_P99), detail.get(TTFT_P99)
    assert tpot >= 2_000_000  # a token every 2 ms step
    limit = tpot // 2
    tight = replace(rules_for("llama3_1-8b"), token_limits_ns={"ttft": ttft * 10, "tpot": limit})
    path = runs["server"] / DETAIL_LOG
    problems = check_performance(detail, path, scenario="Server", official=False, min_duration_ms=MIN_MS,
                                 loadgen_model="llama3_1-8b", division="open", rules=tight)
    assert len(problems) == 1, problems
    assert "rule 'tpot_limit'" in problems[0]
    assert f"TPOT p99 {tpot / 1e6:.1f} ms" in problems[0]
    assert f"exceeds llama3.1-8b Server's {limit / 1e6:g} ms limit" in problems[0]


def test_interactive_is_held_to_its_own_limits_not_servers(runs):
    detail = parse_detail_log(runs["interactive"] / DETAIL_LOG)
    tpot = detail.get(TPOT_P99)
    # The same log under Interactive's rules with a TPOT limit below it: refused as Interactive's.
    tight = replace(rules_for("llama3_1-8b-interactive"), token_limits_ns={"ttft": 10**12, "tpot": tpot - 1})
    path = runs["interactive"] / DETAIL_LOG
    [problem] = check_performance(detail, path, scenario="Interactive", official=False, min_duration_ms=MIN_MS,
                                  loadgen_model="llama3_1-8b-interactive", division="open", rules=tight)
    assert "llama3.1-8b Interactive's" in problem and "rule 'tpot_limit'" in problem


def test_token_latencies_must_be_on(runs):
    problems = _check(runs, "no_tokens")
    assert any("rule 'token_latencies'" in p and "requested_use_token_latencies is not logged" in p for p in problems)


def test_test06_need_not_be_valid_but_its_audit_config_must_show(runs):
    detail = parse_detail_log(runs["TEST06"] / DETAIL_LOG)
    assert detail.get("effective_accuracy_log_sampling_target") == 100
    assert _check(runs, "TEST06", compliance_test="TEST06") == []
    # The same log as a submission run: an audit.config applied, and its minimum duration 0.
    problems = _check(runs, "TEST06")
    assert any("rule 'audit_config'" in p for p in problems)
    assert any("rule 'min_duration'" in p for p in problems)


def test_the_tables_hold_token_figures_and_the_checkers_metric(runs):
    server = loadgen_fields("Server", "performance", runs["server"] / DETAIL_LOG, Path("none"))
    detail = parse_detail_log(runs["server"] / DETAIL_LOG)
    assert server["result_key"] == "result_completed_tokens_per_second"
    assert server["result_tokens_per_s"] == detail.get("result_completed_tokens_per_second") > 0
    assert server["result_samples_per_s"] is None
    assert (server["ttft_p99_ns"], server["tpot_p99_ns"]) == (detail.get(TTFT_P99), detail.get(TPOT_P99))
    offline = loadgen_fields("Offline", "performance", runs["offline"] / DETAIL_LOG, Path("none"))
    assert offline["result_key"] == "result_tokens_per_second"
    assert offline["ttft_p99_ns"] is None and offline["tokens_per_second"] > 0


def test_test06_verified_by_mlcommons_and_by_benchpipe(runs, tmp_path, inference_checkout):
    theirs = official.verify_test06(inference_checkout, test_dir=runs["TEST06"], output_dir=tmp_path / "out",
                                    scenario="Server", eos_token_id=EOS)
    ours = verify_test06(test_dir=runs["TEST06"], scenario="Server", eos_token_ids=(EOS,))
    assert theirs.passed and ours.passed, (theirs.output, ours.reasons)
    assert [c.line for c in theirs.checks] == [
        "First token check pass: True", "EOS check pass: True", "Sample length check pass: True"]
    assert theirs.tree_path.endswith("/{scenario}/TEST06")
    assert (theirs.folder / "accuracy" / ACCURACY_LOG).is_file()
    # benchpipe's file says what the script's says, under its own label.
    assert (theirs.folder / VERIFY_ACCURACY).read_text().splitlines() == (
        ours.files[VERIFY_ACCURACY].splitlines()[1:])


def test_a_doubled_end_of_sequence_fails_benchpipes_check(runs, tmp_path):
    entries = json.loads((runs["TEST06"] / ACCURACY_LOG).read_text())
    tokens = np.frombuffer(bytes.fromhex(entries[0]["data"]), dtype="<i4")
    doubled = np.append(tokens, EOS).astype("<i4")
    entries[0].update(data=doubled.tobytes().hex().upper(), token_count=len(doubled))
    (tmp_path / ACCURACY_LOG).write_text(json.dumps(entries))
    ours = verify_test06(test_dir=tmp_path, scenario="Server", eos_token_ids=(EOS,))
    assert not ours.passed
    assert "EOS check pass: False" in ours.files[VERIFY_ACCURACY]
    assert any("end with more than one end-of-sequence token" in r for r in ours.reasons)


def test_a_verify_file_with_anything_else_is_an_error(tmp_path):
    path = tmp_path / VERIFY_ACCURACY
    path.write_text("First token check pass: True\nEOS check pass: True\nSample length check pass: True\n"
                    "Unexpected error occured while doing the EOS check\nTEST06 verification complete\n")
    with pytest.raises(ValidationError, match="unexpected line 'Unexpected error"):
        official._test06_verdicts(Path("run_verification.py"), path)
    path.write_text("First token check pass: True\nEOS check pass: False\nSample length check pass: True\n"
                    "TEST06 verification complete\n")
    with pytest.raises(ValidationError, match="contradicts its checks"):
        official._test06_verdicts(Path("run_verification.py"), path)
