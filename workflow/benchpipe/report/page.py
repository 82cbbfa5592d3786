"""The report as one self-contained HTML page: inline CSS, plots as inline SVG, no script.

Nothing in it is fetched: it opens from a mail attachment or an air-gapped share. Every value
from the tree is escaped, since a tree is input, not trusted markup.

It reads top down as an auditor asks: what the tree is (a banner when it is a development
tree), the audit's verdicts with the checks behind each, the system, the results, whether
they were reproduced, and where they came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from benchpipe.report.data import ReportData, SystemFile, plain, time_unit
from benchpipe.report.development import development_reasons
from benchpipe.report.figures import Plot

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; word-break: break-all; }
.pass, .match { color: #0a6b2d; font-weight: bold; } .fail, .differ { color: #b00020; font-weight: bold; }
.skipped, .not-reproduced { color: #8a6d00; font-weight: bold; }
.verdict { display: inline-block; padding: 0.2em 0.8em; border-radius: 0.3em; border: 2px solid; }
#development { background: #fff4d6; border: 2px solid #c98a00; border-radius: 0.3em; padding: 0.2em 1em; }
#development h2 { border: none; margin-top: 0.4em; }
details summary { cursor: pointer; } details ul { margin: 0.3em 0; padding-left: 1.2em; font-size: 12px; }
figure { margin: 1.2em 0; } figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; } dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
dt { color: #555; } dd { margin: 0; }
"""
SECTIONS = (("development", "what the tree is"), ("audit", "audit"), ("system", "system"), ("training", "training"),
            ("inference", "inference"), ("published", "among the published"), ("reproduce", "reproduction"),
            ("provenance", "provenance"))


def render(data: ReportData, plots: Sequence[Plot], audit: dict[str, Any], audit_source: str, version: str) -> str:
    title = f"benchpipe report: {data.tree.name}"
    sections = {
        "development": _development(development_reasons(data)),
        "audit": _audit(audit, audit_source),
        "system": _system(data),
        "training": _training(data, [p for p in plots if p.section == "training"]),
        "inference": _inference(data, [p for p in plots if p.section == "inference"]),
        "published": _published(data, [p for p in plots if p.section == "published"]),
        "reproduce": _reproduce(data),
        "provenance": _provenance(data),
    }
    present = [key for key, _ in SECTIONS if sections[key]]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        sections["development"],  # first: what the tree is, before any of its figures
        _header(data, audit, version, present),
        *(sections[key] for key in present if key != "development"),
        f"<footer><p>Written by benchpipe {escape(version)} from the tree alone.</p></footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


class _Html(str):
    """Markup made here, not taken from the tree: not escaped again."""


def _status(status: str) -> _Html:
    return _Html(f'<span class="{escape(status.replace(" ", "-"))}">{escape(status.upper())}</span>')


def _development(reasons: list[str]) -> str:
    if not reasons:
        return ""
    items = "".join(f"<li>{escape(r)}</li>" for r in reasons)
    return ('<section id="development" role="note"><h2>Development tree: not valid for an MLPerf round</h2>'
            "<p>Its results show that the pipeline works; they are not results a round would take, because:</p>"
            f"<ul>{items}</ul></section>")


