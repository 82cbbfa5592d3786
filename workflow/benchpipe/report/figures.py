"""The report's plots, drawn with matplotlib's object API (no pyplot state) into SVG text
that the page holds inline.

SVG keeps the text selectable and the file small; a fixed hash salt and no date make the
same tree draw the same bytes, so a report can be compared across machines. Each plot's ids
carry the plot's own prefix: inline, every SVG shares the page's one id space.

Axes are read as drawn: bars on a linear axis from zero, so that a bar half as tall is half
as much; the latency distributions alone span decades, on a log axis that says so.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from benchpipe.report.data import LATENCY_POINTS, PerformanceRun, ReportData, plain, time_unit

WIDTH_IN, HEIGHT_IN = 7.0, 3.4
SVG_STYLE = {"svg.hashsalt": "benchpipe", "svg.fonttype": "none", "font.size": 9}


@dataclass(frozen=True)
class Plot:
    id: str  # an HTML id, unique in the page
    section: str  # "training" or "inference"
    title: str
    svg: str  # an <svg> element, without XML declaration or doctype
    note: str = ""  # how to read it, under the title


def draw_all(data: ReportData) -> list[Plot]:
    import matplotlib

    with matplotlib.rc_context(SVG_STYLE):
        return [
            *time_to_train(data),
            *eval_accuracy(data),
            *latency_distributions(data),
            *throughput(data),
            *published_comparison(data),
        ]


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")
    return figure, figure.subplots()


_ID = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def _svg(figure, prefix: str) -> str:
    """The figure as an inline <svg> element whose ids (and references to them) start with ``prefix``."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return _ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)


def _plain(value: float, _=None) -> str:
    """A tick label as a reader writes it: 20,000 or 0.5, never 2e+04."""
    return plain(value, 3)


