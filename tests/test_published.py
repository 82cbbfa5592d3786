"""MLCommons' published results as the ``published`` table, and a tree's results placed among them.

The real files are the published copies in ../shared/data/published (SOURCES.md there gives their
commits and sha256): the inference v6.1 checker's summary.csv and a training v5.1 summary.json.
Every expected figure below is read from those files here, with the csv and json modules.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from benchpipe.contracts.errors import ParseError
from benchpipe.published.summary import INFERENCE_COLUMNS, import_file
from benchpipe.published.table import read_published, write_import
from benchpipe.report.compare import compare_tree, format_comparison

PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "data" / "published"
SUMMARY_CSV = PUBLISHED / "inference_results_v6.1" / "summary.csv"
SUMMARY_JSON = PUBLISHED / "training_results_v5.1" / "Quanta_Cloud_Technology" / "summary.json"


@pytest.fixture(scope="module")
def published() -> Path:
    if not SUMMARY_CSV.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"no published results at {PUBLISHED}")
        pytest.skip(f"no published results at {PUBLISHED}")
    return PUBLISHED


def csv_rows() -> list[dict[str, str]]:
    with open(SUMMARY_CSV, newline="") as f:
        return list(csv.DictReader(f))


def benchpipe(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "benchpipe.cli", *args], capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_the_inference_summary_imports_every_row_in_benchpipes_units(published, tmp_path):
    raw = csv_rows()
    proc = benchpipe("published", "import", str(SUMMARY_CSV), "--out", str(tmp_path / "table"))
    assert f"{len(raw)} inference rows of round v6.1" in proc.stdout
    rows = read_published(tmp_path / "table").to_pylist()
    assert len(rows) == len(raw) == 492
    assert Counter(r["units"] for r in rows) == Counter(r["Units"] for r in raw)
    assert {r["round"] for r in rows} == {"v6.1"}
    assert {r["source_sha256"] for r in rows} == {hashlib.sha256(SUMMARY_CSV.read_bytes()).hexdigest()}
    by_line = {r["source_line"]: r for r in rows}
    for line, published_row in enumerate(raw, start=2):  # line 1 is the header; no field spans lines here
        row = by_line[line]
        assert row["result"] == float(published_row["Result"])
        assert (row["submitter"], row["system"], row["benchmark"]) == (
            published_row["Organization"], published_row["SystemName"], published_row["MlperfModel"])
        units = published_row["Units"]
        if units == "Latency (ms)":
            assert row["result_latency_ns"] == round(float(published_row["Result"]) * 1e6)
        elif units == "Latency (s)":
            assert row["result_latency_ns"] == round(float(published_row["Result"]) * 1e9)
        elif units == "Samples/s":
            assert row["result_samples_per_s"] == float(published_row["Result"])
        elif units == "Tokens/s":
            assert row["result_tokens_per_s"] == float(published_row["Result"])
        assert row["higher_is_better"] == (not units.startswith("Latency"))
        if row["higher_is_better"] and published_row["total_accelerators"] not in ("", "0"):
            assert row["result_per_accelerator"] == float(published_row["Result"]) / int(
                published_row["total_accelerators"])
        else:
            assert row["result_per_accelerator"] is None
    # Known rows, as the file has them: HPE's open edge resnet, published as "multistream".
    resnet = [r for r in rows if r["benchmark"] == "resnet"]
    assert sorted((r["scenario"], r["result_latency_ns"]) for r in resnet) == [
        ("MultiStream", 5030642), ("SingleStream", 1480867)]
    assert {(r["division"], r["category"], r["submitter"], r["total_accelerators"]) for r in resnet} == {
        ("open", "edge", "HPE", 1)}
    dlrm = next(r for r in rows if r["source_line"] == 2)
    assert (dlrm["benchmark"], dlrm["scenario"], dlrm["result_samples_per_s"], dlrm["result_per_accelerator"]) == (
        "dlrm-v3", "Offline", 10891.1, 10891.1 / 8)
    assert {r["scenario"] for r in rows} == {"Offline", "Server", "Interactive", "SingleStream", "MultiStream"}


def test_a_training_summary_imports_each_submitted_score(published, tmp_path):
    systems = json.loads(SUMMARY_JSON.read_text())
    imported = import_file(SUMMARY_JSON)
    assert imported.round == "v5.1"  # from its training_results_v5.1 folder
    expected = {(s["system"], key): value for s in systems for key, value in s.items()
                if key in ("dlrm_dcnv2", "llama2_70b_lora", "retinanet", "rgat", "llama31_8b", "flux1",
                           "llama31_405b") and value is not None}
    assert {(r["system"], r["benchmark"]): r["score_min"] for r in imported.rows} == expected
    assert len(imported.rows) == 5
    row = next(r for r in imported.rows if r["benchmark"] == "llama2_70b_lora" and r["system"] == "D75T-7U")
    assert (row["units"], row["higher_is_better"], row["total_accelerators"], row["accelerators_per_node"]) == (
        "minutes", False, 8, 8)
    assert row["scenario"] is None and row["result_per_accelerator"] is None
    write_import(tmp_path, imported)
    assert read_published(tmp_path).num_rows == 5


def broken(tmp_path: Path, edit) -> Path:
    lines = SUMMARY_CSV.read_text().splitlines(keepends=True)
    edit(lines)
    path = tmp_path / "inference_results_v6.1" / "summary.csv"
    path.parent.mkdir(parents=True)
    path.write_text("".join(lines))
    return path


def _set(lines: list[str], line: int, column: str, value: str) -> None:
    row = next(csv.reader([lines[line - 1]]))
    row[INFERENCE_COLUMNS.index(column)] = value
    out = []
    csv.writer(_Into(out), quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row)
    lines[line - 1] = out[0]


class _Into:
    def __init__(self, out: list[str]) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.append(text)


@pytest.mark.parametrize("edit, says", [
    (lambda lines: lines.__setitem__(0, lines[0].replace("Units", "Unit")),
     r"line 1: not the inference checker's summary.csv header: missing Units; unexpected Unit"),
    (lambda lines: _set(lines, 7, "Result", "n/a"), r"line 7: Result: 'n/a' is not a number"),
    (lambda lines: _set(lines, 9, "Units", "Frames/s"), r"line 9: Units: unknown unit 'Frames/s' \(known: Samples/s"),
])
def test_broken_copies_are_refused_naming_the_file_and_line(published, tmp_path, edit, says):
    path = broken(tmp_path, edit)
    proc = benchpipe("published", "import", str(path), "--out", str(tmp_path / "table"), ok=False)
    assert f"benchpipe published: error: {path}: " in proc.stderr and re.search(says, proc.stderr)
    assert not (tmp_path / "table").exists()  # nothing half-imported


def test_bad_rows_left_out_only_when_asked_and_each_reported(published, tmp_path):
    path = broken(tmp_path, lambda lines: (_set(lines, 7, "Result", "n/a"), _set(lines, 9, "Units", "Frames/s")))
    proc = benchpipe("published", "import", str(path), "--out", str(tmp_path / "table"), "--skip-bad-rows")
    assert "490 inference rows of round v6.1" in proc.stdout and "2 rows left out" in proc.stdout
    assert "left out, line 7: Result: 'n/a' is not a number" in proc.stdout
    assert read_published(tmp_path / "table").num_rows == 490
    (report,) = (tmp_path / "table" / "imports").glob("*.json")
    stated = json.loads(report.read_text())
    assert (stated["rows"], stated["skipped"], stated["skipped_by_reason"]) == (490, 2, {"Result": 1, "Units": 1})
    assert [s["at"] for s in stated["skipped_rows"]] == ["line 7", "line 9"]


def test_importing_a_source_again_replaces_its_rows(published, tmp_path):
    for _ in range(2):
        write_import(tmp_path, import_file(SUMMARY_CSV))
    assert read_published(tmp_path).num_rows == 492
    with pytest.raises(ParseError, match="no published results imported there"):
        read_published(tmp_path / "none")


# --- compare --------------------------------------------------------------------------------------

TARGET = "edge-gpu"


def fixture_tree(root: Path, *, benchmark: str, division: str, latency_ns: int, official: bool) -> Path:
    """A tree with one SingleStream performance result: its tables, config, checks, system
    description and user.conf, as benchpipe's package stage lays them out."""
    from benchpipe.package.manifest import write_manifest
    from benchpipe.results.tables import INFERENCE_SCHEMA, write_partitioned

    tree = root / "tree"
    own = tree / "benchpipe"
    round_ = "v6.1" if official else "dev"
    row = {name: None for name in INFERENCE_SCHEMA.names}
    row.update(target=TARGET, benchmark=benchmark, scenario="SingleStream", mode="performance",
               result_validity="VALID", result_key="early_stopping_latency_ss", result_latency_ns=latency_ns,
               official_run=official, official_round_valid=official, inference_round="v6.1",
               min_duration_ms=600_000 if official else 1000)
    write_partitioned(pa.Table.from_pylist([row], schema=INFERENCE_SCHEMA), own / "tables" / "inference", round_,
                      division)
    (own / "config.json").write_text(json.dumps({
        "submission": {"submitter": "acme", "division": division, "round": round_, "status": "available"},
        "inference": {"round": "v6.1", "official": official, "accuracy_samples": None if official else 100}}))
    (own / "checks.json").write_text(json.dumps({"inference": {
        "official": official, "kind": "official" if official else "development",
        "tests": [{"official_round_valid": official}]}}))
    section = tree / ("inference" if benchmark == "resnet" else "benchpipe/inference") / division / "acme"
    (section / "systems").mkdir(parents=True)
    (section / "systems" / f"{TARGET}.json").write_text(json.dumps({
        "system_type": "edge", "accelerators_per_node": "1", "number_of_nodes": "1",
        "accelerator_model_name": "Acme A1"}))
    scenario = section / "results" / TARGET / benchmark / "SingleStream"
    (scenario / "performance" / "run_1").mkdir(parents=True)
    (scenario / "user.conf").write_text(f"*.SingleStream.min_duration = {600_000 if official else 1000}\n")
    write_manifest(tree)
    return tree


