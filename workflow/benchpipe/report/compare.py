"""A tree's results among the published ones: ``benchpipe compare TREE --published DIR``.

Each training score of the tree's ``scores`` table is set among the published scores of its
benchmark, division and training round (lower is better; per accelerator, accelerator-minutes).
Each performance result of the tree's ``inference`` table is set among the ``published`` rows
(``benchpipe published import``) of the same MLPerf model, scenario, division and round, in the
categories its system may submit in (system_type), and of the same kind of figure: a latency is
compared with latencies (``result_latency_ns``), a throughput with throughputs in the same units.
For each: the count, where it would rank, its percentile (the share of those results it is as
good as or better than), the nearest published systems above and below with their accelerators,
and the ratio per accelerator (throughputs, where both sides count accelerators).

A result is *not comparable*, and no rank is claimed for it, when its benchmark is not an MLPerf
one (digits, mnist), or when the tree is a development tree: every reason the report's banner
gives (``report.development``: a round that is not MLPerf's, short runs, accuracy on a subset,
tests not valid for a round, stand-in models) is named.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts import registry
from benchpipe.contracts.config import SYSTEM_TYPES
from benchpipe.contracts.errors import BenchpipeError
from benchpipe.report.data import ReportData


@dataclass(frozen=True)
class Neighbour:
    submitter: str
    system: str
    accelerators: str  # "8x NVIDIA H200", or "" where none are published
    value: float  # in the result's units


@dataclass(frozen=True)
class Placement:
    """One result of the tree, placed among the published ones (or why it is not)."""

    target: str
    benchmark: str  # benchpipe's name
    mlperf_name: str | None
    scenario: str
    units: str  # "Latency (ms)", "Samples/s", "Tokens/s"
    value: float  # in units
    not_comparable: list[str]  # this result's own reasons (the tree's are Comparison.development)
    in_development_tree: bool  # not comparable, as every result of a development tree
    count: int = 0
    rank: int | None = None  # 1 is the best
    percentile: float | None = None
    above: Neighbour | None = None  # the nearest published result better than this one
    below: Neighbour | None = None  # the nearest as good or worse
    ratio_per_accelerator: float | None = None  # against the median published per-accelerator figure
    # The published figures it is (or, not comparable, would be) set among, in units: drawn by the report.
    peers: tuple[float, ...] = ()
    elsewhere: str = ""  # with no peers: where the round has results of the model and scenario ("open edge: 1")


def _units(row: dict[str, Any]) -> tuple[str, float, bool] | None:
    """(units, value in them, higher is better) of an inference table row's result."""
    if row.get("result_latency_ns") is not None:
        return "Latency (ms)", row["result_latency_ns"] / 1e6, False
    if row.get("result_tokens_per_s") is not None:
        return "Tokens/s", row["result_tokens_per_s"], True
    if row.get("result_samples_per_s") is not None:
        return "Samples/s", row["result_samples_per_s"], True
    return None


def _published_value(row: dict[str, Any], units: str) -> float | None:
    """A published row's figure in ``units``; None where it is of another kind."""
    if units == "Latency (ms)":
        return row["result_latency_ns"] / 1e6 if row.get("result_latency_ns") is not None else None
    return row["result"] if row["units"] == units else None


def _mlperf_name(benchmark: str) -> str | None:
    try:
        task = registry.get(benchmark).inference
    except BenchpipeError:
        return None
    return getattr(task, "official_name", None)


def _accelerators(system: dict[str, Any]) -> int | None:
    """The accelerators a system description counts (per node x nodes); None for none."""
    try:
        count = int(system.get("accelerators_per_node", 0)) * int(system.get("number_of_nodes", 1))
    except (TypeError, ValueError):
        return None
    return count or None


def _accelerator_text(row: dict[str, Any]) -> str:
    name, count = row.get("accelerator_model_name") or "", row.get("total_accelerators")
    if not name or name in ("N/A", "None"):
        return ""
    return f"{count}x {name}" if count else name


