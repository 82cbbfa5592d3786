"""The app's own models supplied by the user in the workflow's config (mobile.supplied): checked
before any job runs, expanded into runs beside the benchmarks', and their tasks checked against
the app's tasks.pbtxt by the first job. The runs themselves are the reduced workflow's
(tests/test_mobile_workflow.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from benchpipe.contracts.config import check_config, check_mobile_config, supplied_models
from benchpipe.contracts.errors import ConfigError
from benchpipe.contracts.schemas import validate
from benchpipe.mobile.app import materialize
from benchpipe.pipeline.checks import mobile_task_runs
from benchpipe.pipeline.options import mobile_app, mobile_serving

REPO = Path(__file__).resolve().parents[1]
LANGUAGE_TASK = "natural_language_processing"
SHA = "ab" * 32


@pytest.fixture
def user(tmp_path) -> Path:
    """A user's folder: two .tflite files and a data folder."""
    (tmp_path / "data").mkdir()
    for name in ("bert_fp32.tflite", "bert_int8.tflite", "edgetpu.tflite"):
        (tmp_path / name).write_bytes(b"tflite")
    return tmp_path


def config(supplied: dict, **mobile) -> dict:
    settings = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    settings["mobile"].update(supplied=supplied, **mobile)
    validate(settings, "config.schema.json", what="config", fill_defaults=True)
    return settings


def bert(user: Path, **entry) -> dict:
    return {"tasks": ["natural_language_processing"], "data": str(user / "data"),
            "fp32": {"tflite": str(user / "bert_fp32.tflite"), "sha256": SHA},
            "int8": {"tflite": str(user / "bert_int8.tflite"), "sha256": SHA}, **entry}


def test_supplied_models_expand_into_runs_beside_the_benchmarks(user):
    settings = config({"bert": bert(user),
                       "edgetpu": {"tasks": ["image_classification_v2", "image_classification_offline_v2"],
                                   "data": "data", "modes": ["performance"],
                                   "int8": {"tflite": "edgetpu.tflite", "sha256": SHA}}})
    models = supplied_models(settings, user)  # relative paths are from the given base folder
    assert models["edgetpu"].data == user / "data"
    assert models["edgetpu"].tflite == {"int8": (user / "edgetpu.tflite", SHA)}
    edgetpu = settings["mobile"]["supplied"]["edgetpu"]
    edgetpu.update(data=str(user / "data"), int8={"tflite": str(user / "edgetpu.tflite"), "sha256": SHA})
    targets = check_mobile_config(settings, REPO, check_config(settings, REPO))
    runs = {tuple(r) for r in mobile_task_runs(settings, targets, REPO)}
    digits = {r for r in runs if r[1] == "digits"}
    assert len(digits) == 2 * 2  # .test's precisions x its one task x two modes, as without supplied models
    assert {r for r in runs if r[1] == "bert"} == {
        ("local-litert", "bert", precision, "natural_language_processing", mode)
        for precision in ("fp32", "int8") for mode in ("performance", "accuracy")}
    assert {r for r in runs if r[1] == "edgetpu"} == {
        ("local-litert", "edgetpu", "int8", task, "performance")
        for task in ("image_classification_v2", "image_classification_offline_v2")}
    assert mobile_serving(settings, "digits") == "--benchmark digits"
    assert mobile_serving(settings, "bert") == ""
    settings["mobile"]["supplied"]["bert"]["stand_in_data"] = True
    assert mobile_serving(settings, "bert") == "--stand-in-data"
    options = mobile_app(settings).split()
    assert {o for o in options if o.startswith("--supplied")} == {
        "--supplied=bert:natural_language_processing:accuracy", "--supplied=edgetpu:image_classification_v2",
        "--supplied=edgetpu:image_classification_offline_v2"}
    # On phones alone the app's binary scores every task: nothing asks the host to.
    assert "--supplied=bert:natural_language_processing" in mobile_app(settings, host_targets=False).split()


@pytest.mark.parametrize("change, key, says", [
    (lambda s, u: s.update(digits=s.pop("bert")), "mobile.supplied.digits",
     "is a benchpipe benchmark's name"),
    (lambda s, u: s["bert"].update(data=str(u / "nowhere")), "mobile.supplied.bert.data", "no such folder"),
    (lambda s, u: s["bert"]["int8"].update(tflite=str(u / "gone.tflite")), "mobile.supplied.bert.int8.tflite",
     "no such file"),
    (lambda s, u: s["bert"].pop("fp32"), "mobile.supplied.bert",
     "int8's accuracy is held to the fp32 model's on the same samples"),
])
def test_bad_entries_are_named(user, change, key, says):
    supplied = {"bert": bert(user)}
    change(supplied, user)
    with pytest.raises(ConfigError, match=f"^{key}: .*{says}"):
        supplied_models(config(supplied), user)


def test_a_submission_scores_every_supplied_task_and_int8_alone_may_run_performance(user):
    entry = bert(user, modes=["performance"])
    entry.pop("fp32")
    assert list(supplied_models(config({"bert": entry}), user)["bert"].tflite) == ["int8"]
    with pytest.raises(ConfigError, match=r"^mobile.supplied.bert.modes: a submission \(mobile.official\)"):
        supplied_models(config({"bert": entry}, official=True), user)


def test_supplied_models_without_a_mobile_target_are_refused(user):
    settings = config({"bert": bert(user)}, targets=[])
    with pytest.raises(ConfigError, match="mobile.supplied: bert would run on no target"):
        check_mobile_config(settings, REPO, check_config(settings, REPO))


def test_the_schema_wants_a_model_and_a_digest(user):
    entry = bert(user)
    for precision in ("fp32", "int8"):
        entry.pop(precision)
    with pytest.raises(Exception, match="mobile.supplied.bert"):
        config({"bert": entry})
    with pytest.raises(Exception, match="sha256"):
        config({"bert": bert(user, fp32={"tflite": "x.tflite", "sha256": "not-hex"})})


