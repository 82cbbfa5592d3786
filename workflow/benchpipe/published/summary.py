"""MLCommons' published result summaries, read into rows of the ``published`` table.

Inference: the submission checker's ``summary.csv`` (``mlcommons/inference_results_v<round>``), one
row per result, with exactly the columns ``INFERENCE_COLUMNS``; another header is refused, naming
the columns missing and unexpected. Each row's ``Result`` is in its ``Units``:

    Samples/s, Tokens/s, Queries/s, Tasks/s   a throughput: higher is better
    Latency (ms), Latency (s)                 a latency (SingleStream, MultiStream): lower is better

and goes, as well as into ``result`` as published, into the column benchpipe's own ``inference``
table states it in: ``result_samples_per_s``, ``result_tokens_per_s`` or ``result_latency_ns``.
Scenarios are published in more than one spelling ("offline", "singlestream"); the table holds
LoadGen's (Offline, SingleStream).

Training: the result summarizer's per-submitter ``summary.json``, a list of systems, each with its
benchmarks' scores in minutes (null where it did not submit): a row per submitted score, in
``score_min``, as benchpipe's ``scores`` table states it.

Normalisation is explicit, never implied: a throughput is divided by ``total_accelerators`` into
``result_per_accelerator`` and by ``number_of_nodes`` into ``result_per_node`` where the counts are
given; a latency or a time to train is not divided (null there).

A row that cannot be read (a ``Result`` that is not a number, a unit or scenario not above, a count
that is not a whole number) is a ``ParseError`` naming the file, line and column, unless the caller
keeps going (``skip_bad_rows``): then it is left out and listed, with its reason, in the import's
report. No row is left out silently.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ParseError
from benchpipe.contracts.hashing import sha256_file

INFERENCE_COLUMNS = (
    "Organization", "Availability", "Division", "SystemType", "SystemName", "Platform", "Model", "MlperfModel",
    "Scenario", "Result", "Accuracy", "number_of_nodes", "host_processor_model_name", "host_processors_per_node",
    "host_processor_core_count", "accelerator_model_name", "accelerators_per_node", "total_accelerators",
    "Location", "framework", "operating_system", "notes", "compliance", "errors", "version", "inferred",
    "has_power", "Units", "weight_data_types", "design_power_watts", "PrivateID",
)


@dataclass(frozen=True)
class Unit:
    column: str | None  # the inference table's column of this unit; None: it has none
    to_column: float  # multiplier from the published figure to that column's unit
    higher_is_better: bool


UNITS = {
    "Samples/s": Unit("result_samples_per_s", 1.0, True),
    "Tokens/s": Unit("result_tokens_per_s", 1.0, True),
    "Queries/s": Unit(None, 1.0, True),
    "Tasks/s": Unit(None, 1.0, True),
    "Latency (ms)": Unit("result_latency_ns", 1e6, False),
    "Latency (s)": Unit("result_latency_ns", 1e9, False),
}
TRAINING_UNITS = "minutes"
SCENARIOS = {s.lower(): s for s in ("Offline", "Server", "SingleStream", "MultiStream", "Interactive")}
# summary.json's keys that describe the system; every other key is a benchmark's score.
TRAINING_SYSTEM_KEYS = frozenset({
    "accelerator_model_name", "accelerators_count", "availability", "code_url", "details_url", "division",
    "framework", "host_processor_model_name", "host_processors_count", "notes", "number_of_nodes", "submitter",
    "system",
})
_ROUND_IN_PATH = re.compile(r"(?:inference|training)_results_(v\d+\.\d+)")


@dataclass
class Imported:
    """What one source file gave: its rows, and the rows left out, with why."""

    family: str  # inference | training
    round: str
    source: Path
    sha256: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"at": "line 7", "reason": "..."}

    def report(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for skip in self.skipped:
            kind = skip["reason"].split(":")[0]  # the column, or the system, the reason names first
            reasons[kind] = reasons.get(kind, 0) + 1
        return {"family": self.family, "round": self.round, "source": str(self.source), "sha256": self.sha256,
                "rows": len(self.rows), "skipped": len(self.skipped), "skipped_by_reason": reasons,
                "skipped_rows": self.skipped}


def round_from_path(path: Path) -> str | None:
    """The round a results repository's folder names (``inference_results_v6.1`` -> v6.1)."""
    match = _ROUND_IN_PATH.search(str(Path(path).resolve()))
    return match.group(1) if match else None