def _log_scale(axis) -> None:
    """Log scale labelled in plain numbers (1, 2, 5, 10), with a grid to read the decades by."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_yscale("log")
    axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_major_formatter(FuncFormatter(_plain))
    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.grid(True, axis="y", which="major", linewidth=0.4, alpha=0.5)


def _linear_scale(axis) -> None:
    """Linear from zero, in plain numbers."""
    from matplotlib.ticker import FuncFormatter

    axis.set_ylim(bottom=0)
    axis.yaxis.set_major_formatter(FuncFormatter(_plain))
    axis.grid(True, axis="y", linewidth=0.4, alpha=0.5)


def _colours(keys: list[Any]) -> dict[Any, Any]:
    """One distinct colour per key: tab10 up to ten keys, tab20 up to twenty, then a sampled map."""
    from matplotlib import colormaps

    if len(keys) <= 10:
        palette = colormaps["tab10"]
        return {key: palette(i) for i, key in enumerate(keys)}
    if len(keys) <= 20:
        palette = colormaps["tab20"]
        return {key: palette(i) for i, key in enumerate(keys)}
    palette = colormaps["turbo"]
    return {key: palette(i / (len(keys) - 1)) for i, key in enumerate(keys)}


def time_to_train(data: ReportData) -> list[Plot]:
    """Per benchmark: one bar per run, grouped by target, and each target's olympic mean."""
    plots = []
    scores = {(s["target"], s["benchmark"]): s for s in data.rows("scores")}
    for benchmark in data.values("benchmark", "runs"):
        runs = [r for r in data.rows("runs") if r["benchmark"] == benchmark]
        targets = sorted({r["target"] for r in runs})
        colours = _colours(targets)
        unit, factor = time_unit([r["time_to_train_min"] for r in runs])
        figure, ax = _figure()
        x, ticks, labels = 0, [], []
        for target in targets:
            mine = sorted((r for r in runs if r["target"] == target), key=lambda r: r["run"])
            start = x
            for run in mine:
                ok = run["status"] == "success"
                time = (run["time_to_train_min"] or 0.0) * factor
                ax.bar(x, time, color=colours[target] if ok else "lightgrey", edgecolor="black", linewidth=0.5,
                       hatch=None if ok else "//", label=target if x == start else None)
                if not ok:
                    ax.annotate(run["status"], (x, time), ha="center", va="bottom", fontsize=7)
                ticks.append(x)
                labels.append(f"run {run['run']}")
                x += 1
            row = scores.get((target, benchmark), {})
            score = row.get("olympic_mean_min")
            if score is not None:
                score *= factor
                # The line is the unscaled mean, on the bars' scale; a score the RCP checker scales
                # is stated beside it.
                label = f"olympic mean {_plain(score)} {unit}"
                scaling, scaled = row.get("scaling_factor"), row.get("score_min")
                if scaling not in (None, 1.0) and scaled is not None:
                    label += f"; score {_plain(scaled * factor)} {unit} (× {plain(scaling, 6)})"
                ax.hlines(score, start - 0.4, x - 0.6, colors="black", linestyles="--", linewidth=1)
                ax.annotate(label, (x - 0.6, score), ha="right", va="bottom",
                            fontsize=7, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
            x += 1  # a gap between targets
        ax.set_xticks(ticks, labels, rotation=45, ha="right")
        _linear_scale(ax)
        ax.set_ylabel(f"time to train ({unit})")
        ax.set_title(f"{benchmark}: time to train per run")
        ax.legend(title="target", fontsize=7)
        plot_id = f"time-to-train-{benchmark}"
        plots.append(Plot(plot_id, "training", f"{benchmark}: time to train", _svg(figure, plot_id)))
    return plots


def eval_accuracy(data: ReportData) -> list[Plot]:
    """Per benchmark: every run's evaluation accuracy by epoch, against the quality target."""
    plots = []
    for benchmark in sorted({p.benchmark for p in data.evals}):
        series: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
        for point in data.evals:
            if point.benchmark == benchmark:
                series[(point.target, point.run)].append((point.epoch, point.accuracy))
        figure = eval_accuracy_figure(series)
        ax = figure.axes[0]
        targets = {r["quality_target"] for r in data.rows("runs") if r["benchmark"] == benchmark}
        for quality in sorted(t for t in targets if t is not None):
            ax.axhline(quality, color="red", linestyle="--", linewidth=1)
            ax.annotate(f"target {quality:g}", (0, quality), xycoords=("axes fraction", "data"), va="bottom",
                        fontsize=7, color="red")
        ax.set_title(f"{benchmark}: eval accuracy by epoch")
        plot_id = f"eval-accuracy-{benchmark}"
        plots.append(Plot(plot_id, "training", f"{benchmark}: eval accuracy", _svg(figure, plot_id)))
    return plots


LINE_STYLES = ("-", "--", ":", "-.")


def eval_accuracy_figure(series: dict[tuple[str, int], list[tuple[float, float]]]):
    """One line per run, each its own colour (a target's runs share a line style), the legend
    beside the axes where it hides no line."""
    keys = sorted(series)
    colours = _colours(keys)
    styles = {t: LINE_STYLES[i % len(LINE_STYLES)] for i, t in enumerate(sorted({t for t, _ in keys}))}
    several_targets = len(styles) > 1
    figure, ax = _figure()
    for target, run in keys:
        points = sorted(series[(target, run)])
        label = f"{target} run {run}" if several_targets else f"run {run}"
        ax.plot([e for e, _ in points], [a for _, a in points], marker="o", markersize=3, linewidth=1.2,
                color=colours[(target, run)], linestyle=styles[target], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("eval accuracy")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              ncols=1 if len(keys) <= 12 else 2)
    return figure


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
        plot_id = f"latency-{benchmark}-{scenario}"
        plots.append(Plot(plot_id, "inference", f"{benchmark} {scenario}: latency", _svg(figure, plot_id),
                          note="Log scale: each labelled gridline is 1, 2 or 5 times a power of ten, so equal "
                               "steps up are equal ratios, not equal differences."))
    return plots


def throughput(data: ReportData) -> list[Plot]:
    """Per benchmark: samples/s of each scenario's performance run, one bar per target.

    MultiStream is absent: LoadGen reports its latency only.
    """
    plots = []
    runs = [r for r in data.performance if r.samples_per_second]
    for benchmark in sorted({r.benchmark for r in runs}):
        figure = throughput_figure([r for r in runs if r.benchmark == benchmark])
        figure.axes[0].set_title(f"{benchmark}: throughput per scenario (performance run)")
        plot_id = f"throughput-{benchmark}"
        plots.append(Plot(plot_id, "inference", f"{benchmark}: throughput", _svg(figure, plot_id)))
    return plots


def throughput_figure(runs: list[PerformanceRun]):
    """Bars on a linear axis from zero: Server at 69 % of Offline is drawn 69 % as tall."""
    scenarios = sorted({r.scenario for r in runs})
    targets = sorted({r.target for r in runs})
    colours = _colours(targets)
    width = 0.8 / len(targets)
    figure, ax = _figure()
    for j, target in enumerate(targets):
        by_scenario = {r.scenario: r.samples_per_second for r in runs if r.target == target}
        xs = [i + j * width for i, s in enumerate(scenarios) if s in by_scenario]
        ys = [by_scenario[s] for s in scenarios if s in by_scenario]
        bars = ax.bar(xs, ys, width, color=colours[target], edgecolor="black", linewidth=0.5, label=target)
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7)
    ax.set_xticks([i + width * (len(targets) - 1) / 2 for i in range(len(scenarios))], scenarios)
    _linear_scale(ax)
    ax.margins(y=0.1)  # room for the labels above the bars
    ax.set_ylabel("samples/s")
    ax.legend(title="target", fontsize=7)
    return figure


