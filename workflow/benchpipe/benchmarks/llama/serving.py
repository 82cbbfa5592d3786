"""llama3.1-8b and llama3.1-8b-edge: MLPerf Inference v6.1's summarisation of CNN/DailyMail.

Inference-only benchmarks: benchpipe trains nothing for them. They serve a Llama checkpoint
in Hugging Face's layout that the user gives (``inference.models.<benchmark>.checkpoint``):
Llama-3.1-8B-Instruct for a result, or the tiny stand-in of ``benchpipe models stand-in-llama``
for development. The data is the reference's ``cnn_eval.json`` and the checkpoint's
``tokenizer.json`` (``benchpipe.benchmarks.llama.cnndm``); neither is built in.

The generation is the reference's (language/llama3.1-8b, SUT_VLLM.py): greedy, at most 2,000
new tokens, at least 2, stopping at the checkpoint's end-of-sequence ids
(``generation_config.json``; Llama 3.1 Instruct's 128001, 128008 and 128009 otherwise).
The accuracy targets are the checker's for v6.1: 99 % of the reference's ROUGE scores, and a
generated length within 10 % of the reference's (docs/mlperf-reference.md).
"""

from __future__ import annotations

from functools import partial

from benchpipe.benchmarks.llama import cnndm
from benchpipe.contracts.benchmark import Benchmark, LLMInferenceTask

MAX_OUTPUT_TOKENS = 2000
LLAMA31_EOS = (128001, 128008, 128009)


def _benchmark(name: str, task: LLMInferenceTask) -> Benchmark:
    return Benchmark(
        name=name,
        sources=cnndm.SOURCES,
        preprocess=None,
        build_model=None,
        hyperparameters=None,
        quality_target=0.0,
        num_runs=0,
        inference=task,
        rules_file=None,
        prepare_dataset=partial(cnndm.prepare, benchmark=task.official_name),
    )


DATACENTER = _benchmark("llama31_8b", LLMInferenceTask(
    official_name="llama3.1-8b",
    loadgen_model="llama3_1-8b",
    interactive_loadgen_model="llama3_1-8b-interactive",
    performance_sample_count=cnndm.DATASET_SIZES["llama3.1-8b"],
    accuracy_targets=(("ROUGE1", 38.7792), ("ROUGE2", 15.9075), ("ROUGEL", 24.4957), ("ROUGELSUM", 35.793),
                      ("GEN_LEN", 8_167_644 * 0.9)),
    max_output_tokens=MAX_OUTPUT_TOKENS,
    eos_token_ids=LLAMA31_EOS,
))

EDGE = _benchmark("llama31_8b_edge", LLMInferenceTask(
    official_name="llama3.1-8b-edge",
    loadgen_model="llama3_1-8b-edge",
    performance_sample_count=cnndm.DATASET_SIZES["llama3.1-8b-edge"],
    accuracy_targets=(("ROUGE1", 39.06), ("ROUGE2", 16.1147), ("ROUGEL", 24.6375), ("ROUGELSUM", 36.124),
                      ("GEN_LEN", 3_051_113 * 0.9)),
    max_output_tokens=MAX_OUTPUT_TOKENS,
    eos_token_ids=LLAMA31_EOS,
))