def import_file(path: Path, *, round_: str | None = None, skip_bad_rows: bool = False,
                family: str | None = None) -> Imported:
    """The rows of one published summary: a summary.csv (inference) or a summary.json (training);
    ``family`` says which where the name does not (a cache entry is named by its sha256)."""
    path = Path(path)
    if not path.is_file():
        raise ParseError(f"{path}: no such file (a published summary.csv or summary.json)")
    family = family or {".csv": "inference", ".json": "training"}.get(path.suffix)
    if family == "inference":
        return _inference(path, round_, skip_bad_rows)
    if family == "training":
        return _training(path, round_, skip_bad_rows)
    raise ParseError(f"{path}: not a published summary: expected the inference checker's summary.csv or the "
                     "training result summarizer's summary.json")


def _inference(path: Path, round_: str | None, skip_bad_rows: bool) -> Imported:
    imported = Imported("inference", round_ or "", path, sha256_file(path))
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ParseError(f"{path}: empty: no header line")
        if tuple(header) != INFERENCE_COLUMNS:
            raise ParseError(f"{path}: line 1: not the inference checker's summary.csv header: "
                             f"{_header_difference(header)}")
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # a blank line is no row
            try:
                if len(values) != len(INFERENCE_COLUMNS):
                    raise ParseError(f"{len(values)} fields, the header has {len(INFERENCE_COLUMNS)}")
                row = _inference_row(dict(zip(INFERENCE_COLUMNS, values)))
            except ParseError as exc:
                _bad_row(imported, path, line, str(exc), skip_bad_rows)
                continue
            if round_ and row["round"] != round_:
                _bad_row(imported, path, line, f"version {row['round']!r}, the import is of round {round_}",
                         skip_bad_rows)
                continue
            imported.round = imported.round or row["round"]
            if row["round"] != imported.round:
                _bad_row(imported, path, line, f"version {row['round']!r}, earlier rows are of {imported.round}",
                         skip_bad_rows)
                continue
            imported.rows.append({**row, "source_line": line})
    if not imported.round:
        raise ParseError(f"{path}: no row states its round (the version column)")
    return _sourced(imported)


def _header_difference(header: list[str]) -> str:
    missing = [c for c in INFERENCE_COLUMNS if c not in header]
    extra = [c for c in header if c not in INFERENCE_COLUMNS]
    if missing or extra:
        return (f"missing {', '.join(missing) or 'none'}; unexpected {', '.join(extra) or 'none'}")
    return "the expected columns in another order"


def _bad_row(imported: Imported, path: Path, line: int, reason: str, skip: bool) -> None:
    """``line``: the CSV's line, or the index of a system in a summary.json."""
    where = f"line {line}" if imported.family == "inference" else f"system {line}"
    if not skip:
        raise ParseError(f"{path}: {where}: {reason}")
    imported.skipped.append({"at": where, "reason": reason})


def _inference_row(raw: dict[str, str]) -> dict[str, Any]:
    units = raw["Units"].strip()
    unit = UNITS.get(units)
    if unit is None:
        raise ParseError(f"Units: unknown unit {units!r} (known: {', '.join(UNITS)})")
    scenario = SCENARIOS.get(raw["Scenario"].strip().lower())
    if scenario is None:
        raise ParseError(f"Scenario: unknown scenario {raw['Scenario']!r} (known: {', '.join(SCENARIOS.values())})")
    result = _number(raw["Result"], "Result")
    nodes = _count(raw["number_of_nodes"], "number_of_nodes")
    per_node = _count(raw["accelerators_per_node"], "accelerators_per_node")
    total = _count(raw["total_accelerators"], "total_accelerators")
    row = _empty_row("inference", raw["version"].strip())
    row.update(
        submitter=raw["Organization"], system=raw["SystemName"], division=raw["Division"],
        category=raw["SystemType"], availability=raw["Availability"], benchmark=raw["MlperfModel"],
        model=raw["Model"], scenario=scenario, units=units, result=result, higher_is_better=unit.higher_is_better,
        accelerator_model_name=raw["accelerator_model_name"], accelerators_per_node=per_node,
        total_accelerators=total, number_of_nodes=nodes, host_processor_model_name=raw["host_processor_model_name"],
        framework=raw["framework"], accuracy=raw["Accuracy"], inferred=raw["inferred"].strip() == "1",
        compliance=raw["compliance"], errors=_count(raw["errors"], "errors"),
        weight_data_types=raw["weight_data_types"],
    )
    if unit.column == "result_latency_ns":
        row["result_latency_ns"] = round(result * unit.to_column)
    elif unit.column is not None:
        row[unit.column] = result * unit.to_column
    return _normalised(row)


