"""The report page of an MLCommons folder benchpipe did not make (audit.foreign).

Such a folder has no manifest, config or Parquet tables: the page shows the audit's verdicts,
the systems/*.json it holds, and what the audit and the logs themselves give. For a training
organization folder: the scores the audit derived beside the result summarizer's, and each
run's time to train; for an inference division folder: each performance run's latency and
throughput from its detail log. Its integrity is the folder as given, and the header says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import BenchpipeError
from benchpipe.report.data import PerformanceRun, ReportData, SystemFile, _read_json, performance_from, time_unit
from benchpipe.report.figures import SVG_STYLE, Plot, latency_distributions, throughput, time_to_train
from benchpipe.report.page import CSS, _audit, _figures, _Html, _number, _system, _table

INTEGRITY = ("Integrity comes from the folder as given: it has no manifest to check its files against, "
             "so nothing here shows that they are the files the submitter published.")
SECTIONS = (("audit", "audit"), ("system", "system"), ("training", "training"), ("inference", "inference"))


@dataclass
class ForeignData:
    folder: Path
    kind: str  # audit.foreign's TRAINING or INFERENCE
    root_sha256: str | None  # of the files as found: computed, not verified
    systems: list[SystemFile] = field(default_factory=list)
    performance: list[PerformanceRun] = field(default_factory=list)


def load_foreign(folder: Path) -> ForeignData:
    """What the page draws from the folder itself; BenchpipeError when it is no MLCommons folder."""
    from benchpipe.audit.foreign import INFERENCE, folder_root_sha256, foreign_kind

    folder = Path(folder)
    kind = foreign_kind(folder)
    if kind is None:
        raise BenchpipeError(f"{folder}: neither a benchpipe tree nor an MLCommons folder (a training organization "
                             "folder with systems/ and results/, or an inference division folder): nothing to report")
    data = ForeignData(folder, kind, folder_root_sha256(folder), _systems(folder, kind))
    if kind == INFERENCE:
        data.performance = _performance(folder)
    return data


def _systems(folder: Path, kind: str) -> list[SystemFile]:
    from benchpipe.audit.foreign import TRAINING

    pattern = "systems/*.json" if kind == TRAINING else "*/systems/*.json"
    found = [(path, _read_json(path)) for path in sorted(folder.glob(pattern))]
    return [SystemFile(path.relative_to(folder).as_posix(), d) for path, d in found if d]


def _performance(folder: Path) -> list[PerformanceRun]:
    from benchpipe.audit.foreign import division_detail_logs

    return performance_from(division_detail_logs(folder))


def training_tables(audit: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The audit's scores as the rows figures.time_to_train draws: a run per log, a line per olympic mean.

    The olympic mean is drawn unscaled, as the bars are; the scaled score is in the table.
    """
    runs, scores = [], []
    for score in audit.get("scores") or []:
        system = score["system"]
        scores.append({"target": system, "benchmark": score["benchmark"],
                       "olympic_mean_min": score["olympic_mean_min"]})
        runs += [{"target": system, "benchmark": score["benchmark"], "run": log["run"], "status": log["status"],
                  "time_to_train_min": log["time_to_train_min"]} for log in score.get("logs", [])]
    return {"runs": runs, "scores": scores}


def draw_foreign(data: ForeignData, audit: dict[str, Any]) -> list[Plot]:
    import matplotlib

    drawn = ReportData(data.folder, data.root_sha256, training_tables(audit), performance=data.performance)
    with matplotlib.rc_context(SVG_STYLE):
        return [*time_to_train(drawn), *latency_distributions(drawn), *throughput(drawn)]


