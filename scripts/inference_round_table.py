#!/usr/bin/env python3
"""Write the inference rounds' table that benchpipe ships, from the official checker's constants.

    python scripts/inference_round_table.py --checkout PATH --round v6.1 \
        > workflow/benchpipe/contracts/inference_rounds.json

PATH is a checkout of mlcommons/inference; its tools/submission/submission_checker/constants.py
holds each round's models, scenarios, latency bounds and LLM limits. The table is generated
rather than typed in so that it can be regenerated and compared (tests/test_rounds.py); a user's
run reads only the JSON and needs no checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

CONSTANTS = Path("tools", "submission", "submission_checker", "constants.py")
CATEGORIES = ("datacenter", "edge")


def load_constants(checkout: Path) -> ModuleType:
    """The checker's constants.py as a module; it imports nothing, so no checker package is needed."""
    path = checkout / CONSTANTS
    if not path.is_file():
        raise SystemExit(f"{checkout}: not a checkout of mlcommons/inference (no {CONSTANTS})")
    spec = importlib.util.spec_from_file_location("submission_checker_constants", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _of_models(table: dict[str, Any], models: list[str]) -> dict[str, Any]:
    # The checker's tables carry entries of earlier rounds' models: keep only this round's.
    return {name: table[name] for name in sorted(table) if name in models}


def _scenarios(config: dict[str, Any], models: list[str]) -> dict[str, dict[str, dict[str, list[str]]]]:
    by_category: dict[str, dict[str, dict[str, list[str]]]] = {}
    for category in CATEGORIES:
        required = config.get(f"required-scenarios-{category}", {})
        optional = config.get(f"optional-scenarios-{category}", {})
        by_category[category] = {
            name: {"required": list(required.get(name, [])), "optional": list(optional.get(name, []))}
            for name in models if name in required or name in optional
        }
    return by_category


def round_table(constants: ModuleType, round_: str) -> dict[str, Any]:
    """One round's entry: what benchpipe needs to know of the round without the checker."""
    if round_ not in constants.MODEL_CONFIG:
        known = ", ".join(sorted(constants.MODEL_CONFIG))
        raise SystemExit(f"{CONSTANTS}: no MODEL_CONFIG entry for round {round_} (it has {known})")
    config = constants.MODEL_CONFIG[round_]
    models = list(config["models"])
    return {
        "models": models,
        "scenarios": _scenarios(config, models),
        "latency_constraint_ns": _of_models(config.get("latency-constraint", {}), models),
        "llm_latency_limits_ns": _of_models(constants.LLM_LATENCY_LIMITS, models),
        "min_queries": _of_models(config.get("min-queries", {}), models),
        "performance_sample_count": _of_models(config.get("performance-sample-count", {}), models),
        "offline_min_samples_per_query": _of_models(constants.OFFLINE_MIN_SPQ_SINCE_V4, models),
        "seeds": dict(config["seeds"]),
        "min_duration_ms": constants.TEST_DURATION_MS,
        "compliance_tests": {
            key.removeprefix("models_"): list(value)
            for key, value in sorted(config.items()) if key.startswith("models_TEST")
        },
    }


def build(checkout: Path, rounds: list[str]) -> dict[str, Any]:
    constants = load_constants(checkout)
    return {
        "source": str(CONSTANTS),
        "rounds": {round_: round_table(constants, round_) for round_ in rounds},
    }


def dumps(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkout", type=Path, required=True, help="a checkout of mlcommons/inference")
    p.add_argument("--round", dest="rounds", action="append", required=True,
                   help="a round to include (repeat for several), e.g. v6.1")
    args = p.parse_args(argv)
    sys.stdout.write(dumps(build(args.checkout, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
