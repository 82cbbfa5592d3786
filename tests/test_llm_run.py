"""llama31_8b's LoadGen pieces: generation limits from the checkpoint, user.conf, TEST06's audit.config,
and the stand-in checkpoint that development runs serve."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchpipe.contracts import registry
from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.records import RunKind
from benchpipe.infer.llm_calibrate import LLMCalibration, TokenLimits
from benchpipe.infer.llm_run import audit_config_test06, generation_limits, llm_user_conf, token_limits

TASK = registry.get("llama31_8b").inference
EDGE = registry.get("llama31_8b_edge").inference
DEVELOPMENT = RunKind(official=False, min_duration_ms=5000, accuracy_samples=64)


def test_the_checkpoint_names_its_end_tokens_and_a_development_run_its_output_limit(tmp_path):
    assert generation_limits(TASK, tmp_path, official=False).eos_token_ids == (128001, 128008, 128009)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 7, "max_new_tokens": 32}))
    limits = generation_limits(TASK, tmp_path, official=False)
    assert (limits.eos_token_ids, limits.max_output_tokens, limits.min_output_tokens) == ((7,), 32, 2)
    # An official run keeps the reference's 2,000.
    assert generation_limits(TASK, tmp_path, official=True).max_output_tokens == 2000
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": ["x"]}))
    with pytest.raises(InferenceError, match="generation_config.json: eos_token_id must be"):
        generation_limits(TASK, tmp_path, official=False)


def test_token_limits_are_the_rounds():
    assert token_limits(TASK, "Server") == TokenLimits(2_000_000_000, 100_000_000)
    assert token_limits(TASK, "Interactive") == TokenLimits(500_000_000, 30_000_000)
    assert token_limits(EDGE, "SingleStream") is None


def test_interactive_runs_as_server_under_the_interactive_key_with_token_latencies():
    calibration = LLMCalibration("Interactive", 8, "continuous", offline_qps=50.0, offline_tokens_per_s=400.0,
                                 server_target_qps=12.345, limits=TokenLimits(500_000_000, 30_000_000))
    conf = llm_user_conf(TASK, "Interactive", DEVELOPMENT, calibration, 64)
    settings = [line for line in conf.splitlines() if not line.startswith("#")]
    assert settings == [
        "llama3_1-8b-interactive.Server.use_token_latencies = 1",
        "llama3_1-8b-interactive.Server.min_duration = 5000",
        "llama3_1-8b-interactive.Server.performance_sample_count_override = 64",
        "llama3_1-8b-interactive.Server.target_qps = 12.35",
        "llama3_1-8b-interactive.Server.min_query_count = 600",
    ]
    offline = llm_user_conf(EDGE, "Offline", DEVELOPMENT, calibration, 64)
    assert "llama3_1-8b-edge.Offline.target_qps = 100.0" in offline  # 2 x the measured rate
    with pytest.raises(Exception, match="no Interactive scenario"):
        llm_user_conf(EDGE, "Interactive", DEVELOPMENT, calibration, 64)


def test_the_test06_audit_config_is_the_published_one(inference_checkout):
    def settings(text: str) -> dict[str, str]:
        pairs = (line.split("#")[0].split("=") for line in text.splitlines())
        return {key.strip(): value.strip() for key, value in (p for p in pairs if len(p) == 2)}

    published = settings((inference_checkout / "compliance/TEST06/audit.config").read_text())
    assert settings(audit_config_test06()) == published


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    """The generated CNN/DailyMail (data/), prepared (prepared/), and the stand-in checkpoint (model/)."""
    from benchpipe.benchmarks.llama import cnndm
    from benchpipe.benchmarks.llama.cnndm_stand_in import write_stand_in
    from benchpipe.benchmarks.llama.stand_in_model import write_stand_in_checkpoint
    from benchpipe.contracts.benchmark import Source
    from benchpipe.contracts.hashing import sha256_file

    root = tmp_path_factory.mktemp("stand-in-llm")
    written = write_stand_in(root / "data")
    write_stand_in_checkpoint(written[cnndm.EVAL_FILE], written[cnndm.TOKENIZER_FILE], root / "model")
    sources = [Source(name, path.resolve().as_uri(), sha256_file(path)) for name, path in written.items()]
    cnndm.prepare(sources, root / "prepared", root / "cache", benchmark="llama3.1-8b")
    return root


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.llm
def test_an_offline_run_calibrated_far_too_low_is_corrected_and_ends_valid(stand_in, tmp_path):
    from benchpipe.infer.llm_run import calibrate_llm_scenario, run_llm_test
    from benchpipe.infer.models import checkpoint_sha256, supplied_checkpoint
    from benchpipe.results.loadgen_parser import parse_detail_log

    benchmark = registry.get("llama31_8b")
    model = supplied_checkpoint(stand_in / "model", checkpoint_sha256(stand_in / "model"), "llama31_8b")
    kind = RunKind(official=False, min_duration_ms=1000, accuracy_samples=32)
    calibrate_llm_scenario(benchmark, stand_in / "prepared", model, "Offline", kind, tmp_path / "calibrate")
    conf = tmp_path / "calibrate/user.conf"
    # A tenth of the calibrated rate: LoadGen's one query ends before min_duration (INVALID).
    calibrated = float(re.search(r"Offline.target_qps = ([\d.]+)", conf.read_text()).group(1))
    conf.write_text(re.sub(r"(Offline.target_qps = )[\d.]+", rf"\g<1>{calibrated / 10:.2f}", conf.read_text()))
    run_llm_test(benchmark, stand_in / "prepared", "Offline", "performance", tmp_path / "calibrate", tmp_path / "run")
    assert parse_detail_log(tmp_path / "run/mlperf_log_detail.txt").get("result_validity") == "VALID"
    attempts = json.loads((tmp_path / "run/provenance.json").read_text())["attempts"]
    assert [a["result_validity"] for a in attempts] == ["INVALID", "VALID"]
    assert attempts[0]["correction"]["key"] == "target_qps"
    assert attempts[0]["correction"]["after"] > calibrated / 10
    assert (tmp_path / "run/attempts/1/mlperf_log_detail.txt").is_file()
    assert f"target_qps = {attempts[0]['correction']['after']}" in (tmp_path / "run/user.conf").read_text()


@pytest.mark.slow
def test_the_stand_in_checkpoint_round_trips_and_summarises(stand_in):
    from benchpipe.benchmarks.llama.checkpoint import load_checkpoint, read_shape
    from benchpipe.benchmarks.llama.cnndm import EVAL_FILE, TOKENIZER_FILE, load_tokenizer, read_reference
    from benchpipe.benchmarks.llama.generate import KVCacheDecoder
    from benchpipe.benchmarks.llama.model import build_llama

    tmp_path = stand_in
    config = json.loads((tmp_path / "model/generation_config.json").read_text())
    tokenizer = load_tokenizer(tmp_path / "data" / TOKENIZER_FILE)
    assert config["eos_token_id"] == [tokenizer.token_to_id("<|end_of_text|>")]
    # The checkpoint reader builds the same model back: identical logits.
    model = build_llama(read_shape(tmp_path / "model"))
    load_checkpoint(model, tmp_path / "model")
    data = read_reference(tmp_path / "data" / EVAL_FILE, tokenizer.get_vocab_size())
    decoder = KVCacheDecoder(model, slots=4, max_sequence_length=80)
    eos = config["eos_token_id"][0]
    exact = 0
    for start in range(0, 16, 4):
        slots = list(range(4))
        out = [[int(t)] for t in decoder.prefill(slots, [data.prompt(start + k) for k in slots])]
        for _ in range(20):
            following = decoder.step(slots, np.array([o[-1] for o in out], np.int32))
            for o, t in zip(out, following):
                if o[-1] != eos:
                    o.append(int(t))
        for k, o in enumerate(out):
            exact += tokenizer.decode(o, skip_special_tokens=True).strip() == data.targets[start + k].strip()
    assert exact >= 14, f"{exact} of 16 summaries reproduced"