@pytest.fixture(scope="module")
def table(published, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("published")
    write_import(out, import_file(SUMMARY_CSV))
    return out


def test_an_official_resnet_result_is_ranked_among_the_rounds_edge_results(table, tmp_path):
    latency_ns = 3_000_000  # 3 ms
    tree = fixture_tree(tmp_path, benchmark="resnet", division="open", latency_ns=latency_ns, official=True)
    # Independently: the published open edge resnet SingleStream latencies, lower is better.
    peers = [float(r["Result"]) for r in csv_rows() if r["MlperfModel"] == "resnet" and r["Division"] == "open"
             and r["SystemType"] == "edge" and r["Scenario"].lower() == "singlestream"]
    assert peers == [1.480867]
    better = sum(p < latency_ns / 1e6 for p in peers)
    comparison = compare_tree(tree, table)
    assert comparison.development == []
    (placed,) = comparison.placements
    assert (placed.count, placed.rank) == (len(peers), better + 1) == (1, 2)
    assert placed.percentile == 0.0 and placed.below is None
    assert placed.above.system.startswith("HPE ProLiant Compute DL380 Gen12")
    assert placed.above.accelerators == "1x NVIDIA RTX PRO 4500 Blackwell-PCIe-32GB"
    text = format_comparison(comparison)
    assert ("edge-gpu resnet SingleStream: 3 ms: rank 2 of 2 among the 1 published results of resnet SingleStream, "
            "open, v6.1; percentile 0.0") in text
    faster = fixture_tree(tmp_path / "faster", benchmark="resnet", division="open", latency_ns=1_000_000,
                          official=True)
    (placed,) = compare_tree(faster, table).placements
    assert (placed.rank, placed.percentile, placed.above) == (1, 100.0, None)
    # The closed division has no published resnet result in v6.1: nothing to rank against.
    closed = fixture_tree(tmp_path / "closed", benchmark="resnet", division="closed", latency_ns=latency_ns,
                          official=True)
    assert ("no published result of resnet SingleStream, closed, v6.1 in its categories (the round has them in "
            "open edge: 1)") in format_comparison(compare_tree(closed, table))


def test_a_development_tree_is_not_comparable_and_claims_no_rank(table, tmp_path):
    tree = fixture_tree(tmp_path, benchmark="digits", division="open", latency_ns=1_000_000, official=False)
    comparison = compare_tree(tree, table)
    (placed,) = comparison.placements
    assert placed.rank is None and placed.percentile is None
    assert placed.not_comparable == ["digits is not an MLPerf benchmark: no published result is of its model"]
    text = format_comparison(comparison)
    assert "a development tree, whose results are not comparable with published ones" in text
    assert 'config.json names the round "dev", not an MLPerf round' in text
    assert "rank" not in text
    # An MLPerf model in a development tree is not ranked either.
    dev_resnet = fixture_tree(tmp_path / "resnet", benchmark="resnet", division="open", latency_ns=1_000_000,
                              official=False)
    (placed,) = compare_tree(dev_resnet, table).placements
    assert placed.in_development_tree and placed.rank is None
    out = benchpipe("compare", str(dev_resnet), "--published", str(table)).stdout
    assert "edge-gpu resnet SingleStream: 1 ms: not comparable: the tree is a development tree (above)" in out


def readme_query() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("<!-- published-query -->", 1)[1]
    return block.split("```sql", 1)[1].split("```", 1)[0]


def test_the_readmes_duckdb_query_ranks_as_compare_does(table, tmp_path, monkeypatch):
    import duckdb  # the report extra: in .venv after `make venv`

    (tmp_path / "submissions").mkdir()
    for name, latency_ns in (("slow", 3_000_000), ("fast", 1_000_000)):
        tree = fixture_tree(tmp_path / name, benchmark="resnet", division="open", latency_ns=latency_ns,
                            official=True)
        tree.rename(tmp_path / "submissions" / name)
    (tmp_path / "published").symlink_to(table)
    monkeypatch.chdir(tmp_path)
    rows = duckdb.sql(readme_query()).fetchall()
    # (target, model, scenario, division, latency ms, throughput, published results, rank)
    assert rows == [("edge-gpu", "resnet", "SingleStream", "open", 1.0, None, 1, 1),
                    ("edge-gpu", "resnet", "SingleStream", "open", 3.0, None, 1, 2)]
    for name in ("slow", "fast"):
        (placed,) = compare_tree(tmp_path / "submissions" / name, table).placements
        assert (placed.count, placed.rank) == ((1, 2) if name == "slow" else (1, 1))


def test_known_sources_are_fetched_through_mirrors_into_the_cache_and_checked(published, tmp_path):
    cache = tmp_path / "cache"
    # No network here: the pinned URL fails and the mirror, a copy of the repositories, serves.
    proc = benchpipe("published", "import", "--source", "inference-v6.1", "--out", str(tmp_path / "table"),
                     "--mirror", PUBLISHED.as_uri(), "--cache-dir", str(cache))
    assert "inference-v6.1 (mlcommons/inference_results_v6.1 summary.csv at 7bf15fd80896): 492 inference rows" in (
        proc.stdout)
    digest = hashlib.sha256(SUMMARY_CSV.read_bytes()).hexdigest()
    assert (cache / "sha256" / digest).read_bytes() == SUMMARY_CSV.read_bytes()
    # Offline, the cache's verified copy alone.
    benchpipe("published", "import", "--source", "inference-v6.1", "--out", str(tmp_path / "again"), "--offline",
              "--cache-dir", str(cache))
    assert read_published(tmp_path / "again").num_rows == 492
    # A mirror with other bytes is refused, and nothing is imported.
    changed = tmp_path / "mirror" / "inference_results_v6.1" / "summary.csv"
    changed.parent.mkdir(parents=True)
    changed.write_text(SUMMARY_CSV.read_text().replace("10891.1", "10891.2"))
    proc = benchpipe("published", "import", "--source", "inference-v6.1", "--out", str(tmp_path / "bad"),
                     "--mirror", (tmp_path / "mirror").as_uri(), "--cache-dir", str(tmp_path / "cache2"), ok=False)
    assert digest in proc.stderr and not (tmp_path / "bad").exists()
    proc = benchpipe("published", "import", "--source", "inference-v9.9", "--out", str(tmp_path / "bad"), ok=False)
    assert "unknown published source inference-v9.9 (known: inference-v6.1" in proc.stderr


def test_the_workflow_ranks_the_tree_among_the_published_results_when_asked(published, submitted, cli_env,
                                                                             tmp_path):
    repo = Path(__file__).resolve().parents[1]
    extra = tmp_path / "published.yaml"
    # Only published settings change: no job of the finished workflow runs again (the sources land in
    # the user's cache, as the Mobile app's files do).
    extra.write_text(json.dumps({"published": {"enabled": True, "mirrors": [PUBLISHED.as_uri()]}}))
    proc = subprocess.run(
        ["snakemake", "-s", str(repo / "Snakefile"), "--directory", str(submitted), "--cores", "1", "compare",
         "--configfile", str(repo / ".test" / "config" / "config.yaml"), str(extra)],
        env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"published +1\n", proc.stdout + proc.stderr) and not re.search(r"\n(train|infer) +\d",
                                                                                   proc.stdout + proc.stderr)
    assert read_published(submitted / "published").num_rows == 492
    text = (submitted / "submissions" / "ci.compare.txt").read_text()
    assert "submissions/ci: a development tree, whose results are not comparable with published ones:" in text
    assert "local-cpu digits Offline: " in text and "rank" not in text
    # Unknown sources are refused before any job runs, naming the key.
    extra.write_text(json.dumps({"published": {"enabled": True, "sources": ["inference-v0.1"]}}))
    proc = subprocess.run(
        ["snakemake", "-s", str(repo / "Snakefile"), "--directory", str(submitted), "--cores", "1", "-n", "compare",
         "--configfile", str(repo / ".test" / "config" / "config.yaml"), str(extra)],
        env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "published.sources: unknown published source inference-v0.1" in proc.stdout + proc.stderr


def _report(tree: Path, table: Path, out: Path):
    """The tree's report with the published table, its verdicts from an audit file about this tree."""
    from benchpipe.package.manifest import read_manifest
    from benchpipe.report import write_report

    audit = out.parent / f"{out.stem}.audit.json"
    # The page's audit section is not what this test is about: an empty audit of this very tree.
    audit.write_text(json.dumps({"root_sha256": read_manifest(tree)["root_sha256"], "items": [], "passed": True}))
    return write_report(tree, out, audit_path=audit, published=table)


def test_the_report_draws_each_result_among_the_published_ones_in_a_browser(table, tmp_path):
    from test_report import rendered

    official = fixture_tree(tmp_path / "official", benchmark="resnet", division="open", latency_ns=3_000_000,
                            official=True)
    page = tmp_path / "official.html"
    written = _report(official, table, page)
    assert written.plots == ["published-resnet-SingleStream"]
    result = rendered(page, tmp_path)
    assert "published" in result["sections"]
    (figure,) = [f for f in result["figures"] if f["id"] == "published-resnet-SingleStream"]
    assert min(figure["drawn"]) > 50 and min(figure["shown"]) > 50, figure
    html = page.read_text()
    assert "edge-gpu resnet SingleStream: 3 ms: rank 2 of 2 among the 1 published results" in html
    assert "published (1)" in html and "(not comparable)" not in html  # the legend, as drawn

    # A development tree: an MLPerf model's result drawn among the published ones, marked not
    # comparable; a stand-in benchmark's listed, with no plot, since MLCommons publishes none of it.
    development = fixture_tree(tmp_path / "development", benchmark="resnet", division="open", latency_ns=3_000_000,
                               official=False)
    page = tmp_path / "development.html"
    written = _report(development, table, page)
    assert written.plots == ["published-resnet-SingleStream"]
    html = page.read_text()
    assert "edge-gpu (not comparable)" in html and "rank" not in html.split('id="published"')[1]
    assert "edge-gpu resnet SingleStream: 3 ms: not comparable: the tree is a development tree (above)" in html
    digits = fixture_tree(tmp_path / "digits", benchmark="digits", division="open", latency_ns=3_000_000,
                          official=False)
    written = _report(digits, table, tmp_path / "digits.html")
    assert written.plots == []
    assert "not comparable: digits is not an MLPerf benchmark" in (tmp_path / "digits.html").read_text()
    # Without a published table the page has no such section.
    from benchpipe.report import write_report

    plain = write_report(official, tmp_path / "plain.html", audit_path=tmp_path / "official.audit.json")
    assert plain.plots == [] and 'id="published"' not in (tmp_path / "plain.html").read_text()


def training_tree(root: Path, score_min: float, accelerators: int) -> Path:
    """A tree with one official llama2_70b_lora score under training ruleset 5.1.0, closed."""
    from benchpipe.package.manifest import write_manifest
    from benchpipe.results.tables import SCORES_SCHEMA, write_partitioned

    tree = root / "tree"
    row = {name: None for name in SCORES_SCHEMA.names}
    row.update(target="cluster", benchmark="llama2_70b_lora", runs=10, successful_runs=10, olympic_mean_min=score_min,
               reason="", training_ruleset="5.1.0", scaling_factor=1.0, score_min=score_min)
    write_partitioned(pa.Table.from_pylist([row], schema=SCORES_SCHEMA), tree / "benchpipe" / "tables" / "scores",
                      "v5.1", "closed")
    (tree / "benchpipe" / "config.json").write_text(json.dumps({
        "submission": {"submitter": "acme", "division": "closed", "round": "v5.1", "status": "available"},
        "training": {"ruleset": "5.1.0"}}))
    (tree / "benchpipe" / "checks.json").write_text("{}")
    org = tree / "training" / "acme"
    (org / "results" / "cluster" / "llama2_70b_lora").mkdir(parents=True)
    (org / "systems").mkdir()
    (org / "systems" / "cluster.json").write_text(json.dumps({
        "accelerators_per_node": str(accelerators), "number_of_nodes": "1", "accelerator_model_name": "Acme A1"}))
    write_manifest(tree)
    return tree


def test_a_training_score_is_ranked_among_the_rounds_published_scores(published, tmp_path):
    table = tmp_path / "table"
    write_import(table, import_file(SUMMARY_JSON))
    score = 22.0
    tree = training_tree(tmp_path, score, accelerators=8)
    # Independently: the summary's closed llama2_70b_lora scores, in minutes, lower is better.
    peers = {s["system"]: (s["llama2_70b_lora"], s["accelerators_count"]) for s in json.loads(SUMMARY_JSON.read_text())
             if s["division"] == "closed" and s["llama2_70b_lora"] is not None}
    better = [name for name, (minutes, _) in peers.items() if minutes < score]
    comparison = compare_tree(tree, table)
    assert comparison.training_round == "v5.1" and comparison.development == []
    (placed,) = comparison.placements
    assert (placed.count, placed.rank) == (len(peers), len(better) + 1) == (2, 2)
    assert placed.percentile == 50.0
    assert (placed.above.system, placed.below.system) == ("D75T-7U", "D74H-7U")
    spent = sorted(minutes * count for minutes, count in peers.values())
    assert placed.ratio_per_accelerator == pytest.approx(score * 8 / spent[1])
    text = format_comparison(comparison)
    assert ("cluster llama2_70b_lora time to train: 22 minutes: rank 2 of 3 among the 2 published scores of "
            "llama2_70b_lora, closed, training v5.1; percentile 50.0") in text
    assert ("nearest above: Quanta_Cloud_Technology D75T-7U (8x AMD Instinct MI325X 256GB HBM3E): "
            "21.6307 minutes") in text
