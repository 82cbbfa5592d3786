"""The MLPerf rounds benchpipe supports, as data.

Training: the rulesets whose rules, checkers and RCPs mlperf-logging ships and benchpipe has
been checked against. Their benchmarks and result-file counts are mlperf-logging's own
``benchmark_meta`` (asked through ``benchpipe.mlcommons.training``), never typed in here.

Inference: each round's models, scenarios per category, latency bounds, LLM limits, seeds and
query counts, generated from the official checker's ``constants.py`` by
``scripts/inference_round_table.py`` into ``inference_rounds.json`` beside this file, so that a
run needs no checker checkout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from benchpipe.contracts.errors import ConfigError

TRAINING_RULESETS: tuple[str, ...] = ("4.0.0", "6.1.0")
# The default ruleset: the newest that checks ResNet, benchpipe's MLPerf benchmark.
TRAINING_RULESET = "4.0.0"
# The inference round whose rules the LoadGen tests follow unless the config names another.
ROUND = "v6.1"
# A classifier's compliance tests, which benchpipe.infer.compliance writes and verifies.
COMPLIANCE_TESTS = ("TEST01", "TEST04")
# Every compliance test benchpipe runs as a mode of a scenario: a classifier's, and an LLM's
# TEST06 (its first token and end of sequence). A round that requires another for a model
# benchpipe serves is a config error, not a tree the checker would refuse.
RUNNABLE_COMPLIANCE_TESTS = (*COMPLIANCE_TESTS, "TEST06")
# The inference rules' minimum duration of an official performance run.
OFFICIAL_MIN_DURATION_MS = 600_000

INFERENCE_TABLE = "inference_rounds.json"
CATEGORIES = ("datacenter", "edge")


@dataclass(frozen=True)
class InferenceRound:
    """One inference round, as its checker's constants.py states it."""

    name: str
    models: tuple[str, ...]
    # category -> model -> {"required": [...], "optional": [...]}
    scenarios: dict[str, dict[str, dict[str, list[str]]]]
    latency_constraint_ns: dict[str, dict[str, int]]  # model -> scenario -> p99 bound
    llm_latency_limits_ns: dict[str, dict[str, dict[str, int]]]  # model -> scenario -> ttft/tpot
    min_queries: dict[str, dict[str, int]]
    performance_sample_count: dict[str, int]
    offline_min_samples_per_query: dict[str, int]
    seeds: dict[str, int]
    min_duration_ms: int
    compliance_tests: dict[str, list[str]]  # TEST01 -> the models that need it

    def categories_of(self, model: str) -> tuple[str, ...]:
        """The system categories (datacenter, edge) in which ``model`` may be submitted."""
        return tuple(c for c in CATEGORIES if model in self.scenarios.get(c, {}))

    def scenarios_of(self, model: str, categories: tuple[str, ...]) -> tuple[str, ...]:
        """The scenarios, required and optional, that ``model`` has in any of ``categories``.

        A system of both categories ("datacenter,edge") may submit what either allows: the
        checker's datacenter-edge lists are the union of the two.
        """
        allowed: dict[str, None] = {}
        for category in categories:
            entry = self.scenarios.get(category, {}).get(model, {})
            allowed.update(dict.fromkeys([*entry.get("required", []), *entry.get("optional", [])]))
        return tuple(allowed)

    def compliance_tests_of(self, model: str) -> tuple[str, ...]:
        """The compliance tests the round requires of ``model``, by name."""
        return tuple(sorted(test for test, models in self.compliance_tests.items() if model in models))


@cache
def _inference_table() -> dict[str, Any]:
    path = resources.files("benchpipe.contracts") / INFERENCE_TABLE
    try:
        return json.loads(path.read_text())["rounds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the inference rounds' table: {exc}") from exc


def inference_rounds() -> tuple[str, ...]:
    """The inference rounds benchpipe knows, sorted."""
    return tuple(sorted(_inference_table()))


def inference_round(name: str = ROUND) -> InferenceRound:
    """The round ``name`` from the table; ConfigError naming the key when it is not there."""
    table = _inference_table()
    if name not in table:
        raise ConfigError(f"inference.round: '{name}' is not a round benchpipe knows ({', '.join(sorted(table))})")
    entry = table[name]
    try:
        return InferenceRound(
            name=name,
            models=tuple(entry["models"]),
            scenarios=entry["scenarios"],
            latency_constraint_ns=entry["latency_constraint_ns"],
            llm_latency_limits_ns=entry["llm_latency_limits_ns"],
            min_queries=entry["min_queries"],
            performance_sample_count=entry["performance_sample_count"],
            offline_min_samples_per_query=entry["offline_min_samples_per_query"],
            seeds=entry["seeds"],
            min_duration_ms=entry["min_duration_ms"],
            compliance_tests=entry["compliance_tests"],
        )
    except KeyError as exc:
        raise ConfigError(f"{INFERENCE_TABLE}: round {name} has no key {exc}") from exc


def ruleset_key(ruleset: str) -> tuple[int, ...]:
    """A training ruleset ("4.0.0", or benchmark_meta's "4.0") as numbers, to order rounds."""
    return tuple(int(part) for part in ruleset.split("."))

