"""The app's image tasks on supplied models, on a host: a tiny ``.tflite`` of each task's input and output
shapes (MobileNetEdgeTPUv2-L, SSD-MobileDET, MOSAIC, EDSR, as tasks.pbtxt sizes them) runs its
performance run through LiteRT and LoadGen on the images of the folder tasks.pbtxt names; an
accuracy run is refused, naming the app's metric. The rapid mode is the app's, its minimum duration
shortened to a second in a copy of tasks.json: what is tested is the wiring, not the timing. (Its 64
queries stay: with fewer, LoadGen's early stopping cannot bound a SingleStream p90.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from test_mobile_language import benchpipe

# task id -> (model id, the folder tasks.pbtxt names, input (height, width), input dtype, outputs)
TASKS = {
    "image_classification_v2": ("MobileNetEdgeTPUv2-L", "img", (384, 384), "float32", [[1, 1000]]),
    "image_classification_offline_v2": ("MobileNetEdgeTPUv2-L", "img", (384, 384), "float32", [[1, 1000]]),
    "object_detection": ("ssd_mobiledet", "img", (320, 320), "uint8", [[1, 10, 4], [1, 10], [1, 10], [1]]),
    "image_segmentation_v2": ("mosaic", "images", (512, 512), "float32", [[1, 512, 512]]),
    "super_resolution": ("edsr", "lr", (540, 960), "float32", [[1, 1080, 1920, 3]]),
}


def tiny_model(path: Path, size: tuple[int, int], dtype: str, task: str) -> Path:
    """A model of the task's input and output shapes whose outputs depend on its input."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, *size, 3], getattr(tf, dtype))

    @tf.function(input_signature=[spec])
    def serve(x):
        x = tf.cast(x, tf.float32)
        mean = tf.reduce_mean(x)
        if task == "object_detection":
            return (tf.fill([1, 10, 4], mean), tf.fill([1, 10], mean), tf.fill([1, 10], mean), tf.reshape(mean, [1]))
        if task == "image_segmentation_v2":
            return tf.cast(tf.argmax(x, axis=-1), tf.int32)
        if task == "super_resolution":
            return tf.nn.depth_to_space(tf.tile(x, [1, 1, 1, 4]), 2)
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), tf.ones([3, 1000]))

    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], serve).convert())
    return path


@pytest.fixture(scope="module")
def app(mobile_app, tmp_path_factory, cli_env) -> Path:
    """The app's tasks, their rapid mode lasting a second at least instead of six."""
    out = tmp_path_factory.mktemp("app") / "app"
    benchpipe(cli_env, "mobile", "app", "--app", str(mobile_app), "--out", str(out))
    tasks = json.loads((out / "tasks.json").read_text())
    for task in tasks["tasks"].values():
        rapid = task["runs"]["rapid"]
        rapid["min_duration_s"] = min(rapid["min_duration_s"], 1.0)
    (out / "tasks.json").write_text(json.dumps(tasks))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Three images of different sizes in each folder the image tasks read."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder in ("img", "images", "lr"):
        (out / folder).mkdir()
        for k, (height, width) in enumerate([(60, 80), (33, 47), (90, 90)]):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            (out / folder / f"{k:03d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
        (out / folder / "notes.txt").write_text("not an image: left out")
    return out


def supplied(root: Path, task: str) -> Path:
    """The task's tiny model, supplied as a user supplies one (here in-process: the command is
    tests/test_mobile_language.py's)."""
    from benchpipe.mobile.convert import supply

    _, _, size, dtype, _ = TASKS[task]
    tflite = tiny_model(root / f"{task}.tflite", size, dtype, task)
    supply(tflite, hashlib.sha256(tflite.read_bytes()).hexdigest(), "fp32", root / f"{task}-model")
    return root / f"{task}-model"


@pytest.mark.timing  # LoadGen must judge each run VALID
@pytest.mark.mobile_tasks  # five LoadGen runs: the full tier's
@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_image_task_runs_its_performance_run_on_a_model_of_its_shapes(task, app, data, tmp_path, cli_env):
    model_id, folder, size, _, outputs = TASKS[task]
    model = supplied(tmp_path, task)
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(model / "model.tflite")).get_output_details()
    assert [list(d["shape"]) for d in details] == outputs  # the task's shapes, as tasks.pbtxt sizes its model
    out = tmp_path / "performance"
    benchpipe(cli_env, "mobile", "run", "--data", str(data), "--tasks", str(app / "tasks.json"), "--task", task,
              "--model", str(model), "--mode", "performance", "--run-mode", "rapid", "--out", str(out))
    record = json.loads((out / "mobile_run.json").read_text())
    assert record["benchmark"] == model_id and record["accuracy"] is None
    assert record["dataset"]["files"] == {"input": folder} and record["dataset"]["samples"] == 3
    assert record["dataset"]["name"].endswith(f"3 images of {folder}/, resized to {size[0]}x{size[1]}")
    assert record["backend"]["batch_size"] == 1
    summary = (out / "mlperf_log_summary.txt").read_text()
    assert "Result is : VALID" in summary
    assert f"Scenario : {record['scenario']}" in summary


def test_an_image_tasks_accuracy_run_is_the_phones(app, data, tmp_path, cli_env):
    model = supplied(tmp_path, "super_resolution")
    refused = benchpipe(cli_env, "mobile", "run", "--data", str(data), "--tasks", str(app / "tasks.json"), "--task",
                        "super_resolution", "--model", str(model), "--mode", "accuracy", "--run-mode", "rapid",
                        "--out", str(tmp_path / "out"), ok=False)
    assert ("super_resolution (SNUSR): on a host benchpipe runs its performance runs only; its accuracy (PSNR) is "
            "the app's binary's to score, on a phone (runtime adb)") in refused.stderr
    empty = tmp_path / "empty"
    (empty / "lr").mkdir(parents=True)
    missing = benchpipe(cli_env, "mobile", "run", "--data", str(empty), "--tasks", str(app / "tasks.json"), "--task",
                        "super_resolution", "--model", str(model), "--mode", "performance", "--run-mode", "rapid",
                        "--out", str(tmp_path / "out"), ok=False)
    assert f"{empty / 'lr'}: no .jpg, .jpeg, .png images" in missing.stderr
    assert not (tmp_path / "out").exists()


def test_a_model_sized_otherwise_than_tasks_pbtxt_says_is_refused(app, data, tmp_path, cli_env):
    import tensorflow as tf

    spec = tf.TensorSpec([1, 300, 300, 3], tf.float32)
    serve = tf.function(lambda x: tf.reduce_mean(x, axis=[1, 2]), input_signature=[spec])
    tflite = tmp_path / "small.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], serve)
    tflite.write_bytes(converter.convert())
    from benchpipe.mobile.convert import supply

    model = tmp_path / "model"
    supply(tflite, hashlib.sha256(tflite.read_bytes()).hexdigest(), "fp32", model)
    refused = benchpipe(cli_env, "mobile", "run", "--data", str(data), "--tasks", str(app / "tasks.json"), "--task",
                        "object_detection", "--model", str(model), "--mode", "performance", "--run-mode", "rapid",
                        "--out", str(tmp_path / "out"), ok=False)
    assert (f"{model / 'model.tflite'}: input 300x300; tasks.pbtxt sizes object_detection's model (ssd_mobiledet) "
            "320x320") in refused.stderr