def place(result: dict[str, Any], published: list[dict[str, Any]], *, division: str, round_: str,
          categories: tuple[str, ...], accelerators: int | None, development: list[str]) -> Placement:
    """``result`` (an inference table row) among the ``published`` rows."""
    mlperf = _mlperf_name(result["benchmark"])
    kind = _units(result)
    units, value, higher = kind if kind else ("", float("nan"), True)
    reasons = []
    if mlperf is None:
        reasons.append(f"{result['benchmark']} is not an MLPerf benchmark: no published result is of its model")
    if kind is None:
        reasons.append("the test states no result")
    placement = Placement(result["target"], result["benchmark"], mlperf, result["scenario"], units, value, reasons,
                          bool(development))
    if reasons:
        return placement
    peers = []
    for row in published:
        if (row["family"], row["benchmark"], row["scenario"], row["division"], row["round"]) != (
                "inference", mlperf, result["scenario"], division, round_) or row["category"] not in categories:
            continue
        theirs = _published_value(row, units)
        if theirs is not None:
            peers.append((theirs, row))
    values = tuple(sorted(v for v, _ in peers))
    if not peers:
        found = Counter(f"{r['division']} {r['category']}" for r in published
                        if (r["family"], r["benchmark"], r["scenario"], r["round"]) == (
                            "inference", mlperf, result["scenario"], round_))
        elsewhere = ", ".join(f"{key}: {count}" for key, count in sorted(found.items()))
        return Placement(**{**placement.__dict__, "elsewhere": elsewhere})
    if development:
        # A development result is drawn among them, but neither counted nor ranked.
        return Placement(**{**placement.__dict__, "peers": values})

    ratio = None
    per_accelerator = sorted(r["result_per_accelerator"] for _, r in peers if r.get("result_per_accelerator"))
    if higher and accelerators and per_accelerator:
        ratio = (value / accelerators) / per_accelerator[len(per_accelerator) // 2]
    return _ranked(placement, peers, higher, ratio)


def _ranked(placement: Placement, peers: list[tuple[float, dict[str, Any]]], higher: bool,
            ratio: float | None) -> Placement:
    """``placement`` ranked among ``peers`` ((value, published row) of the same kind of figure)."""
    value = placement.value
    ahead = [(v, r) for v, r in peers if (v > value if higher else v < value)]
    behind = [(v, r) for v, r in peers if not (v > value if higher else v < value)]
    nearest_above = min(ahead, key=lambda p: abs(p[0] - value)) if ahead else None
    nearest_below = min(behind, key=lambda p: abs(p[0] - value)) if behind else None
    return Placement(**{**placement.__dict__, "peers": tuple(sorted(v for v, _ in peers)), "count": len(peers),
                        "rank": len(ahead) + 1, "percentile": 100.0 * len(behind) / len(peers),
                        "above": _neighbour(nearest_above), "below": _neighbour(nearest_below),
                        "ratio_per_accelerator": ratio})


TIME_TO_TRAIN = "time to train"  # a training score's "scenario"


def place_score(score: dict[str, Any], published: list[dict[str, Any]], *, division: str, round_: str,
                accelerators: int | None, development: list[str]) -> Placement:
    """A training score (a scores table row) among the published scores of its benchmark, division
    and round; lower is better, and per accelerator it is accelerator-minutes."""
    from benchpipe.mlcommons.training import rulesets_with

    benchmark = score["benchmark"]
    value = score.get("score_min")
    reasons = []
    if not rulesets_with(benchmark):
        reasons.append(f"{benchmark} is not an MLPerf training benchmark: no published score is of it")
    if value is None:
        reasons.append(f"no score: {score.get('reason') or 'too few successful runs'}")
    placement = Placement(score["target"], benchmark, benchmark if not reasons else None, TIME_TO_TRAIN, "minutes",
                          float("nan") if value is None else value, reasons, bool(development))
    if reasons:
        return placement
    peers = [(r["score_min"], r) for r in published
             if (r["family"], r["benchmark"], r["division"], r["round"]) == ("training", benchmark, division, round_)
             and r.get("score_min") is not None]
    values = tuple(sorted(v for v, _ in peers))
    if development or not peers:
        return Placement(**{**placement.__dict__, "peers": values})
    ratio = None
    spent = sorted(v * r["total_accelerators"] for v, r in peers if r.get("total_accelerators"))
    if accelerators and spent:
        ratio = (value * accelerators) / spent[len(spent) // 2]
    return _ranked(placement, peers, False, ratio)


def training_round(ruleset: str) -> str:
    """The published training round of a ruleset: 5.1.0 -> v5.1."""
    major, _, rest = str(ruleset).partition(".")
    return f"v{major}.{rest.partition('.')[0]}" if rest else ""


def _neighbour(found: tuple[float, dict[str, Any]] | None) -> Neighbour | None:
    if found is None:
        return None
    value, row = found
    return Neighbour(row["submitter"], row["system"], _accelerator_text(row), value)


@dataclass(frozen=True)
class Comparison:
    tree: Path
    division: str
    round: str  # the inference round compared with
    development: list[str]  # why the tree is a development tree, whose results none are comparable
    placements: list[Placement]
    training_round: str = ""  # the training round compared with (from the tree's ruleset)


def compare_tree(tree: Path, published_dir: Path, round_: str | None = None,
                 training_round_: str | None = None) -> Comparison:
    """Every performance result and training score of ``tree`` placed among the published results
    in ``published_dir``: inference in ``round_`` (default: the tree's inference round), training
    in ``training_round_`` (default: the round of the tree's training ruleset)."""
    from benchpipe.report.data import load

    return compare_data(load(tree), published_dir, round_, training_round_)


def compare_data(data: ReportData, published_dir: Path, round_: str | None = None,
                 training_round_: str | None = None) -> Comparison:
    """``compare_tree`` on a tree already loaded (report.data.ReportData)."""
    from benchpipe.published.table import read_published
    from benchpipe.report.development import development_reasons

    published = read_published(published_dir).to_pylist()
    division = (data.config.get("submission") or {}).get("division", "")
    round_ = round_ or (data.config.get("inference") or {}).get("round", "")
    systems = {Path(s.path).stem: s.description for s in data.systems if "/systems/" in s.path}
    development = development_reasons(data)
    placements = []
    for row in sorted(data.rows("inference"), key=lambda r: (r["target"], r["benchmark"], r["scenario"])):
        if row["mode"] != "performance":
            continue
        system = systems.get(row["target"], {})
        categories = SYSTEM_TYPES.get(str(system.get("system_type", "")), ())
        placements.append(place(row, published, division=division, round_=round_, categories=categories,
                                accelerators=_accelerators(system), development=development))
    training = training_round_ or training_round((data.config.get("training") or {}).get("ruleset", ""))
    for row in sorted(data.rows("scores"), key=lambda r: (r["target"], r["benchmark"])):
        placements.append(place_score(row, published, division=division, round_=training,
                                      accelerators=_accelerators(systems.get(row["target"], {})),
                                      development=development))
    return Comparison(Path(data.tree), division, round_, development, placements, training)


def _figure(value: float, units: str) -> str:
    return f"{value:,.6g} {units.replace('Latency ', '').strip('()') if units.startswith('Latency') else units}"


def among(p: Placement, comparison: Comparison) -> str:
    if p.scenario == TIME_TO_TRAIN:
        return f"{p.mlperf_name}, {comparison.division}, training {comparison.training_round}"
    return f"{p.mlperf_name} {p.scenario}, {comparison.division}, {comparison.round}"


def verdict(p: Placement, comparison: Comparison) -> str:
    """One line: where the result ranks, or why it does not."""
    head = f"{p.target} {p.benchmark} {p.scenario}: {_figure(p.value, p.units)}"
    if p.not_comparable or p.in_development_tree:
        return f"{head}: not comparable: {'; '.join(p.not_comparable) or 'the tree is a development tree (above)'}"
    if p.count == 0:
        return (f"{head}: no published result of {among(p, comparison)} in its categories"
                + (f" (the round has them in {p.elsewhere})" if p.elsewhere else ""))
    kind = "scores" if p.scenario == TIME_TO_TRAIN else "results"
    return (f"{head}: rank {p.rank} of {p.count + 1} among the {p.count} published {kind} of "
            f"{among(p, comparison)}; percentile {p.percentile:.1f}")


def format_comparison(comparison: Comparison) -> str:
    """The lines ``benchpipe compare`` prints."""
    lines = []
    if comparison.development:
        lines.append(f"{comparison.tree}: a development tree, whose results are not comparable with published ones:")
        lines += [f"  - {reason}" for reason in comparison.development]
    if not comparison.placements:
        lines.append(f"{comparison.tree}: no inference performance result or training score to compare")
    for p in comparison.placements:
        lines.append(verdict(p, comparison))
        if p.rank is None:
            continue
        for label, n in (("above", p.above), ("below", p.below)):
            if n is not None:
                gear = f" ({n.accelerators})" if n.accelerators else ""
                lines.append(f"  nearest {label}: {n.submitter} {n.system}{gear}: {_figure(n.value, p.units)}")
        if p.ratio_per_accelerator is not None:
            what = "accelerator-minutes" if p.scenario == TIME_TO_TRAIN else "per accelerator"
            lines.append(f"  {what}: {p.ratio_per_accelerator:.3f} x the published median")
    return "\n".join(lines)
