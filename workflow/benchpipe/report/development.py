"""Why a tree is not valid for an MLPerf round, as the tree itself records it.

A development tree (short LoadGen runs, accuracy on part of the dataset, benchpipe's own
stand-in benchmark, a round named "dev") looks like a submission; its report opens with a
banner that says which of these apply and where the tree records each. A tree that names an
MLPerf round and whose runs are all official gets no banner.
"""

from __future__ import annotations

import re
from typing import Any

from benchpipe.contracts.rounds import OFFICIAL_MIN_DURATION_MS
from benchpipe.report.data import ReportData, plain

# MLPerf names its rounds v<major>.<minor> (v4.0, v6.1); "dev" or "ci" names a tree, not a round.
ROUND_NAME = re.compile(r"^v\d+\.\d+(?![\d.])")
OWN_SECTION = "benchpipe/"  # benchpipe's own layouts, for benchmarks MLPerf does not have


def development_reasons(data: ReportData) -> list[str]:
    """One sentence per reason the tree cannot stand for an official round, naming its source."""
    return [*_round(data.config), *_stand_ins(data.sections), *_stand_in_models(data.config), *_short_runs(data),
            *_subset(data), *_invalid_tests(data.checks)]


def _round(config: dict[str, Any]) -> list[str]:
    name = (config.get("submission") or {}).get("round")
    if name is None or ROUND_NAME.match(str(name)):
        return []
    return [f'config.json names the round "{name}", not an MLPerf round (such as v6.1): '
            "the tree was made for development"]


def _stand_ins(sections: dict[str, set[str]]) -> list[str]:
    out = []
    for benchmark, found in sorted(sections.items()):
        if found and all(s.startswith(OWN_SECTION) for s in found):
            out.append(f"{benchmark} is a stand-in model, not an MLPerf benchmark: its results are only in "
                       f"benchpipe's own layout ({', '.join(sorted(found))}), which no round takes")
    return out


def _stand_in_models(config: dict[str, Any]) -> list[str]:
    """An MLPerf benchmark trained on a stand-in of its model (llama2_70b_lora's tiny Llama)."""
    settings = (config.get("training") or {}).get("hyperparameters") or {}
    return [f"{name} trained a stand-in of its reference model (config.json training.hyperparameters.{name}.model "
            f'"{values["model"]}"): the plumbing of a round, not a result for one'
            for name, values in sorted(settings.items())
            if isinstance(values, dict) and values.get("model") == "stand-in"]


def _seconds(ms: int) -> str:
    return f"{plain(ms / 1000)} s"


def _short_runs(data: ReportData) -> list[str]:
    """LoadGen runs shorter than the rules' 600 s, as user.conf sets them (else as the logs ran them)."""
    official = _seconds(OFFICIAL_MIN_DURATION_MS)
    confs = data.min_durations_ms
    short = {path: ms for path, ms in confs.items() if ms < OFFICIAL_MIN_DURATION_MS}
    if short:
        first = min(short)
        durations = ", ".join(_seconds(ms) for ms in sorted(set(short.values())))
        return [f"short LoadGen runs: min_duration {durations} in {len(short)} of {len(confs)} user.conf "
                f"(e.g. {first}); an official run lasts at least {official}"]
    ran = sorted({r["min_duration_ms"] for r in data.rows("inference")
                  if r.get("min_duration_ms") is not None and r["min_duration_ms"] < OFFICIAL_MIN_DURATION_MS})
    if ran:
        return [f"short LoadGen runs: min_duration {', '.join(_seconds(ms) for ms in ran)} in the detail logs "
                f"(inference table); an official run lasts at least {official}"]
    return []


def _subset(data: ReportData) -> list[str]:
    inference = data.config.get("inference") or {}
    samples = inference.get("accuracy_samples")
    # Official runs measure accuracy on the whole dataset whatever accuracy_samples says.
    if inference.get("official") or not samples or not data.rows("inference"):
        return []
    return [f"accuracy measured on a subset: the first {samples} samples of the dataset "
            "(config.json inference.accuracy_samples), not all of it"]


def _invalid_tests(checks: dict[str, Any]) -> list[str]:
    inference = checks.get("inference") or {}
    tests = inference.get("tests") or []
    invalid = [t for t in tests if t.get("official_round_valid") is False]
    out = []
    if inference.get("official") is False:
        out.append(f'checks.json records the LoadGen tests as "{inference.get("kind", "development")}"')
    if invalid:
        out.append(f"{len(invalid)} of {len(tests)} LoadGen tests are not valid for an official round "
                   "(checks.json inference.tests, official_round_valid false)")
    return out