def render_foreign(data: ForeignData, plots: Sequence[Plot], audit: dict[str, Any], audit_source: str,
                   version: str) -> str:
    from benchpipe.audit.foreign import TRAINING

    title = f"benchpipe report: {data.folder.name}"
    sections = {
        "audit": _audit(audit, audit_source),
        "system": _system(ReportData(data.folder, data.root_sha256, {}, systems=data.systems)),
        "training": _training(audit, [p for p in plots if p.section == "training"]) if data.kind == TRAINING else "",
        "inference": _inference(data, [p for p in plots if p.section == "inference"]) if data.kind != TRAINING else "",
    }
    present = [key for key, _ in SECTIONS if sections[key]]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        _header(data, audit, version, present),
        *(sections[key] for key in present),
        f"<footer><p>Written by benchpipe {escape(version)} from the folder as given.</p></footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(data: ForeignData, audit: dict[str, Any], version: str, present: list[str]) -> str:
    from benchpipe.audit.foreign import TRAINING

    verdict = "pass" if audit.get("passed") else "fail"
    what = "training organization folder" if data.kind == TRAINING else "inference division folder"
    benchmarks = sorted({s["benchmark"] for s in audit.get("scores") or []} | {r.benchmark for r in data.performance})
    facts = [
        ("what", f"an MLCommons {what} that benchpipe did not make"),
        ("integrity", "the folder as given (no manifest)"),
        ("root sha256", _Html(f"<code>{escape(data.root_sha256 or 'none (no files)')}</code> "
                              "(computed from the files as found, not verified)")),
        ("systems", ", ".join(s.path for s in data.systems) or "none"),
        ("benchmarks", ", ".join(benchmarks) or "none"),
        ("benchpipe", version),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{v if isinstance(v, _Html) else escape(v)}</dd>" for k, v in facts)
    links = " · ".join(f'<a href="#{key}">{escape(label)}</a>' for key, label in SECTIONS if key in present)
    return (f"<header><h1>MLCommons folder <code>{escape(data.folder.name)}</code></h1>"
            f'<p class="verdict {verdict}">audit {"PASSED" if verdict == "pass" else "FAILED"}</p>'
            f'<p id="integrity">{escape(INTEGRITY)}</p><dl>{rows}</dl><nav>{links}</nav></header>')


def _agreement(score: dict[str, Any]) -> _Html | str:
    ours, theirs = score.get("score_min"), score.get("summarizer_min")
    if ours is None or theirs is None:
        return "—"
    return _Html('<span class="match">equal</span>' if ours == theirs else '<span class="differ">differs</span>')


def _training(audit: dict[str, Any], plots: Sequence[Plot]) -> str:
    scores = sorted(audit.get("scores") or [], key=lambda s: (s["benchmark"], s["system"]))
    if not scores:
        return '<section id="training"><h2>Training</h2><p>The audit derived no scores.</p></section>'
    table = _table(
        ("system", "benchmark", "result files", "olympic mean (min)", "scaling factor", "score (min)",
         "result summarizer (min)", "agree", "note"),
        [(s["system_name"], s["benchmark"], s["runs"], _number(s["olympic_mean_min"], 10),
          _number(s["scaling_factor"], 10), _number(s["score_min"], 10), _number(s["summarizer_min"], 10),
          _agreement(s), s.get("reason") or "") for s in scores],
        numeric=(2, 3, 4, 5, 6))
    logs = [(s, log) for s in scores for log in s.get("logs", [])]
    unit, factor = time_unit([log["time_to_train_min"] for _, log in logs])
    runs = _table(
        ("system", "benchmark", "log", "status", f"time to train ({unit})"),
        [(s["system"], s["benchmark"], log["file"], log["status"],
          _number(None if log["time_to_train_min"] is None else log["time_to_train_min"] * factor))
         for s, log in logs],
        numeric=(4,))
    return ('<section id="training"><h2>Training</h2><h3>Scores</h3><p>Each score derived again from the logs '
            "(olympic mean × scaling.json's factor), beside the one MLCommons' result summarizer computes.</p>"
            + table + "<h3>Runs</h3>" + runs + _figures(plots) + "</section>")


def _inference(data: ForeignData, plots: Sequence[Plot]) -> str:
    runs = sorted(data.performance, key=lambda r: (r.benchmark, r.target, r.scenario))
    if not runs:
        return '<section id="inference"><h2>Inference</h2><p>No performance run in this folder.</p></section>'
    table = _table(
        ("system", "model", "scenario", "throughput (samples/s)", "p50 latency (ms)", "p99 latency (ms)"),
        [(r.target, r.benchmark, r.scenario, _number(r.samples_per_second), _ms(r.points_ns.get("p50")),
          _ms(r.points_ns.get("p99"))) for r in runs],
        numeric=(3, 4, 5))
    return ('<section id="inference"><h2>Inference</h2><p>Each performance run as its detail log summarises it.</p>'
            + table + _figures(plots) + "</section>")


def _ms(ns: int | None) -> str:
    return _number(None if ns is None else ns / 1e6)