def _header(data: ReportData, audit: dict[str, Any], version: str, present: list[str]) -> str:
    verdict = "pass" if audit.get("passed") else "fail"
    facts = [
        ("round", ", ".join(data.values("round", "runs", "inference")) or "none"),
        ("division", ", ".join(data.values("division", "runs", "inference")) or "none"),
        ("targets", ", ".join(data.values("target", "runs", "inference", "provenance")) or "none"),
        ("benchmarks", ", ".join(data.values("benchmark", "runs", "inference")) or "none"),
        ("root sha256", _Html(f"<code>{escape(data.root_sha256 or 'none (manifest format 1)')}</code>")),
        ("benchpipe", version),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{v if isinstance(v, _Html) else escape(v)}</dd>" for k, v in facts)
    links = " · ".join(f'<a href="#{key}">{escape(label)}</a>' for key, label in SECTIONS if key in present)
    return (f"<header><h1>Submission <code>{escape(data.tree.name)}</code></h1>"
            f'<p class="verdict {verdict}">audit {"PASSED" if verdict == "pass" else "FAILED"}</p>'
            f"<dl>{rows}</dl><nav>{links}</nav></header>")


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


def _listing(lines: Sequence[str], summary: str) -> _Html:
    """``lines`` folded under ``summary``: open it to see them."""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return _Html(f"<details><summary>{escape(summary)}</summary><ul>{items}</ul></details>")


def _audit(audit: dict[str, Any], source: str) -> str:
    rows = []
    for item in audit.get("items", []):
        reasons = item.get("reasons") or []
        listed = _Html("<br>".join(escape(r) for r in reasons) or "—")
        checked = item.get("checked", 0)
        # Reports written before items named their checks have the count alone.
        details = item.get("details") or []
        rows.append((item["name"], _status(item["status"]), _listing(details, str(checked)) if details else checked,
                     listed))
    kind = audit.get("kind")
    what = ("<p>A foreign MLCommons tree: audited from its MLPerf folders, without benchpipe's manifest.</p>"
            if kind == "foreign" else "")
    return (f'<section id="audit"><h2>Audit</h2><p>{escape(source)} Open a count to see the checks behind it.</p>'
            + what + _table(("item", "status", "checked", "reasons"), rows, numeric=(2,)) + "</section>")


# What a reader asks of a system, in that order: (label, system description field).
SYSTEM_FIELDS = (
    ("system", "system_name"), ("type", "system_type"), ("nodes", "number_of_nodes"),
    ("CPU", "host_processor_model_name"), ("CPUs per node", "host_processors_per_node"),
    ("cores", "host_processor_core_count"), ("vCPUs", "host_processor_vcpu_count"),
    ("CPU frequency", "host_processor_frequency"), ("CPU caches", "host_processor_caches"),
    ("memory", "host_memory_capacity"), ("storage", "host_storage_type"),
    ("accelerators per node", "accelerators_per_node"), ("accelerator", "accelerator_model_name"),
    ("accelerator memory", "accelerator_memory_capacity"), ("cooling", "cooling"),
    ("framework", "framework"), ("other software", "other_software_stack"),
    ("operating system", "operating_system"), ("hardware notes", "hw_notes"), ("software notes", "sw_notes"),
)
# The software each job recorded (provenance), as the stack the results came from.
STACK_FIELDS = (
    ("runtime", "runtime"), ("runtime version", "runtime_version"), ("image", "image"),
    ("image digest", "image_digest"), ("Python", "python_version"), ("TensorFlow", "tensorflow_version"),
    ("LoadGen", "loadgen_version"), ("mlperf-logging", "mlperf_logging_version"),
    ("benchpipe", "benchpipe_version"), ("NVIDIA driver", "host_driver_version"), ("CUDA", "host_cuda_version"),
)


def _system(data: ReportData) -> str:
    parts = ['<section id="system"><h2>System</h2>']
    if data.systems:
        parts.append(_systems_table(data.systems))
    else:
        parts.append("<p>No system description in this tree.</p>")
    stacks = _stacks(data.rows("provenance"))
    if stacks:
        parts.append("<h3>Software stack (provenance)</h3>" + stacks)
    return "".join(parts) + "</section>"


def _systems_table(systems: Sequence[SystemFile]) -> str:
    """One column per distinct system: a target described once for training and once for
    inference shows once, headed by both files."""
    columns: dict[tuple, list[str]] = {}
    for system in systems:
        values = tuple(str(system.description.get(key, "")) for _, key in SYSTEM_FIELDS)
        columns.setdefault(values, []).append(system.path)
    headers = ["", *(_Html("<br>".join(f"<code>{escape(p)}</code>" for p in paths)) for paths in columns.values())]
    rows = [(label, *(values[i] for values in columns)) for i, (label, _) in enumerate(SYSTEM_FIELDS)
            if any(values[i] for values in columns)]
    head = "".join(f"<th>{h if isinstance(h, _Html) else escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + f"<th>{escape(row[0])}</th>" + "".join(f"<td>{escape(v)}</td>" for v in row[1:])
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _stacks(rows: list[dict[str, Any]]) -> str:
    """Each distinct software stack the jobs ran on, with how many jobs of which kind ran on it."""
    stacks: dict[tuple, list[str]] = {}
    for row in rows:
        values = (row.get("target"), *(row.get(key) for _, key in STACK_FIELDS))
        stacks.setdefault(values, []).append(str(row.get("job")))
    if not stacks:
        return ""
    shown = [i for i, (_, _key) in enumerate(STACK_FIELDS) if any(v[i + 1] for v in stacks)]
    headers = ("target", *(STACK_FIELDS[i][0] for i in shown), "jobs")
    table_rows = [(values[0], *(values[i + 1] for i in shown), f"{len(jobs)} ({', '.join(sorted(set(jobs)))})")
                  for values, jobs in sorted(stacks.items(), key=lambda kv: tuple(str(v) for v in kv[0]))]
    return _table(headers, table_rows)


def _figures(plots: Sequence[Plot]) -> str:
    out = []
    for plot in plots:
        note = f"<br>{escape(plot.note)}" if plot.note else ""
        # The SVG is matplotlib's, drawn here; its text came from the tree escaped by matplotlib.
        out.append(f'<figure id="{escape(plot.id)}" role="img" aria-label="{escape(plot.title)}">{plot.svg}'
                   f"<figcaption>{escape(plot.title)}{note}</figcaption></figure>")
    return "".join(out)


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else plain(value, digits)


def _training(data: ReportData, plots: Sequence[Plot]) -> str:
    if not data.rows("runs"):
        return '<section id="training"><h2>Training</h2><p>No training results in this tree.</p></section>'
    times = [r["time_to_train_min"] for r in data.rows("runs")]
    times += [s.get(k) for s in data.rows("scores") for k in ("olympic_mean_min", "score_min")]
    unit, factor = time_unit(times)

    def timed(minutes: float | None) -> str:
        return _number(None if minutes is None else minutes * factor)

    # The score is score_min, the olympic mean times the RCP scaling factor, as the result
    # summarizer states it; a tree written before the factor was recorded has neither column.
    scores = _table(
        ("target", "benchmark", "division", "runs", "successful", f"olympic mean ({unit})", "scaling factor",
         f"score ({unit})", "note"),
        [(s["target"], s["benchmark"], s.get("division"), s["runs"], s["successful_runs"], timed(s["olympic_mean_min"]),
          _number(s.get("scaling_factor"), 10), timed(s.get("score_min")), s["reason"])
         for s in sorted(data.rows("scores"), key=lambda s: (s["benchmark"], s["target"]))],
        numeric=(3, 4, 5, 6, 7))
    runs = _table(
        ("target", "benchmark", "run", "seed", "status", f"time to train ({unit})", "epochs", "best eval accuracy",
         "quality target"),
        [(r["target"], r["benchmark"], r["run"], r["seed"], r["status"], timed(r["time_to_train_min"]), r["epochs"],
          _number(r["best_eval_accuracy"]), _number(r["quality_target"]))
         for r in sorted(data.rows("runs"), key=lambda r: (r["benchmark"], r["target"], r["run"]))],
        numeric=(2, 3, 5, 6, 7, 8))
    return ('<section id="training"><h2>Training</h2><h3>Scores</h3>' + scores + "<h3>Runs</h3>" + runs
            + _figures(plots) + "</section>")


def _ms(ns: int | None) -> str:
    return _number(None if ns is None else ns / 1e6)


# An LLM's token figures (TTFT and TPOT are the latencies the round limits; throughput is in tokens).
TOKEN_COLUMNS = ("ttft_p99_ns", "tpot_p99_ns", "tokens_per_second", "result_tokens_per_s")


def _llm_benchmarks(rows: Sequence[dict[str, Any]]) -> set[str]:
    """Benchmarks whose runs timed tokens: their accuracy rows carry no token figure, yet are an LLM's."""
    return {r["benchmark"] for r in rows if any(r.get(column) is not None for column in TOKEN_COLUMNS)}


def _accuracy(row: dict[str, Any], llm: bool) -> str:
    """An LLM's accuracy is ROUGE-1, not a classifier's top-1: the cell says which."""
    value = _number(row["accuracy"])
    return f"ROUGE-1 {value}" if llm and value else value


def _inference(data: ReportData, plots: Sequence[Plot]) -> str:
    rows = data.rows("inference")
    if not rows:
        return '<section id="inference"><h2>Inference</h2><p>No inference results in this tree.</p></section>'
    llms = _llm_benchmarks(rows)
    ordered = sorted(rows, key=lambda r: (r["benchmark"], r["target"], r["scenario"], r["mode"]))
    table = _table(
        ("target", "benchmark", "scenario", "mode", "validity", "result latency (ms)", "result throughput (samples/s)",
         "p99 latency (ms)", "accuracy", "min duration (s)", "valid for a round"),
        [(r["target"], r["benchmark"], r["scenario"], r["mode"], r["result_validity"] or "",
          _ms(r.get("result_latency_ns")), _number(r.get("result_samples_per_s")), _ms(r["latency_p99_ns"]),
          _accuracy(r, r["benchmark"] in llms),
          _number(None if r["min_duration_ms"] is None else r["min_duration_ms"] / 1000),
          _flag(r.get("official_round_valid")))
         for r in ordered],
        numeric=(5, 6, 7, 8, 9))
    keys = sorted({(r["scenario"], r["result_key"]) for r in rows if r.get("result_key")})
    ranked = "; ".join(f"{scenario} by <code>{escape(key)}</code>" for scenario, key in keys)
    return ('<section id="inference"><h2>Inference</h2><p>Each scenario is ranked by one result: a latency '
            "(SingleStream, MultiStream) or a throughput (Offline, Server)"
            + (f" ({ranked})" if ranked else "") + ".</p>" + table + _tokens(ordered, llms)
            + _figures(plots) + "</section>")


def _published(data: ReportData, plots: Sequence[Plot]) -> str:
    """The tree's results among MLCommons' published ones (benchpipe compare), when asked for."""
    comparison = data.comparison
    if comparison is None:
        return ""
    from benchpipe.report.compare import verdict

    lines = [verdict(p, comparison) for p in comparison.placements]
    why = ("<p>A development tree: none of its results is comparable with published ones (the reasons "
           "are at the top of the page).</p>" if comparison.development else "")
    listed = "".join(f"<li>{escape(line)}</li>" for line in lines) or "<li>No inference performance result.</li>"
    return ('<section id="published"><h2>Among the published results</h2><p>Each performance result among '
            "MLCommons' published results of the same MLPerf model, scenario, division and round "
            f"({escape(comparison.round)}), in its system's categories (docs/published.md).</p>" + why
            + f"<ul>{listed}</ul>" + _figures(plots) + "</section>")


def _tokens(rows: Sequence[dict[str, Any]], llms: set[str]) -> str:
    """The LLM tests' token figures, in a table of their own so that a classifier's rows keep theirs."""
    shown = [r for r in rows if r["benchmark"] in llms and r["mode"] != "accuracy"]
    if not shown:
        return ""
    table = _table(
        ("target", "benchmark", "scenario", "mode", "validity", "result throughput (tokens/s)", "tokens/s",
         "TTFT p99 (ms)", "TPOT p99 (ms)"),
        [(r["target"], r["benchmark"], r["scenario"], r["mode"], r["result_validity"] or "",
          _number(r.get("result_tokens_per_s")), _number(r.get("tokens_per_second")), _ms(r.get("ttft_p99_ns")),
          _ms(r.get("tpot_p99_ns"))) for r in shown],
        numeric=(5, 6, 7, 8))
    return ("<h3>LLM token figures</h3><p>An LLM's throughput is in tokens, and its latency is held to the round's "
            "limits on the p99 time to first token (TTFT) and time per output token (TPOT); its accuracy is "
            "ROUGE-1.</p>" + table)


def _reproduce(data: ReportData) -> str:
    found = data.reproduction
    if found is None:
        return ""
    head = '<section id="reproduce"><h2>Reproduction</h2>'
    if found.report is None:
        return head + f"<p>{escape(found.refused or '')}: its verdicts are not shown.</p></section>"
    report = found.report
    verdict = "reproduced" if report.get("reproduced") else "not reproduced"
    when = f", begun {report['timestamp']}" if report.get("timestamp") else ""
    tolerances = (f"time to train ±{_number(100 * report['time_tolerance'], 3)} %, LoadGen performance metric "
                  f"±{_number(100 * report.get('performance_tolerance', 0.25), 3)} %"
                  if report.get("time_tolerance") is not None else "")
    parts = [head, f"<p>From <code>{escape(found.path.name)}</code>{escape(when)}: <strong>{escape(verdict)}</strong>"
             + (f"; tolerances: {escape(tolerances)}" if tolerances else "") + ".</p>"]
    parts.append(_table(
        ("run", "verdict", "where", "matched", "differs"),
        [(r.get("run"), _status(str(r.get("status"))), r.get("where", "host"),
          _listing(r["checks"], f"{len(r['checks'])} checks") if r.get("checks") else "—",
          _Html("<br>".join(escape(d) for d in r.get("differences") or []) or "—"))
         for r in report.get("runs", [])]))
    datasets = report.get("datasets") or []
    if datasets:
        parts.append("<h3>Datasets the reruns read</h3>" + _table(
            ("benchmark", "dataset", "source", "manifest sha256", "same as the tree's"),
            [(d.get("benchmark"), d.get("dataset"), d.get("source"), _Html(f"<code>{escape(str(d.get('manifest_sha256')))}</code>"),
              _flag(d.get("matched"))) for d in datasets]))
    host = report.get("provenance") or {}
    shown = [(label, host.get(key)) for label, key in STACK_FIELDS if host.get(key)]
    if shown:
        parts.append("<h3>Where it ran</h3>" + _table([label for label, _ in shown], [[v for _, v in shown]]))
    return "".join(parts) + "</section>"


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
