"""The report as one self-contained HTML page: inline CSS, plots as SVG data URIs, no script.

Nothing in it is fetched: it opens from a mail attachment or an air-gapped share. Every value
from the tree is escaped, since a tree is input, not trusted markup.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from benchpipe.report.data import ReportData
from benchpipe.report.figures import Plot

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; word-break: break-all; }
.pass { color: #0a6b2d; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
.skipped { color: #8a6d00; font-weight: bold; }
.verdict { display: inline-block; padding: 0.2em 0.8em; border-radius: 0.3em; border: 2px solid; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; } dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
dt { color: #555; } dd { margin: 0; }
"""


def render(data: ReportData, plots: Sequence[Plot], audit: dict[str, Any], audit_source: str, version: str) -> str:
    title = f"benchpipe report: {data.tree.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        _header(data, audit, version),
        _audit(audit, audit_source),
        _training(data, [p for p in plots if p.section == "training"]),
        _inference(data, [p for p in plots if p.section == "inference"]),
        _provenance(data),
        f"<footer><p>Written by benchpipe {escape(version)} from the tree alone.</p></footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _status(status: str) -> str:
    return f'<span class="{escape(status)}">{escape(status.upper())}</span>'


def _header(data: ReportData, audit: dict[str, Any], version: str) -> str:
    verdict = "pass" if audit.get("passed") else "fail"
    facts = [
        ("round", ", ".join(data.values("round", "runs", "inference")) or "none"),
        ("division", ", ".join(data.values("division", "runs", "inference")) or "none"),
        ("targets", ", ".join(data.values("target", "runs", "inference", "provenance")) or "none"),
        ("benchmarks", ", ".join(data.values("benchmark", "runs", "inference")) or "none"),
        ("root sha256", f"<code>{escape(data.root_sha256 or 'none (manifest format 1)')}</code>"),
        ("benchpipe", version),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{v if k == 'root sha256' else escape(v)}</dd>" for k, v in facts)
    return (f"<header><h1>Submission <code>{escape(data.tree.name)}</code></h1>"
            f'<p class="verdict {verdict}">audit {"PASSED" if verdict == "pass" else "FAILED"}</p>'
            f"<dl>{rows}</dl>"
            '<nav><a href="#audit">audit</a> · <a href="#training">training</a> · '
            '<a href="#inference">inference</a> · <a href="#provenance">provenance</a></nav></header>')


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            text = value if isinstance(value, _Html) else escape("" if value is None else str(value))
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Html(str):
    """Markup made here, not taken from the tree: not escaped again."""


def _audit(audit: dict[str, Any], source: str) -> str:
    rows = []
    for item in audit.get("items", []):
        reasons = item.get("reasons") or []
        listed = _Html("<br>".join(escape(r) for r in reasons) or "—")
        rows.append((item["name"], _Html(_status(item["status"])), item.get("checked", 0), listed))
    return (f'<section id="audit"><h2>Audit</h2><p>{escape(source)}</p>'
            + _table(("item", "status", "checked", "reasons"), rows, numeric=(2,)) + "</section>")


def _figures(plots: Sequence[Plot]) -> str:
    out = []
    for plot in plots:
        uri = "data:image/svg+xml;base64," + base64.b64encode(plot.svg).decode("ascii")
        out.append(f'<figure id="{escape(plot.id)}"><img src="{uri}" alt="{escape(plot.title)}">'
                   f"<figcaption>{escape(plot.title)}</figcaption></figure>")
    return "".join(out)


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _training(data: ReportData, plots: Sequence[Plot]) -> str:
    if not data.rows("runs"):
        return '<section id="training"><h2>Training</h2><p>No training results in this tree.</p></section>'
    scores = _table(
        ("target", "benchmark", "division", "runs", "successful", "score (olympic mean, min)", "note"),
        [(s["target"], s["benchmark"], s["division"], s["runs"], s["successful_runs"], _number(s["olympic_mean_min"]),
          s["reason"]) for s in sorted(data.rows("scores"), key=lambda s: (s["benchmark"], s["target"]))],
        numeric=(3, 4, 5))
    runs = _table(
        ("target", "benchmark", "run", "seed", "status", "time to train (min)", "epochs", "best eval accuracy",
         "quality target"),
        [(r["target"], r["benchmark"], r["run"], r["seed"], r["status"], _number(r["time_to_train_min"]), r["epochs"],
          _number(r["best_eval_accuracy"]), _number(r["quality_target"]))
         for r in sorted(data.rows("runs"), key=lambda r: (r["benchmark"], r["target"], r["run"]))],
        numeric=(2, 3, 5, 6, 7, 8))
    return ('<section id="training"><h2>Training</h2><h3>Scores</h3>' + scores + "<h3>Runs</h3>" + runs
            + _figures(plots) + "</section>")


def _metric(row: dict[str, Any]) -> str:
    latency, throughput = row.get("result_latency_ns"), row.get("result_samples_per_s")
    if latency is not None:
        return f"{latency / 1e6:.4g} ms early-stopping latency"
    return "" if throughput is None else f"{throughput:.4g} samples/s"


def _inference(data: ReportData, plots: Sequence[Plot]) -> str:
    rows = data.rows("inference")
    if not rows:
        return '<section id="inference"><h2>Inference</h2><p>No inference results in this tree.</p></section>'
    table = _table(
        ("target", "benchmark", "scenario", "mode", "validity", "result", "p99 latency (ms)", "accuracy"),
        [(r["target"], r["benchmark"], r["scenario"], r["mode"], r["result_validity"] or "", _metric(r),
          _number(None if r["latency_p99_ns"] is None else r["latency_p99_ns"] / 1e6), _number(r["accuracy"]))
         for r in sorted(rows, key=lambda r: (r["benchmark"], r["target"], r["scenario"], r["mode"]))],
        numeric=(6, 7))
    return '<section id="inference"><h2>Inference</h2>' + table + _figures(plots) + "</section>"


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _provenance(data: ReportData) -> str:
    rows = data.rows("provenance")
    if not rows:
        return '<section id="provenance"><h2>Provenance</h2><p>No provenance recorded.</p></section>'
    table = _table(
        ("target", "benchmark", "job", "runtime", "image digest", "code commit", "dirty", "TensorFlow", "LoadGen"),
        [(r["target"], r["benchmark"], r["job"], r["runtime"], r["image_digest"] or "",
          (r["code_commit"] or "")[:12], _flag(r["code_dirty"]), r["tensorflow_version"], r["loadgen_version"])
         for r in sorted(rows, key=lambda r: (r["benchmark"], r["target"], r["job"]))])
    return '<section id="provenance"><h2>Provenance</h2>' + table + "</section>"