def _training(path: Path, round_: str | None, skip_bad_rows: bool) -> Imported:
    round_ = round_ or round_from_path(path)
    if not round_:
        raise ParseError(f"{path}: a training summary does not state its round: give it (--round v5.1), or import "
                         "it from its training_results_v<round> folder")
    imported = Imported("training", round_, path, sha256_file(path))
    try:
        systems = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ParseError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(systems, list):
        raise ParseError(f"{path}: not the result summarizer's summary.json: a list of systems expected")
    for index, system in enumerate(systems):
        if not isinstance(system, dict) or not {"submitter", "system", "division"} <= set(system):
            _bad_row(imported, path, index, "not a system (submitter, system, division expected)", skip_bad_rows)
            continue
        for benchmark in sorted(set(system) - TRAINING_SYSTEM_KEYS):
            score = system[benchmark]
            if score is None:
                continue  # the summarizer's mark of a benchmark the system did not submit
            try:
                imported.rows.append({**_training_row(round_, system, benchmark, score), "source_line": index})
            except ParseError as exc:
                _bad_row(imported, path, index, f"{system['system']}: {exc}", skip_bad_rows)
    return _sourced(imported)


def _training_row(round_: str, system: dict[str, Any], benchmark: str, score: Any) -> dict[str, Any]:
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ParseError(f"{benchmark}: score {score!r} is not a number of minutes")
    row = _empty_row("training", round_)
    row.update(
        submitter=str(system["submitter"]), system=str(system["system"]), division=str(system["division"]),
        availability=str(system.get("availability") or ""), benchmark=benchmark, model=benchmark,
        units=TRAINING_UNITS, result=float(score), higher_is_better=False, score_min=float(score),
        accelerator_model_name=str(system.get("accelerator_model_name") or ""),
        total_accelerators=_count(system.get("accelerators_count"), "accelerators_count"),
        number_of_nodes=_count(system.get("number_of_nodes"), "number_of_nodes"),
        host_processor_model_name=str(system.get("host_processor_model_name") or ""),
        framework=str(system.get("framework") or ""),
    )
    nodes, total = row["number_of_nodes"], row["total_accelerators"]
    if nodes and total is not None and total % nodes == 0:
        row["accelerators_per_node"] = total // nodes
    return row


def _empty_row(family: str, round_: str) -> dict[str, Any]:
    from benchpipe.published.table import PUBLISHED_SCHEMA

    return {**{name: None for name in PUBLISHED_SCHEMA.names}, "family": family, "round": round_}


def _normalised(row: dict[str, Any]) -> dict[str, Any]:
    if row["higher_is_better"] and row["family"] == "inference":
        if row["total_accelerators"]:
            row["result_per_accelerator"] = row["result"] / row["total_accelerators"]
        if row["number_of_nodes"]:
            row["result_per_node"] = row["result"] / row["number_of_nodes"]
    return row


def _sourced(imported: Imported) -> Imported:
    for row in imported.rows:
        row.update(source_file=imported.source.name, source_sha256=imported.sha256)
    return imported


def _number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ParseError(f"{column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ParseError(f"{column}: {text!r} is not a finite number")
    return value


def _count(text: Any, column: str) -> int | None:
    """A count as published: a whole number, or nothing ("", None) where the summary has none."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ParseError(f"{column}: {text!r} is not a count") from None
    if not value.is_integer() or value < 0:
        raise ParseError(f"{column}: {text!r} is not a count")
    return int(value)
