"""LoadGen tests of an LLM benchmark (llama3.1-8b): a calibration per scenario, then each test.

The same flow as ``loadgen_run`` for classifiers, with an LLM's pieces: the QSL holds
prompts (``PromptLibrary``), the SUT schedules generation (``LLMSUT``) over a KV-cache
decoder of the served checkpoint, token latencies are on, Interactive runs as LoadGen's
Server scenario under the model's ``-interactive`` key, and the accuracy run is scored with
the reference's ROUGE and generated length (``llm_accuracy``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.benchmark import Benchmark, LLMInferenceTask
from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.layout import AUDIT_CONFIG, CALIBRATION, DETAIL_LOG, USER_CONF
from benchpipe.contracts.records import RunKind, ServedModel, read_model_record
from benchpipe.contracts.rounds import ROUND, inference_round
from benchpipe.infer.decoding import GenerationLimits
from benchpipe.infer.llm_calibrate import LLM_SCENARIOS, LOADGEN_SCENARIO, LLMCalibration, TokenLimits, calibrate_llm
from benchpipe.infer.llm_sut import LLMSUT, PromptLibrary

LLM_MODES = ("performance", "accuracy", "TEST06")
GENERATION_CONFIG = "generation_config.json"
OFFLINE_QPS_HEADROOM = 2.0  # as for classifiers (loadgen_run): a target below the real rate is INVALID
LATENCY_HEADROOM = 0.5
# Server and Interactive: LoadGen's early stopping for TPOT at p99 needs 459 queries with none
# over the limit; a development run asks for more than that whatever its duration.
DEVELOPMENT_SERVER_QUERIES = 600
CALIBRATION_BUDGET_S = 90.0
# TEST06's audit.config (compliance/TEST06 of mlcommons/inference): a performance-mode run
# that logs every response (sampling target 100 %), at least 100 queries, equal issue off.
TEST06_SETTINGS = {
    "mode": 2, "accuracy_log_rng_seed": 720381539243781796, "accuracy_log_sampling_target": 100,
    "min_query_count": 100, "min_duration": 0, "sample_concatenate_permutation": 0,
}


def llm_task(benchmark: Benchmark) -> LLMInferenceTask:
    task = benchmark.inference
    if not isinstance(task, LLMInferenceTask):
        raise InferenceError(f"{benchmark.name} is not an LLM benchmark")
    return task


def generation_limits(task: LLMInferenceTask, checkpoint: Path, official: bool) -> GenerationLimits:
    """The reference's limits; the checkpoint's generation_config.json names its own EOS ids and,
    outside an official run, may shorten the output (a stand-in's ``max_new_tokens``)."""
    path = checkpoint / GENERATION_CONFIG
    eos, longest = task.eos_token_ids, task.max_output_tokens
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InferenceError(f"{path}: cannot read: {exc}") from exc
        found = config.get("eos_token_id", list(eos))
        eos = tuple(found) if isinstance(found, list) else (found,)
        if not all(isinstance(t, int) for t in eos):
            raise InferenceError(f"{path}: eos_token_id must be an id or a list of ids, not {found!r}")
        if not official and isinstance(config.get("max_new_tokens"), int):
            longest = min(longest, config["max_new_tokens"])
    return GenerationLimits(longest, eos)


def token_limits(task: LLMInferenceTask, scenario: str, round_: str = ROUND) -> TokenLimits | None:
    """The round's TTFT and TPOT p99 limits of ``scenario`` (the checker's LLM_LATENCY_LIMITS)."""
    limits = inference_round(round_).llm_latency_limits_ns.get(task.official_name, {}).get(scenario)
    return TokenLimits(int(limits["ttft"]), int(limits["tpot"])) if limits else None


def prompt_library(benchmark: Benchmark, data_dir: Path, kind: RunKind):
    """(PromptLibrary, the dataset): a development run's first ``accuracy_samples`` prompts."""
    from benchpipe.benchmarks.llama.cnndm import load_prepared

    data = load_prepared(data_dir)
    count = len(data) if kind.accuracy_samples is None else min(len(data), kind.accuracy_samples)
    prompts = PromptLibrary([data.prompt(i) for i in range(count)], f"{data_dir} ({benchmark.name})")
    return prompts, data


def decoder(checkpoint: Path, slots: int, prompts: PromptLibrary, limits: GenerationLimits):
    """A KV-cache decoder of the checkpoint, long enough for the longest prompt and its output."""
    from benchpipe.benchmarks.llama.generate import KVCacheDecoder

    longest = max(len(prompts.prompt(i)) for i in range(prompts.total))
    # Prefill graphs only up to the longest prompt: warm_up traces each bucket once.
    buckets = [16]
    while buckets[-1] < longest:
        buckets.append(buckets[-1] * 2)
    generator = KVCacheDecoder.from_checkpoint(checkpoint, slots, longest + limits.max_output_tokens,
                                               prompt_buckets=buckets)
    generator.warm_up()  # every graph traced now, none inside a measurement
    return generator


def _line(prefix: str, key: str, value: Any) -> str:
    return f"{prefix}.{key} = {value}"


def llm_user_conf(task: LLMInferenceTask, scenario: str, kind: RunKind, calibration: LLMCalibration,
                  sample_count: int) -> str:
    """The user.conf of every test of this scenario, the calibration's figures in comments."""
    prefix = f"{task.loadgen_model_for(scenario)}.{LOADGEN_SCENARIO[scenario]}"
    lines = [f"# benchpipe {kind.label}", _line(prefix, "use_token_latencies", 1),
             _line(prefix, "min_duration", kind.min_duration_ms)]
    if not kind.official:
        # The development subset stands for the dataset: LoadGen draws from these prompts only.
        lines.append(_line(prefix, "performance_sample_count_override", sample_count))
    if scenario == "Offline":
        lines.append(f"# {calibration.offline_qps:.2f} samples/s ({calibration.offline_tokens_per_s:.1f} tokens/s) "
                     f"measured; target {OFFLINE_QPS_HEADROOM} x that")
        lines.append(_line(prefix, "target_qps", round(calibration.offline_qps * OFFLINE_QPS_HEADROOM, 2)))
        if not kind.official:
            # mlperf.conf asks the whole dataset of one Offline query; the subset stands for it.
            lines.append(_line(prefix, "min_query_count", sample_count))
    elif scenario == "SingleStream":
        measured = calibration.single_stream_latency_ns
        lines.append(f"# {measured / 1e6:.3f} ms measured; target {LATENCY_HEADROOM} x that")
        lines.append(_line(prefix, "target_latency", round(max(measured * LATENCY_HEADROOM / 1e6, 0.001), 3)))
    else:
        limits = calibration.limits
        lines.append(f"# the highest VALID rate found: {calibration.server_target_qps:.2f} queries/s "
                     f"(TTFT p99 limit {limits.ttft_ns / 1e6:g} ms, TPOT {limits.tpot_ns / 1e6:g} ms)")
        lines.append(_line(prefix, "target_qps", round(calibration.server_target_qps, 2)))
        if not kind.official:
            lines.append(_line(prefix, "min_query_count", DEVELOPMENT_SERVER_QUERIES))
    return "\n".join(lines) + "\n"


def calibrate_llm_scenario(benchmark: Benchmark, data_dir: Path, model: ServedModel, scenario: str, kind: RunKind,
                           out_dir: Path, *, slots: int | None = None) -> None:
    """Measure the served checkpoint under ``scenario``; write calibration.json and user.conf."""
    task = llm_task(benchmark)
    if scenario not in LLM_SCENARIOS:
        raise InferenceError(f"{benchmark.name}: scenario '{scenario}' is not one of {', '.join(LLM_SCENARIOS)}")
    checkpoint = Path(model.path)
    limits = generation_limits(task, checkpoint, kind.official)
    with atomic_dir(out_dir) as tmp:
        prompts, _ = prompt_library(benchmark, data_dir, kind)
        started = time.perf_counter()
        calibration = calibrate_llm(
            scenario, lambda: decoder(checkpoint, slots or task.slots, prompts, limits), prompts, limits,
            performance_count=prompts.total, token_limits=token_limits(task, scenario),
            what=f"{task.official_name}", budget_s=CALIBRATION_BUDGET_S)
        record = {
            "kind": asdict(kind),
            "scenario": scenario,
            "llm_calibration": calibration.to_dict(),
            "generation": asdict(limits),
            "seconds": round(time.perf_counter() - started, 2),
            "samples": prompts.total,
        }
        (tmp / CALIBRATION).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (tmp / USER_CONF).write_text(llm_user_conf(task, scenario, kind, calibration, prompts.total))
        model.write(tmp)
        provenance.write(tmp, data_dir)


def read_llm_calibration(directory: Path) -> tuple[RunKind, LLMCalibration, GenerationLimits]:
    path = directory / CALIBRATION
    try:
        record = json.loads(path.read_text())
        generation = record["generation"]
        limits = GenerationLimits(generation["max_output_tokens"], tuple(generation["eos_token_ids"]),
                                  generation["min_output_tokens"])
        return RunKind(**record["kind"]), LLMCalibration.from_dict(record["llm_calibration"]), limits
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InferenceError(f"{path}: cannot read the LLM calibration: {exc}") from exc


def _settings(task: LLMInferenceTask, scenario: str, mode: str, conf: Path):
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    # FromConfig once per process: a second call logs an error that invalidates the run.
    if settings.FromConfig(str(conf), task.loadgen_model_for(scenario), LOADGEN_SCENARIO[scenario]) != 0:
        raise InferenceError(f"{conf}: LoadGen rejected the configuration")
    settings.scenario = getattr(lg.TestScenario, LOADGEN_SCENARIO[scenario])
    settings.mode = lg.TestMode.AccuracyOnly if mode == "accuracy" else lg.TestMode.PerformanceOnly
    return settings


def audit_config_test06() -> str:
    """TEST06's audit.config, from the published values (compliance/TEST06/audit.config)."""
    lines = [f"# TEST06 audit.config, MLPerf Inference {ROUND} (compliance/TEST06/audit.config).",
             "# LoadGen applies it on top of user.conf; it reads it for model '*', hence '*.' keys."]
    return "\n".join([*lines, *(f"*.*.{key} = {value}" for key, value in TEST06_SETTINGS.items())]) + "\n"


def run_llm_test(benchmark: Benchmark, data_dir: Path, scenario: str, mode: str, calibration_dir: Path,
                 out_dir: Path) -> None:
    """One LoadGen test with the scenario's calibrated user.conf, serving the calibrated checkpoint.

    A performance run that LoadGen judges INVALID for a setting it names is corrected and run
    again, each attempt in a fresh process, as a classifier's (``loadgen_run.performance_attempts``).
    """
    from benchpipe.infer.loadgen_run import LoadGenTest, performance_attempts, spawned

    llm_task(benchmark)
    if mode not in LLM_MODES:
        raise InferenceError(f"{benchmark.name}: mode '{mode}' is not one of {', '.join(LLM_MODES)}")
    read_llm_calibration(calibration_dir)  # refused here, before any work, if unreadable
    model = read_model_record(calibration_dir)
    if not Path(model.path).is_dir():
        raise InferenceError(f"{calibration_dir / 'model.json'}: the calibrated checkpoint {model.path} is gone: "
                             "re-run calibrate")
    conf = (calibration_dir / USER_CONF).read_text()
    what = f"{benchmark.name} {scenario} {mode}"
    with atomic_dir(out_dir) as tmp:
        attempts = None
        if mode == "performance":
            def attempt(text: str, log_dir: Path) -> None:
                spawned(_attempt_in_child, what, log_dir, benchmark.name, data_dir, scenario, mode, calibration_dir,
                        text, log_dir, _thread_counts())

            attempts = performance_attempts(
                benchmark, data_dir, LoadGenTest(LOADGEN_SCENARIO[scenario], mode), calibration_dir, conf, tmp,
                attempt=attempt, loadgen_model=llm_task(benchmark).loadgen_model_for(scenario))
            require_valid(tmp / DETAIL_LOG, what)  # and no LoadGen error in the VALID attempt
        else:
            llm_attempt(benchmark, data_dir, scenario, mode, calibration_dir, conf, tmp)
            # TEST06 checks the logged outputs, not the timing: its audit.config's 100 queries
            # and no minimum duration leave LoadGen's early stopping unmet by design.
            require_valid(tmp / DETAIL_LOG, what, timed=False)
        (tmp / CALIBRATION).write_bytes((calibration_dir / CALIBRATION).read_bytes())
        model.write(tmp)
        provenance.write(tmp, data_dir, attempts=attempts)


def llm_attempt(benchmark: Benchmark, data_dir: Path, scenario: str, mode: str, calibration_dir: Path, conf: str,
                log_dir: Path) -> None:
    """One LoadGen test into ``log_dir`` with ``conf`` as its user.conf; once per process (FromConfig)."""
    from benchpipe.infer.sut import start_test

    task = llm_task(benchmark)
    kind, calibration, limits = read_llm_calibration(calibration_dir)
    checkpoint = Path(read_model_record(calibration_dir).path)
    log_dir.mkdir(parents=True, exist_ok=True)
    prompts, data = prompt_library(benchmark, data_dir, kind)
    conf_path = log_dir / USER_CONF
    conf_path.write_text(conf)
    # An explicit audit file in every test: one in the working directory would otherwise
    # silently turn a submission run into a compliance run.
    audit = log_dir / AUDIT_CONFIG
    if mode == "TEST06":
        audit.write_text(audit_config_test06())
    settings = _settings(task, scenario, mode, conf_path)
    sut = LLMSUT(decoder(checkpoint, calibration.slots, prompts, limits), prompts, limits, policy=calibration.policy)
    start_test(sut, prompts, settings, log_dir, prompts.total, audit_config=audit)
    if mode == "accuracy":
        from benchpipe.benchmarks.llama.cnndm import tokenizer_path
        from benchpipe.infer.llm_accuracy import write_rouge_accuracy

        write_rouge_accuracy(log_dir, data, tokenizer_path(data_dir))


def _thread_counts() -> tuple[int, int]:
    import tensorflow as tf

    return (tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())


def _attempt_in_child(benchmark_name: str, data_dir: Path, scenario: str, mode: str, calibration_dir: Path,
                      conf: str, log_dir: Path, threads: tuple[int, int]) -> None:
    from benchpipe.contracts import registry

    intra, inter = threads
    if intra or inter:
        import tensorflow as tf

        # Before TensorFlow runs an op, as `benchpipe infer --threads` set them in the parent.
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    llm_attempt(registry.get(benchmark_name), data_dir, scenario, mode, calibration_dir, conf, log_dir)


def require_valid(detail_log: Path, what: str, timed: bool = True) -> None:
    """A test with LoadGen errors, or a timed one that LoadGen judged INVALID, fails here, so
    that no output is kept."""
    from benchpipe.infer.validity import invalid_reason
    from benchpipe.results.loadgen_parser import parse_detail_log

    detail = parse_detail_log(detail_log)
    if detail.errors:
        raise InferenceError(f"{what}: LoadGen logged errors: {'; '.join(detail.errors[:3])}: nothing kept")
    validity = detail.get("result_validity")
    if timed and validity != "VALID":
        ttft = detail.get("result_first_token_99.00_percentile_latency_ns")
        tpot = detail.get("result_time_per_output_token_99.00_percentile_ns")
        measured = "" if ttft is None else f"; TTFT p99 {ttft / 1e6:.3g} ms, TPOT p99 {(tpot or 0) / 1e6:.3g} ms"
        raise InferenceError(f"{what}: LoadGen judged the run {validity} ({invalid_reason(detail)}){measured}: "
                             "nothing kept, run it again")