def test_the_apps_file_is_asked_for_each_supplied_task(mobile_app, tmp_path):
    def make(out: str, supplied, on_host: bool = True):
        return materialize(tmp_path / out, app=mobile_app, mirrors=(), cache_dir=tmp_path / "cache",
                           supplied=supplied, supplied_on_host=on_host)

    record = make("ok", [("bert", "natural_language_processing", True), ("ssd", "object_detection", False)])
    assert record["tasks"]["natural_language_processing"]["dataset_type"] == "SQUAD"
    with pytest.raises(ConfigError, match=r"^mobile.supplied.ssd.modes: object_detection is a COCO task, whose "
                                          r"accuracy \(mAP\) the app's binary scores on a phone"):
        make("coco", [("ssd", "object_detection", True)])
    with pytest.raises(ConfigError, match=r"^mobile.supplied.x.tasks: stable_diffusion is a COCOGEN task in "
                                          r"SingleStream in .*; the app's tasks benchpipe runs on a host: .*"
                                          r"natural_language_processing, object_detection, super_resolution$"):
        make("gen", [("x", "stable_diffusion", False)])
    # A phone's binary runs it.
    assert "stable_diffusion" in make("phone", [("x", "stable_diffusion", False)], on_host=False)["tasks"]
    with pytest.raises(ConfigError, match=r"^mobile.supplied.x.tasks: no_task is no such task in "):
        make("none", [("x", "no_task", False)])
    assert not any((tmp_path / out).exists() for out in ("coco", "gen", "none"))


@pytest.mark.slow
def test_a_phone_target_runs_a_supplied_model_through_the_workflow(tmp_path, cli_env):
    """The workflow's Mobile jobs for a phone (runtime adb) on the supplied model of the reduced
    suite, against the fake adb: the rules' command lines reach the device, and the result is
    filled from what came back: the device's description, and the F1 the app's binary printed."""
    from test_adb_runtime import FAKE_ADB_DIR, PROPS, SERIAL, write_canned_logs

    build = tmp_path / "build"
    build.mkdir()
    (build / "mlperf_main").write_bytes(b"\x7fELF binary")
    (build / "libtflitebackend.so").write_bytes(b"\x7fELF backend")
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "local-cpu.yaml").write_text((REPO / "config" / "targets" / "local-cpu.yaml").read_text())
    phone = yaml.safe_load((REPO / "config" / "targets" / "android-phone.yaml").read_text())
    phone.update(name="phone", adb={**phone["adb"], "binary": str(build / "mlperf_main"),
                                    "lib_path": str(build / "libtflitebackend.so")})
    (targets / "phone.yaml").write_text(yaml.safe_dump(phone))
    settings = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    settings["mobile"]["targets"] = ["phone"]
    settings["targets_dir"] = str(targets)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    write_canned_logs(tmp_path / "canned")
    (tmp_path / "props.json").write_text(json.dumps(PROPS))
    (tmp_path / "device").mkdir()
    env = {**cli_env, "PATH": f"{FAKE_ADB_DIR}:{cli_env['PATH']}", "FAKE_ADB_LOG": str(tmp_path / "calls.jsonl"),
           "FAKE_ADB_DEVICES": f"{SERIAL}\tdevice\n", "FAKE_ADB_ROOT": str(tmp_path / "device"),
           "FAKE_ADB_PROPS": str(tmp_path / "props.json"), "FAKE_ADB_LOGS": str(tmp_path / "canned"),
           "FAKE_ADB_ACCURACY": "90.125"}
    work = tmp_path / "wd"
    result = "runs/phone/mobilebert_tiny/mobile/fp32/result"
    proc = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2",
                           result, "--configfile", str(tmp_path / "config.yaml")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    runs = [c for c in calls if c[-1].startswith("cd ") and "mlperf_main EXTERNAL" in c[-1]]
    assert len(runs) == 2
    for call in runs:
        assert " EXTERNAL natural_language_processing " in call[-1]
        assert "/datasets/squad/squad_eval_mini.tfrecord" in call[-1]
    assert {"--mode=PerformanceOnly" in c[-1] for c in runs} == {True, False}
    landed = tmp_path / "device" / "data/local/tmp/benchpipe/datasets/squad"
    for name in ("squad_eval_mini.tfrecord", "squad_groundtruth.tfrecord"):
        assert (landed / name).read_bytes() == (REPO / ".test" / "mobile" / "squad" / name).read_bytes()
    stated = json.loads((work / result / "result.json").read_text())
    assert stated["environment_info"]["platform"] == "android"
    assert stated["environment_info"]["value"]["android"]["model_name"] == PROPS["ro.product.marketname"]
    (entry,) = stated["results"]
    assert entry["accuracy_run"]["accuracy"]["normalized"] == pytest.approx(0.90125)
    assert entry["performance_run"]["loadgen"]["is_result_valid"]
    # What drove the phone: this host's benchpipe (build_info), recorded by each run.
    for mode in ("performance", "accuracy"):
        assert (work / result).parent.joinpath(LANGUAGE_TASK, mode, "provenance.json").is_file()


def test_a_config_without_mobile_targets_checks_no_mobile_result(tmp_path):
    """No Mobile target, no app files fetched: the packager's and the audit's Mobile checks have
    nothing to read, and must not look for the app's tasks.json."""
    from benchpipe.package.mobile import check_results, expected_results

    settings = config({}, targets=[])
    results = expected_results(settings, tmp_path / "runs", tmp_path / "no_app")
    assert results == [] and check_results(settings, results, tmp_path / "no_app") == []
