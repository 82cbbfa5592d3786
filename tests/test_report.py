"""`benchpipe report` on the workflow's tree (conftest `submitted`), opened in a real headless browser.

The page must render offline with every plot drawn and laid out; it must say what the tree is
(the development banner), what it ran on, and the checks behind each audit count; the verdicts
it shows must be about this very tree; and `snakemake --report` must carry it. Unit tests after
those check, on small hand-made data, the banner's reasons, the plots' axes and colours, and the
refusal to write a default report inside another tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from benchpipe.contracts.errors import BenchpipeError
from benchpipe.report import read_audit, write_report

SCENARIOS = ("MultiStream", "Offline", "Server", "SingleStream")
# What the reduced config's tree must show: digits trained, and all four scenarios measured.
EXPECTED_PLOTS = {"time-to-train-digits", "eval-accuracy-digits", "throughput-digits",
                  *(f"latency-digits-{s}" for s in SCENARIOS)}
# Injected into a copy of the page: once everything has loaded, how each inline plot drew and laid
# out, what the banner and the system section say, and what each audit item's folded checks show.
PROBE = """<script>
window.addEventListener("load", () => {
  const found = [...document.querySelectorAll("figure")].map(f => {
    const svg = f.querySelector("svg"), box = svg.getBoundingClientRect(), drawn = svg.getBBox();
    return {id: f.id, drawn: [Math.round(drawn.width), Math.round(drawn.height)], shown: [box.width, box.height]};
  });
  const audit = [...document.querySelectorAll("#audit tbody tr")].map(row => {
    const details = row.querySelector("details");
    if (details) details.open = true;
    const shown = details ? [...details.querySelectorAll("li")].filter(li => li.getBoundingClientRect().height > 0) : [];
    return {item: row.cells[0].textContent, checks: shown.map(li => li.textContent)};
  });
  const text = id => (document.getElementById(id) || {textContent: ""}).textContent;
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({figures: found, audit: audit, banner: text("development"), system: text("system"),
                                    sections: [...document.querySelectorAll("section")].map(s => s.id)});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is provisioned in CI (.ci/run) but not on PATH")
        pytest.skip("no chromium: apt-get install chromium")
    return found


def rendered(page: Path, tmp_path: Path) -> dict:
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stdout[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture
def tree(submitted, tmp_path) -> Path:
    copy = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", copy, symlinks=True)
    return copy


def test_the_page_renders_every_plot_in_a_headless_browser_without_the_network(tree, tmp_path):
    from benchpipe.audit import audit

    audited = audit(tree).to_dict()
    (tmp_path / "ci.audit.json").write_text(json.dumps(audited))  # beside the tree: the page's verdicts
    page = tmp_path / "report.html"
    written = write_report(tree, page)
    assert set(written.plots) == EXPECTED_PLOTS and written.audit_passed
    assert written.audit_source == "Verdicts from ci.audit.json."
    html = page.read_text()
    # Self-contained: every link is an anchor in the page (the plots' own references included).
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert references and all(r.startswith("#") for r in references), references
    assert "<img" not in html and "<?xml" not in html
    result = rendered(page, tmp_path)
    assert result["sections"] == ["development", "audit", "system", "training", "inference", "provenance"]
    figures = {f["id"]: f for f in result["figures"]}
    assert set(figures) == EXPECTED_PLOTS
    for figure in figures.values():
        assert min(figure["drawn"]) > 100, figure  # the SVG drew
        assert min(figure["shown"]) > 100, figure  # and takes room on the page
    # The reduced config makes a development tree, and the banner says why from what it recorded.
    banner = " ".join(result["banner"].split())
    assert 'names the round "ci"' in banner and "min_duration 1 s" in banner, banner
    assert "digits is a stand-in model" in banner and "first 1000 samples" in banner, banner
    # The system: the detected CPU and its cores, and the software the jobs recorded.
    description = json.loads(next(tree.glob("benchpipe/inference/*/*/systems/*.json")).read_text())
    for value in (description["host_processor_model_name"], description["host_memory_capacity"], "TensorFlow"):
        assert value in result["system"], value
    # Each audit count opens onto the checks behind it, as the JSON report lists them.
    items = {item["name"]: item for item in audited["items"]}
    assert [row["item"] for row in result["audit"]] == list(items)
    for row in result["audit"]:
        assert row["checks"] and row["checks"] == items[row["item"]]["details"], row


def test_a_broken_plot_is_what_the_browser_check_catches(tree, tmp_path):
    """The probe is not blind: an SVG that draws nothing shows as such."""
    page = tmp_path / "report.html"
    write_report(tree, page)
    broken = re.sub(r"<svg .*?</svg>", "<svg></svg>", page.read_text(), count=1, flags=re.S)
    page.write_text(broken)
    figures = rendered(page, tmp_path)["figures"]
    assert [f["drawn"] for f in figures].count([0, 0]) == 1


def test_the_page_shows_the_trees_values_and_is_the_same_bytes_each_time(tree, tmp_path):
    from benchpipe.results.tables import read_partitioned

    first, second = tmp_path / "a.html", tmp_path / "b.html"
    write_report(tree, first)
    write_report(tree, second)
    assert first.read_bytes() == second.read_bytes()
    html = first.read_text()
    runs = read_partitioned(tree / "benchpipe/tables/runs").to_pylist()
    for run in runs:
        assert f"<td>{run['seed']}</td>" in html.replace('<td class="num">', "<td>")
    manifest = json.loads((tree / "manifest.json").read_text())
    assert manifest["root_sha256"] in html and "audit PASSED" in html


def test_a_tampered_tree_is_reported_as_failing_with_the_reason(tree, tmp_path):
    log = next((tree / "benchpipe/training").rglob("result_1.txt"))
    log.write_bytes(log.read_bytes().replace(b"eval_accuracy", b"eval_accuracX", 1))
    page = tmp_path / "report.html"
    written = write_report(tree, page)
    assert not written.audit_passed
    html = page.read_text()
    assert "audit FAILED" in html and "result_1.txt" in html


def test_an_audit_report_about_another_tree_is_refused_by_name(tree, tmp_path):
    stale = tmp_path / "old.audit.json"
    stale.write_text(json.dumps({"tree": "x", "root_sha256": "0" * 64, "passed": True, "items": []}))
    with pytest.raises(BenchpipeError, match=r"old\.audit\.json: audits the tree with root sha256 0{64}"):
        write_report(tree, tmp_path / "r.html", audit_path=stale)
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(BenchpipeError, match=r"bad\.json: not a benchpipe audit report"):
        (tmp_path / "bad.json").write_text("{}")
        read_audit(tmp_path / "bad.json", "0" * 64)
    # Beside the tree, a stale one is not trusted either: the page comes from a fresh audit.
    (tmp_path / "ci.audit.json").write_text(stale.read_text())
    written = write_report(tree, tmp_path / "r.html")
    assert written.audit_source == "Verdicts from an audit run for this report."


def test_the_command_line_names_a_folder_that_is_not_a_tree(tmp_path, cli_env):
    proc = subprocess.run(["benchpipe", "report", str(tmp_path)], env=cli_env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{tmp_path}/benchpipe/tables: no tables" in proc.stderr
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}.report.html*"))


def test_the_report_rule_and_snakemakes_own_report_carry_the_page(submitted, cli_env, repo_root):
    common = ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(submitted),
              "--configfile", str(repo_root / ".test" / "config" / "config.yaml")]
    proc = subprocess.run([*common, "--cores", "1", "report"], env=cli_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = submitted / "submissions" / "ci.report.html"
    assert "audit PASSED" in page.read_text()
    bundle = submitted / "snakemake-report.zip"
    # Snakemake's report gathers the targets' jobs: the report rule is not one of submit's.
    proc = subprocess.run([*common, "--cores", "1", "--report", str(bundle), "report"], env=cli_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with zipfile.ZipFile(bundle) as archive:
        carried = [name for name in archive.namelist() if name.endswith("ci.report.html")]
        assert carried, archive.namelist()
        assert archive.read(carried[0]) == page.read_bytes()


# --- Unit tests on hand-made data: no workflow run needed. ----------------------------------------

def _data(tmp_path: Path, **fields):
    from benchpipe.report.data import ReportData

    data = ReportData(tmp_path / "tree", "a" * 64, {"inference": [{"min_duration_ms": 600_000}]})
    for name, value in fields.items():
        setattr(data, name, value)
    return data


OFFICIAL = {
    "config": {"submission": {"round": "v6.1", "division": "closed"},
               "inference": {"official": True, "accuracy_samples": 1000}},
    "checks": {"inference": {"kind": "official", "official": True,
                             "tests": [{"mode": "performance", "official_round_valid": True}]}},
    "sections": {"resnet": {"training", "inference"}},
    "min_durations_ms": {"inference/closed/o/results/s/resnet/Offline/user.conf": 600_000},
}


def test_the_banner_says_why_a_development_tree_is_not_for_a_round_and_is_absent_for_an_official_one(tmp_path):
    from benchpipe.report.development import development_reasons
    from benchpipe.report.page import _development

    assert development_reasons(_data(tmp_path, **OFFICIAL)) == []
    assert _development([]) == ""
    conf = "benchpipe/inference/closed/o/results/s/digits/Offline/user.conf"
    development = _data(
        tmp_path,
        config={"submission": {"round": "dev"}, "inference": {"official": False, "accuracy_samples": 500}},
        checks={"inference": {"kind": "development (min_duration 5000 ms)", "official": False,
                              "tests": [{"official_round_valid": False}, {"official_round_valid": True}]}},
        sections={"digits": {"benchpipe/training", "benchpipe/inference"}, "resnet": {"training"}},
        min_durations_ms={conf: 5000, "inference/closed/o/results/s/resnet/Offline/user.conf": 600_000},
    )
    reasons = development_reasons(development)
    assert reasons == [
        'config.json names the round "dev", not an MLPerf round (such as v6.1): the tree was made for development',
        "digits is a stand-in model, not an MLPerf benchmark: its results are only in benchpipe's own layout "
        "(benchpipe/inference, benchpipe/training), which no round takes",
        f"short LoadGen runs: min_duration 5 s in 1 of 2 user.conf (e.g. {conf}); an official run lasts at "
        "least 600 s",
        "accuracy measured on a subset: the first 500 samples of the dataset (config.json "
        "inference.accuracy_samples), not all of it",
        'checks.json records the LoadGen tests as "development (min_duration 5000 ms)"',
        "1 of 2 LoadGen tests are not valid for an official round (checks.json inference.tests, "
        "official_round_valid false)",
    ]
    # An official round's name with one short run left in it still gets the banner, for that run.
    short = dict(OFFICIAL, min_durations_ms={conf: 10_000})
    assert [r.split(":")[0] for r in development_reasons(_data(tmp_path, **short))] == ["short LoadGen runs"]


def _inference_row(benchmark: str, scenario: str, mode: str, **fields) -> dict:
    row = {"target": "local-gpu", "benchmark": benchmark, "scenario": scenario, "mode": mode,
           "result_validity": None if mode == "accuracy" else "VALID", "result_key": None, "result_latency_ns": None,
           "result_samples_per_s": None, "latency_p99_ns": None, "accuracy": None, "min_duration_ms": 600_000,
           "official_round_valid": None, "ttft_p99_ns": None, "tpot_p99_ns": None, "tokens_per_second": None,
           "result_tokens_per_s": None}
    return {**row, **fields}


def test_an_llms_token_figures_and_rouge_1_are_shown_and_a_classifiers_row_is_as_before(tmp_path):
    from benchpipe.report.page import render

    rows = [
        _inference_row("llama31_8b", "Server", "performance", result_key="result_completed_tokens_per_second",
                       latency_p99_ns=900_000_000, ttft_p99_ns=1_234_000_000, tpot_p99_ns=45_600_000,
                       tokens_per_second=2345.0, result_tokens_per_s=2210.0),
        _inference_row("llama31_8b", "Offline", "accuracy", accuracy=0.3845),
        _inference_row("resnet", "Offline", "performance", result_key="result_samples_per_second",
                       result_samples_per_s=690.0, latency_p99_ns=3_000_000),
        _inference_row("resnet", "Offline", "accuracy", accuracy=0.7646),
    ]
    data = _data(tmp_path, tables={"inference": rows})
    page = render(data, [], {"passed": True, "items": []}, "audited here.", "0.0")
    section = page[page.index('<section id="inference">'):page.index("</section>", page.index('id="inference"'))]
    tokens = section[section.index("<h3>LLM token figures</h3>"):]
    # TTFT p99 1,234 ms, TPOT p99 45.6 ms, tokens/s, and the checker's token metric, on the Server row.
    assert ("<td>llama31_8b</td><td>Server</td><td>performance</td><td>VALID</td><td class=\"num\">2,210</td>"
            "<td class=\"num\">2,345</td><td class=\"num\">1,234</td><td class=\"num\">45.6</td>") in tokens
    assert "Offline</td><td>accuracy" not in tokens  # an accuracy run has no throughput to show
    assert '<td class="num">ROUGE-1 0.3845</td>' in section
    # The classifier's rows: samples/s and a plain top-1 accuracy, no token figure.
    assert ("<td>resnet</td><td>Offline</td><td>performance</td><td>VALID</td><td class=\"num\"></td>"
            "<td class=\"num\">690</td><td class=\"num\">3</td>") in section
    assert '<td class="num">0.7646</td>' in section and "resnet" not in tokens
    # A tree without an LLM has no token table.
    classifier = render(_data(tmp_path, tables={"inference": rows[2:]}), [], {"passed": True}, "audited.", "0.0")
    assert "token figures" not in classifier and "ROUGE-1" not in classifier


def test_audit_and_report_refuse_to_write_their_default_file_inside_another_tree(tmp_path, cli_env):
    from benchpipe.report import beside

    tree = tmp_path / "dev"
    (tree / "benchpipe").mkdir(parents=True)
    (tree / "manifest.json").write_text("{}")
    (tree / "benchpipe" / "config.json").write_text("{}")
    (tree / "training").mkdir()
    assert beside(tree, ".audit.json", "--report") == tmp_path / "dev.audit.json"  # the tree itself: beside it
    for command, option in (("audit", "--report"), ("report", "--out")):
        proc = subprocess.run(["benchpipe", command, str(tree / "training")], env=cli_env, capture_output=True,
                              text=True)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1, proc.stderr  # one line
        assert f"inside the tree {tree} and break its manifest: give {option} a path outside it" in proc.stderr
    assert sorted(p.name for p in tree.iterdir()) == ["benchpipe", "manifest.json", "training"]


def test_plots_are_inline_svg_with_bars_to_scale_and_one_colour_per_run(tmp_path):
    from matplotlib.colors import to_hex

    from benchpipe.report.data import PerformanceRun, plain
    from benchpipe.report.figures import draw_all, eval_accuracy_figure, throughput_figure
    from benchpipe.report.page import _number

    runs = [PerformanceRun("cpu", "digits", "Offline", {"p50": 1_000_000}, None, 1000.0),
            PerformanceRun("cpu", "digits", "Server", {"p50": 2_000_000}, 10_000_000, 690.0)]
    ax = throughput_figure(runs).axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    offline, server = (ax.transData.transform((0, bar.get_height()))[1] - ax.transData.transform((0, 0))[1]
                       for bar in ax.patches)
    assert server / offline == pytest.approx(0.69)  # Server at 69 % of Offline is drawn 69 % as tall

    series = {("cpu", run): [(1.0, 0.5 + run / 10), (2.0, 0.9)] for run in range(3)}
    ax = eval_accuracy_figure(series).axes[0]
    assert len({to_hex(line.get_color()) for line in ax.get_lines()}) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run 0", "run 1", "run 2"]

    data = _data(tmp_path, performance=runs)
    plots = draw_all(data)
    assert [p.id for p in plots] == ["latency-digits-Offline", "latency-digits-Server", "throughput-digits"]
    for plot in plots:
        assert plot.svg.startswith("<svg ") and plot.svg.rstrip().endswith("</svg>")
        ids = re.findall(r'\bid="([^"]+)"', plot.svg)
        assert ids and all(i.startswith(plot.id + "-") for i in ids)  # unique across the page
    assert draw_all(data) == plots  # the same data draws the same text
    # Tables and tick labels in positional notation.
    assert [_number(v) for v in (0.000012345, 123456.7, 0.97, 2.0)] == ["0.00001234", "123,457", "0.97", "2"]
    assert plain(20000.0, 3) == "20,000"


def test_a_foreign_training_folder_gets_a_page_of_its_audit_scores_and_runs(tmp_path, capsys):
    """An MLCommons folder benchpipe did not make (the published AMD training v5.1 folder, read-only)."""
    from benchpipe.cli import main
    from benchpipe.report import writable
    from benchpipe.report.data import plain
    from benchpipe.report.foreign import INTEGRITY
    from tests.conftest import REPO_ROOT

    amd = REPO_ROOT.parent / "shared" / "data" / "published" / "training_results_v5.1" / "AMD"
    if not amd.is_dir():
        pytest.skip(f"{amd}: the published AMD folder is not here")
    system = "MI355X_EPYC_9575F_pytorch"
    # What MLCommons' result summarizer scores (tests/test_audit_foreign.py).
    published = {"llama2_70b_lora": 10.18474574915825, "llama31_8b": 99.70854353631518}
    audited, page = tmp_path / "AMD.audit.json", tmp_path / "AMD.html"
    assert main(["audit", str(amd), "--report", str(audited)]) == 0
    assert main(["report", str(amd), "--out", str(page), "--audit", str(audited)]) == 0
    html = page.read_text()
    assert INTEGRITY in html and "audit PASSED" in html and 'id="development"' not in html
    # Each score the audit derived, beside the summarizer's, to ten digits.
    for value in published.values():
        shown = f'<td class="num">{plain(value, 10)}</td>'
        assert shown * 2 + '<td><span class="match">equal</span></td>' in html
    for benchmark in published:
        for run in range(10):
            assert f"<td>results/{system}/{benchmark}/result_{run}.txt</td><td>success</td>" in html
    assert "SMCI355X (AS -4126GS-NMR-LCC)" in html and "AMD EPYC 9575F" in html  # systems/*.json
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert references and all(r.startswith("#") for r in references), references
    assert "<script" not in html and "<img" not in html
    # The same bytes again; one time-to-train plot per benchmark.
    again = write_report(amd, tmp_path / "again.html", audit_path=audited)
    assert again.plots == [f"time-to-train-{b}" for b in sorted(published)] and again.audit_passed
    assert (tmp_path / "again.html").read_bytes() == page.read_bytes()
    # The verdicts must be about these very files: a copy with one byte changed refuses them.
    copy = tmp_path / "AMD"
    shutil.copytree(amd, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    with (copy / "systems" / f"{system}.json").open("a") as f:
        f.write(" ")
    with pytest.raises(BenchpipeError, match="audits the tree with root sha256"):
        write_report(copy, tmp_path / "copy.html", audit_path=audited)
    # The default page beside a read-only folder: refused in one line, before any audit.
    if not writable(amd.parent):
        capsys.readouterr()
        assert main(["report", str(amd), "--audit", str(audited)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cannot write beside the folder" in err and "--out" in err
        assert not (amd.parent / "AMD.report.html").exists()
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        result = rendered(page, tmp_path)
        assert result["sections"] == ["audit", "system", "training"]
        assert {f["id"] for f in result["figures"]} == set(again.plots)
        assert all(min(f["drawn"]) > 100 and min(f["shown"]) > 100 for f in result["figures"]), result["figures"]
        items = {item["name"]: item for item in json.loads(audited.read_text())["items"]}
        for row in result["audit"]:
            assert row["checks"] == items[row["item"]]["details"], row
