"""A tree's results among the published ones: ``benchpipe compare TREE --published DIR``.

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts import registry
from benchpipe.contracts.config import SYSTEM_TYPES
from benchpipe.contracts.errors import BenchpipeError


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
    if reasons or development:
        return placement
    peers = []
    for row in published:
        if (row["family"], row["benchmark"], row["scenario"], row["division"], row["round"]) != (
                "inference", mlperf, result["scenario"], division, round_) or row["category"] not in categories:
            continue
        theirs = _published_value(row, units)
        if theirs is not None:
            peers.append((theirs, row))
    if not peers:
        return Placement(**{**placement.__dict__, "count": 0})

    def better(theirs: float) -> bool:
        return theirs > value if higher else theirs < value

    ahead = [(v, r) for v, r in peers if better(v)]
    behind = [(v, r) for v, r in peers if not better(v)]
    nearest_above = min(ahead, key=lambda p: abs(p[0] - value)) if ahead else None
    nearest_below = min(behind, key=lambda p: abs(p[0] - value)) if behind else None
    ratio = None
    per_accelerator = sorted(r["result_per_accelerator"] for _, r in peers if r.get("result_per_accelerator"))
    if higher and accelerators and per_accelerator:
        ratio = (value / accelerators) / per_accelerator[len(per_accelerator) // 2]
    return Placement(**{**placement.__dict__, "count": len(peers), "rank": len(ahead) + 1,
                        "percentile": 100.0 * len(behind) / len(peers),
                        "above": _neighbour(nearest_above), "below": _neighbour(nearest_below),
                        "ratio_per_accelerator": ratio})


def _neighbour(found: tuple[float, dict[str, Any]] | None) -> Neighbour | None:
    if found is None:
        return None
    value, row = found
    return Neighbour(row["submitter"], row["system"], _accelerator_text(row), value)


@dataclass(frozen=True)
class Comparison:
    tree: Path
    division: str
    round: str
    development: list[str]  # why the tree is a development tree, whose results none are comparable
    placements: list[Placement]


def compare_tree(tree: Path, published_dir: Path, round_: str | None = None) -> Comparison:
    """Every performance result of ``tree`` placed among the published results in ``published_dir``."""
    from benchpipe.published.table import read_published
    from benchpipe.report.data import load
    from benchpipe.report.development import development_reasons

    data = load(tree)
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
    return Comparison(Path(tree), division, round_, development, placements)


def _figure(value: float, units: str) -> str:
    return f"{value:,.6g} {units.replace('Latency ', '').strip('()') if units.startswith('Latency') else units}"


def format_comparison(comparison: Comparison) -> str:
    """The lines ``benchpipe compare`` prints."""
    lines = []
    if comparison.development:
        lines.append(f"{comparison.tree}: a development tree, whose results are not comparable with published ones:")
        lines += [f"  - {reason}" for reason in comparison.development]
    if not comparison.placements:
        lines.append(f"{comparison.tree}: no inference performance result to compare")
    for p in comparison.placements:
        head = f"{p.target} {p.benchmark} {p.scenario}: {_figure(p.value, p.units)}"
        if p.not_comparable or p.in_development_tree:
            lines.append(f"{head}: not comparable: "
                         f"{'; '.join(p.not_comparable) or 'the tree is a development tree (above)'}")
            continue
        among = f"{p.mlperf_name} {p.scenario}, {comparison.division}, {comparison.round}"
        if p.count == 0:
            lines.append(f"{head}: no published result of {among} in its categories")
            continue
        lines.append(f"{head}: rank {p.rank} of {p.count + 1} among the {p.count} published results of {among}; "
                     f"percentile {p.percentile:.1f}")
        for label, n in (("above", p.above), ("below", p.below)):
            if n is not None:
                gear = f" ({n.accelerators})" if n.accelerators else ""
                lines.append(f"  nearest {label}: {n.submitter} {n.system}{gear}: {_figure(n.value, p.units)}")
        if p.ratio_per_accelerator is not None:
            lines.append(f"  per accelerator: {p.ratio_per_accelerator:.3f} x the published median")
    return "\n".join(lines)
