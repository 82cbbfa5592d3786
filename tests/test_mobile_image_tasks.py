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
    """Three images of different sizes in each folder the image tasks read: JPEGs in img/, which
    the app's ImageNet reads (.jpg, .jpeg, .rgb8) as COCO does, PNGs elsewhere."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder in ("img", "images", "lr"):
        (out / folder).mkdir()
        for k, (height, width) in enumerate([(60, 80), (33, 47), (90, 90)]):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            if folder == "img":
                (out / folder / f"{k:03d}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
            else:
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
    described = (f"3 images of img/, resized to 0.875^-1 of {size[1]}x{size[0]} and centre-cropped as the app does"
                 if task.startswith("image_classification")
                 else f"3 images of {folder}/, resized to {size[0]}x{size[1]}")
    assert record["dataset"]["name"].endswith(described)
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


# --- ImageNet as the app preprocesses and scores it ------------------------------------------------


def bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TFLite's reference ResizeBilinear with align_corners and half_pixel_centers off, in float64."""
    in_h, in_w = image.shape[:2]
    ys, xs = np.arange(out_h) * (in_h / out_h), np.arange(out_w) * (in_w / out_w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, in_h - 1), np.minimum(x0 + 1, in_w - 1)
    dy, dx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - dx) + image[y0][:, x1] * dx
    bottom = image[y1][:, x0] * (1 - dx) + image[y1][:, x1] * dx
    return top * (1 - dy) + bottom * dy


def test_imagenet_images_are_resized_cropped_and_normalised_as_the_app_does(tmp_path):
    import tensorflow as tf
    from PIL import Image

    from benchpipe.mobile.images import imagenet_preprocess

    rng = np.random.default_rng(1)
    # 500 wide, 375 high, for a 384x384 input: the resize targets 438x438 (384 / 0.875, truncated),
    # keeps the aspect ratio on the side that needs the larger ratio (438 / 375 = 1.168, so 584x438),
    # and the centre 384x384 is cut from (left 100, top 27).
    pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    path = tmp_path / "a.jpg"
    path.write_bytes(tf.io.encode_jpeg(pixels, quality=95).numpy())
    decoded = np.asarray(Image.open(path).convert("RGB"), np.float64)
    expected = bilinear(decoded, 438, 584)[27:27 + 384, 100:100 + 384]
    got = imagenet_preprocess(path, 384, 384, np.dtype("uint8"))
    assert got.shape == (384, 384, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(np.float64) - np.trunc(expected)).max() <= 1
    floats = imagenet_preprocess(path, 384, 384, np.dtype("float32"))
    assert np.allclose(floats, (expected - 127.5) / 127.5, atol=2 / 127.5)
    int8 = imagenet_preprocess(path, 384, 384, np.dtype("int8"))
    assert np.abs(int8.astype(np.float64) - np.trunc(expected - 128)).max() <= 1
    # A raw .rgb8 file is at the input's size already: taken as it is.
    square = rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)
    raw = tmp_path / "b.rgb8"
    raw.write_bytes(square.tobytes())
    assert np.array_equal(imagenet_preprocess(raw, 384, 384, np.dtype("uint8")), square)
    with pytest.raises(Exception, match=r"b.rgb8: 442368 bytes, a raw .rgb8 image of 300x300x3 has 270000"):
        imagenet_preprocess(raw, 300, 300, np.dtype("uint8"))


def classifier_by_red(path: Path) -> Path:
    """A uint8 model of MobileNetEdgeTPUv2-L's input whose top-1 of 1000 classes is the image's mean
    red value over ten, rounded."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, 384, 384, 3], tf.uint8)

    @tf.function(input_signature=[spec])
    def serve(x):
        red = tf.reduce_mean(tf.cast(x[..., 0], tf.float32), axis=[1, 2])
        return -tf.square(red[:, None] - 10.0 * tf.range(1000, dtype=tf.float32)[None, :])

    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], serve).convert())
    return path


def test_a_supplied_classifier_is_scored_on_imagenet_as_the_app_scores_it(app, tmp_path, cli_env):
    import tensorflow as tf

    from benchpipe.mobile.convert import supply

    tflite = classifier_by_red(tmp_path / "edgetpu.tflite")
    model = tmp_path / "model"
    supply(tflite, hashlib.sha256(tflite.read_bytes()).hexdigest(), "int8", model)
    data = tmp_path / "imagenet"
    (data / "img").mkdir(parents=True)
    # Solid reds of 50, 120 and 200: classes 5, 12 and 20; the labels say 5, 12 and 7.
    for k, red in enumerate((50, 120, 200)):
        pixels = np.zeros((300, 400, 3), np.uint8) + np.array([red, 30, 90], np.uint8)
        (data / "img" / f"ILSVRC2012_val_{k + 1:08d}.JPEG").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    (data / "imagenet_val_full.txt").write_text("5\n12\n7\n")
    out = tmp_path / "accuracy"
    benchpipe(cli_env, "mobile", "run", "--data", str(data), "--tasks", str(app / "tasks.json"), "--task",
              "image_classification_v2", "--model", str(model), "--mode", "accuracy", "--run-mode", "rapid",
              "--out", str(out))
    record = json.loads((out / "mobile_run.json").read_text())
    assert record["accuracy"] == pytest.approx(2 / 3) and record["accuracy_samples"] == 3
    assert record["dataset"]["files"] == {"input": "img", "groundtruth": "imagenet_val_full.txt"}
    logged = json.loads((out / "mlperf_log_accuracy.json").read_text())
    assert sorted((e["qsl_idx"], int(np.frombuffer(bytes.fromhex(e["data"]), "<i4")[0])) for e in logged) == [
        (0, 5), (1, 12), (2, 20)]
    assert "good=2, total=3" in (out / "accuracy.txt").read_text()
    # Fewer labels than images is refused, naming the file.
    (data / "imagenet_val_full.txt").write_text("5\n12\n")
    refused = benchpipe(cli_env, "mobile", "run", "--data", str(data), "--tasks", str(app / "tasks.json"), "--task",
                        "image_classification_v2", "--model", str(model), "--mode", "accuracy", "--run-mode",
                        "rapid", "--out", str(tmp_path / "again"), ok=False)
    assert f"{data / 'imagenet_val_full.txt'}: 2 labels for 3 images" in refused.stderr
