"""`benchpipe report` on the workflow's tree (conftest `submitted`), opened in a real headless browser.

The page must render offline with every plot decoded and laid out; the verdicts it shows must
be about this very tree; and `snakemake --report` must carry it.
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
# Injected into a copy of the page: once everything has loaded, how each plot decoded and laid out.
PROBE = """<script>
window.addEventListener("load", () => {
  const found = [...document.querySelectorAll("figure")].map(f => {
    const img = f.querySelector("img"), box = img.getBoundingClientRect();
    return {id: f.id, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
            shown: [box.width, box.height]};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({figures: found, sections: [...document.querySelectorAll("section")].map(s => s.id)});
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
    page = tmp_path / "report.html"
    written = write_report(tree, page)
    assert set(written.plots) == EXPECTED_PLOTS and written.audit_passed
    html = page.read_text()
    # Self-contained: every link is an anchor or inline data; nothing would be fetched.
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert references and all(r.startswith(("data:", "#")) for r in references), references
    result = rendered(page, tmp_path)
    assert result["sections"] == ["audit", "training", "inference", "provenance"]
    figures = {f["id"]: f for f in result["figures"]}
    assert set(figures) == EXPECTED_PLOTS
    for figure in figures.values():
        assert figure["complete"] and min(figure["natural"]) > 100, figure  # the SVG decoded
        assert min(figure["shown"]) > 100, figure  # and takes room on the page


def test_a_broken_plot_is_what_the_browser_check_catches(tree, tmp_path):
    """The probe is not blind: an SVG that does not decode shows as such."""
    page = tmp_path / "report.html"
    write_report(tree, page)
    broken = re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "data:image/svg+xml;base64,PHN2Zw==",
                    page.read_text(), count=1)
    page.write_text(broken)
    figures = rendered(page, tmp_path)["figures"]
    assert [f["natural"] for f in figures].count([0, 0]) == 1


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
