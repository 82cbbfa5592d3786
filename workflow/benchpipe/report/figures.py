"""The report's plots, drawn with matplotlib's object API (no pyplot state) into SVG.

SVG keeps the text selectable and the file small; a fixed hash salt and no date make the
same tree draw the same bytes, so a report can be compared across machines.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from benchpipe.report.data import LATENCY_POINTS, ReportData

WIDTH_IN, HEIGHT_IN = 7.0, 3.4
SVG_STYLE = {"svg.hashsalt": "benchpipe", "svg.fonttype": "none", "font.size": 9}


@dataclass(frozen=True)
class Plot:
    id: str  # an HTML id, unique in the page
    section: str  # "training" or "inference"
    title: str
    svg: bytes


def draw_all(data: ReportData) -> list[Plot]:
    import matplotlib

    with matplotlib.rc_context(SVG_STYLE):
        return [
            *time_to_train(data),
            *eval_accuracy(data),
            *latency_distributions(data),
            *throughput(data),
        ]


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")
    return figure, figure.subplots()


def _svg(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _log_scale(axis) -> None:
    """Log scale labelled in plain numbers (1, 2, 5, 10), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_major_formatter(plain)
    axis.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def _colours(keys: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {key: palette(i % 10) for i, key in enumerate(keys)}


def time_to_train(data: ReportData) -> list[Plot]:
    """Per benchmark: one bar per run, grouped by target, and each target's olympic mean."""
    plots = []
    scores = {(s["target"], s["benchmark"]): s for s in data.rows("scores")}
    for benchmark in data.values("benchmark", "runs"):
        runs = [r for r in data.rows("runs") if r["benchmark"] == benchmark]
        targets = sorted({r["target"] for r in runs})
        colours = _colours(targets)
        figure, ax = _figure()
        x, ticks, labels = 0, [], []
        for target in targets:
            mine = sorted((r for r in runs if r["target"] == target), key=lambda r: r["run"])
            start = x
            for run in mine:
                ok = run["status"] == "success"
                minutes = run["time_to_train_min"] or 0.0
                ax.bar(x, minutes, color=colours[target] if ok else "lightgrey", edgecolor="black", linewidth=0.5,
                       hatch=None if ok else "//", label=target if x == start else None)
                if not ok:
                    ax.annotate(run["status"], (x, minutes), ha="center", va="bottom", fontsize=7)
                ticks.append(x)
                labels.append(f"run {run['run']}")
                x += 1
            score = scores.get((target, benchmark), {}).get("olympic_mean_min")
            if score is not None:
                ax.hlines(score, start - 0.4, x - 0.6, colors="black", linestyles="--", linewidth=1)
                ax.annotate(f"olympic mean {score:.3g} min", (x - 0.6, score), ha="right", va="bottom", fontsize=7)
            x += 1  # a gap between targets
        ax.set_xticks(ticks, labels, rotation=45, ha="right")
        ax.set_ylabel("time to train (min)")
        ax.set_title(f"{benchmark}: time to train per run")
        ax.legend(title="target", fontsize=7)
        plots.append(Plot(f"time-to-train-{benchmark}", "training", f"{benchmark}: time to train", _svg(figure)))
    return plots


def eval_accuracy(data: ReportData) -> list[Plot]:
    """Per benchmark: every run's evaluation accuracy by epoch, against the quality target."""
    plots = []
    for benchmark in sorted({p.benchmark for p in data.evals}):
        series: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
        for point in data.evals:
            if point.benchmark == benchmark:
                series[(point.target, point.run)].append((point.epoch, point.accuracy))
        colours = _colours(sorted({target for target, _ in series}))
        figure, ax = _figure()
        for (target, run), points in sorted(series.items()):
            points.sort()
            ax.plot([e for e, _ in points], [a for _, a in points], marker="o", markersize=3, linewidth=1,
                    color=colours[target], alpha=0.8, label=f"{target} run {run}")
        targets = {r["quality_target"] for r in data.rows("runs") if r["benchmark"] == benchmark}
        for quality in sorted(t for t in targets if t is not None):
            ax.axhline(quality, color="red", linestyle="--", linewidth=1)
            ax.annotate(f"target {quality:g}", (0, quality), xycoords=("axes fraction", "data"), va="bottom",
                        fontsize=7, color="red")
        ax.set_xlabel("epoch")
        ax.set_ylabel("eval accuracy")
        ax.set_title(f"{benchmark}: eval accuracy by epoch")
        ax.legend(fontsize=6, ncols=2)
        plots.append(Plot(f"eval-accuracy-{benchmark}", "training", f"{benchmark}: eval accuracy", _svg(figure)))
    return plots


def latency_distributions(data: ReportData) -> list[Plot]:
    """Per benchmark and scenario: each target's latency from min to max, log scale, with the bound."""
    plots = []
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for curve in data.performance:
        groups[(curve.benchmark, curve.scenario)].append(curve)
    labels = [label for label, _ in LATENCY_POINTS]
    for (benchmark, scenario), curves in sorted(groups.items()):
        colours = _colours(sorted({c.target for c in curves}))
        figure, ax = _figure()
        for curve in sorted(curves, key=lambda c: c.target):
            xs = [i for i, label in enumerate(labels) if label in curve.points_ns]
            ys = [curve.points_ns[labels[i]] / 1e6 for i in xs]
            ax.plot(xs, ys, marker="o", markersize=3, color=colours[curve.target], label=curve.target)
        bounds = {c.bound_ns for c in curves if c.bound_ns}
        for bound in sorted(bounds):
            ax.axhline(bound / 1e6, color="red", linestyle="--", linewidth=1)
            ax.annotate(f"p99 bound {bound / 1e6:g} ms", (0, bound / 1e6), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=7, color="red")
        ax.set_xticks(range(len(labels)), labels)
        _log_scale(ax)
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{benchmark} {scenario}: latency distribution (performance run)")
        ax.legend(title="target", fontsize=7)
        plots.append(Plot(f"latency-{benchmark}-{scenario}", "inference", f"{benchmark} {scenario}: latency",
                          _svg(figure)))
    return plots


def throughput(data: ReportData) -> list[Plot]:
    """Per benchmark: samples/s of each scenario's performance run, one bar per target.

    MultiStream is absent: LoadGen reports its latency only.
    """
    plots = []
    runs = [r for r in data.performance if r.samples_per_second]
    for benchmark in sorted({r.benchmark for r in runs}):
        mine = [r for r in runs if r.benchmark == benchmark]
        scenarios = sorted({r.scenario for r in mine})
        targets = sorted({r.target for r in mine})
        colours = _colours(targets)
        width = 0.8 / len(targets)
        figure, ax = _figure()
        for j, target in enumerate(targets):
            by_scenario = {r.scenario: r.samples_per_second for r in mine if r.target == target}
            xs = [i + j * width for i, s in enumerate(scenarios) if s in by_scenario]
            ys = [by_scenario[s] for s in scenarios if s in by_scenario]
            bars = ax.bar(xs, ys, width, color=colours[target], edgecolor="black", linewidth=0.5, label=target)
            ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7)
        ax.set_xticks([i + width * (len(targets) - 1) / 2 for i in range(len(scenarios))], scenarios)
        _log_scale(ax)
        ax.set_ylabel("samples/s")
        ax.set_title(f"{benchmark}: throughput per scenario (performance run)")
        ax.legend(title="target", fontsize=7)
        plots.append(Plot(f"throughput-{benchmark}", "inference", f"{benchmark}: throughput", _svg(figure)))
    return plots