def published_comparison(data: ReportData) -> list[Plot]:
    """Per benchmark and scenario with published results of its model: the published figures as
    dots, each target's result as a line across them; a result that is not comparable is drawn
    grey and dashed, and the caption says why."""
    comparison = data.comparison
    if comparison is None:
        return []
    from benchpipe.report.compare import verdict

    groups: dict[tuple[str, str], list] = defaultdict(list)
    for placement in comparison.placements:
        if placement.peers:
            groups[(placement.benchmark, placement.scenario)].append(placement)
    plots = []
    for (benchmark, scenario), placements in sorted(groups.items()):
        peers = placements[0].peers
        units = placements[0].units
        figure, ax = _figure()
        figure.set_figheight(2.2)
        # The published figures spread along the axis, stacked where they coincide.
        ax.scatter(peers, [0] * len(peers), s=28, color="#4c72b0", alpha=0.7, label=f"published ({len(peers)})",
                   zorder=2)
        colours = _colours(sorted({p.target for p in placements}))
        for p in sorted(placements, key=lambda p: p.target):
            comparable = not (p.not_comparable or p.in_development_tree)
            ax.axvline(p.value, color=colours[p.target] if comparable else "grey", linewidth=2,
                       linestyle="-" if comparable else "--",
                       label=f"{p.target}" + ("" if comparable else " (not comparable)"), zorder=3)
        values = [*peers, *(p.value for p in placements)]
        if min(values) > 0 and max(values) / min(values) > 20:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_tick_formatter())
        ax.set_yticks([])
        lower = units.startswith("Latency") or units == "minutes"  # a latency, or a time to train
        ax.set_xlabel(units + (" (lower is better)" if lower else " (higher is better)"))
        round_ = comparison.training_round if lower and units == "minutes" else comparison.round
        ax.set_title(f"{benchmark} {scenario} among the published results of "
                     f"{placements[0].mlperf_name} ({comparison.division}, {round_})")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        plot_id = f"published-{benchmark}-{scenario.replace(' ', '-')}"
        note = " ".join(verdict(p, comparison) + "." for p in placements)
        plots.append(Plot(plot_id, "published", f"{benchmark} {scenario}: among the published results",
                          _svg(figure, plot_id), note=note))
    return plots


def _tick_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(_plain)
