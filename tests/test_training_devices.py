"""The harness on the target's devices: strategy, precision and thread counts, through real runs.

A MirroredStrategy needs two devices, and TensorFlow makes logical devices only before it
starts; so do thread counts. Those runs happen in a child process that splits its CPU in
two (``_child`` below), and the tests read what it wrote.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchpipe.contracts import registry
from benchpipe.contracts.config import TrainingDevices
from benchpipe.contracts.errors import TrainingError
from benchpipe.datasets.prepare import load_split
from benchpipe.results.mllog_parser import parse_mllog
from benchpipe.train.devices import TrainingPlacement
from benchpipe.train.harness import Submission, train_run

DIGITS = registry.get("digits")
RESNET = registry.get("resnet")
SUBMISSION = Submission("benchpipe", "local-cpu", "closed", "research")
UNREACHABLE = dataclasses.replace(DIGITS, quality_target=1.01)
EPOCHS = 2
REPLICA_DEVICES = ["/device:CPU:0", "/device:CPU:1"]
# A tiny ResNet: 12 train images in global batches of 4 (2 a replica), 6 val images in
# eval batches of 4, whose short last one gives each replica one image.
TINY_RESNET = dataclasses.replace(
    RESNET,
    hyperparameters=dataclasses.replace(RESNET.hyperparameters, image_size=32, global_batch_size=4, max_epochs=3),
    eval_every_epochs=1,
    eval_offset=0,
)


def _eval_accuracies(run_dir: Path) -> list[float]:
    return [e.value for e in parse_mllog(run_dir / "mllog.txt") if e.key == "eval_accuracy"]


def _mllog_value(run_dir: Path, key: str):
    return next(e.value for e in parse_mllog(run_dir / "mllog.txt") if e.key == key)


def _devices(run_dir: Path) -> dict:
    return json.loads((run_dir / "devices.json").read_text())


# ---- the child process ---------------------------------------------------------------


@functools.cache
def _two_cpu_strategy():
    import tensorflow as tf

    # One for the whole process: a second MirroredStrategy over the same devices numbers its
    # collective all-reduces from the same keys as the first, and TensorFlow then mixes up
    # the two models' gradients ("Shape mismatch in the collective instance").
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _two_cpus(settings: TrainingDevices) -> TrainingPlacement:
    return TrainingPlacement(_two_cpu_strategy(), "float32", 2)


def _recording(benchmark, models: list, batch_log: Path | None = None):
    """``benchmark`` whose models are kept in ``models``, each replica's train batch size logged to ``batch_log``."""
    import tensorflow as tf

    def build():
        model = benchmark.build_model()
        if batch_log is not None:
            step = model.train_step

            def logged(data):
                # Runs in each replica's copy of the train step, on that replica's share.
                tf.print(tf.shape(data[0])[0], output_stream=f"file://{batch_log}")
                return step(data)

            model.train_step = logged
        models.append(model)
        return model

    return dataclasses.replace(benchmark, build_model=build)


class _RecordingHooks:
    """Trainer hooks whose models are kept in ``models``, with Keras's SGD at a rate of zero.

    ResNet-50 on two images a replica overflows within its three steps at any rate that moves it: at zero
    the steps still run and the BatchNormalization statistics still move, while the logits
    stay finite enough to compare predictions.
    """

    def __init__(self, hooks, models: list) -> None:
        self._hooks = hooks
        self._models = models

    def __getattr__(self, name: str):
        return getattr(self._hooks, name)

    def build_model(self, data_dir: Path):
        model = self._hooks.build_model(data_dir)
        self._models.append(model)
        return model

    def build_optimizer(self, steps_per_epoch: int):
        import keras

        return keras.optimizers.SGD(learning_rate=0.0, momentum=0.9)


def _digits_child(data: Path, work: Path) -> dict:
    import tensorflow as tf

    results: dict = {}
    models: list = []
    threads = TrainingDevices(intra_op_threads=1, inter_op_threads=2)
    train_run(_recording(UNREACHABLE, models, work / "batches.txt"), data, work / "mirrored", seed=11,
              submission=SUBMISSION, threads=2, max_epochs=EPOCHS, devices=threads, resolve_placement=_two_cpus)
    results["iterations"] = int(models[-1].optimizer.iterations.numpy())
    results["tf_threads"] = [tf.config.threading.get_intra_op_parallelism_threads(),
                             tf.config.threading.get_inter_op_parallelism_threads()]
    train_run(UNREACHABLE, data, work / "mirrored_again", seed=11, submission=SUBMISSION, threads=2,
              max_epochs=EPOCHS, devices=threads, resolve_placement=_two_cpus)
    train_run(UNREACHABLE, data, work / "default", seed=11, submission=SUBMISSION, threads=2,
              max_epochs=EPOCHS, devices=threads)

    odd = dataclasses.replace(UNREACHABLE, hyperparameters=dataclasses.replace(
        DIGITS.hyperparameters, global_batch_size=33))
    for name, run in [
        ("uneven", lambda: train_run(odd, data, work / "uneven", seed=1, submission=SUBMISSION, threads=2,
                                     max_epochs=1, devices=threads, resolve_placement=_two_cpus)),
        ("thread_change", lambda: train_run(UNREACHABLE, data, work / "thread_change", seed=1,
                                            submission=SUBMISSION, threads=2, max_epochs=1)),
    ]:
        try:
            run()
            results[name] = None
        except TrainingError as exc:
            results[name] = str(exc)
    results.update(_replica_copies_child())
    return results


def _replica_copies_child() -> dict:
    """Which variables each optimizer leaves different on the two replicas after a step; the guard's message."""
    import keras
    import numpy as np

    from benchpipe.benchmarks.resnet.optimizers import LARS, SGDWithL2
    from benchpipe.train.harness import check_replicas_agree, diverged_replica_copies

    results: dict = {}
    models = {}
    strategy = _two_cpus(TrainingDevices()).strategy
    for name, optimizer in [("keras_sgd", lambda: keras.optimizers.SGD(0.1, momentum=0.9)),
                            ("lars", lambda: LARS(0.1)), ("sgd_with_l2", lambda: SGDWithL2(0.1, l2=0.01))]:
        with strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(name="bn"),
                                      keras.layers.Dense(3, name="dense")], name="tiny")
            model.compile(optimizer=optimizer(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=False)
        rng = np.random.default_rng(0)
        model.fit(rng.normal(size=(8, 4)).astype(np.float32), np.arange(8, dtype=np.int32) % 3, batch_size=8,
                  epochs=1, verbose=0)
        results[f"{name}_diverged"] = diverged_replica_copies(model)
        models[name] = model
    # A copy made different by hand: the check names it and refuses the model.
    model = models["keras_sgd"]
    kernel = model.get_layer("dense").kernel
    strategy.experimental_local_results(kernel.value)[1].assign_add(np.ones(kernel.shape, np.float32))
    results["hand_diverged"] = diverged_replica_copies(model)
    try:
        check_replicas_agree(DIGITS, model)
        results["guard"] = None
    except TrainingError as exc:
        results["guard"] = str(exc)
    return results


def _resnet_child(data: Path, work: Path) -> dict:
    models: list = []
    recording = dataclasses.replace(TINY_RESNET, trainer=lambda hp: _RecordingHooks(TINY_RESNET.trainer(hp), models))
    outcome = train_run(recording, data, work / "resnet", seed=3, submission=SUBMISSION, threads=2,
                        max_epochs=1, resolve_placement=_two_cpus)
    model = models[-1]
    strategy = model.distribute_strategy
    differing = [v.path for v in model.non_trainable_variables
                 if len({c.numpy().tobytes() for c in strategy.experimental_local_results(v.value)}) > 1]
    return {"epochs": outcome.epochs, "iterations": int(model.optimizer.iterations.numpy()),
            "differing_replica_copies": differing,
            "exported_accuracy": _exported_accuracy(work / "resnet" / "model",
                                                    TINY_RESNET.trainer(TINY_RESNET.hyperparameters).eval_dataset(data))}


def _exported_accuracy(model_dir: Path, batches) -> float:
    """Top-1 of the exported model over ``batches``, on one device: what the run's evaluation must match."""
    import numpy as np
    import tensorflow as tf

    exported = tf.saved_model.load(str(model_dir))
    hits, seen = 0, 0
    for images, labels in batches:
        logits = exported.serve(tf.constant(images)).numpy()
        assert np.isfinite(logits).all(), f"{model_dir}: non-finite logits"
        predicted = np.argmax(logits, axis=1)
        hits += int(np.sum(predicted == np.asarray(labels)))
        seen += len(predicted)
    return hits / seen


def _child(which: str, data: str, work: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    run = {"digits": _digits_child, "resnet": _resnet_child}[which]
    results = run(Path(data), Path(work))
    (Path(work) / "results.json").write_text(json.dumps(results))


def _run_child(which: str, data: Path, work: Path, env: dict[str, str]) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "from test_training_devices import _child; _child(*sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", code, which, str(data), str(work)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "results.json").read_text())


# ---- two replicas on one CPU -----------------------------------------------------------


@pytest.fixture(scope="module")
def two_replicas(digits_data, tmp_path_factory, cli_env) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("two-replicas")
    return work, _run_child("digits", digits_data, work, cli_env)


@pytest.mark.slow
@pytest.mark.resnet
def test_mirrored_run_splits_the_global_batch_over_its_replicas(two_replicas, digits_data):
    work, results = two_replicas
    run = work / "mirrored"
    assert _devices(run) == {
        "distribution": "mirrored", "replicas": 2, "devices": REPLICA_DEVICES, "precision": "float32",
        "global_batch_size": 32, "per_replica_batch_size": 16, "intra_op_threads": 1, "inter_op_threads": 2,
    }
    assert list(json.loads((run / "devices.json").read_text())) == sorted(_devices(run))
    # The log and the schedule know the global batch only; the steps are those of one device.
    train_rows = len(load_split(digits_data, "train").labels)
    steps_per_epoch = -(-train_rows // 32)
    assert _mllog_value(run, "global_batch_size") == 32
    assert _mllog_value(run, "model_bn_span") == 16  # each replica normalizes over its own half
    assert _mllog_value(run, "sgd_opt_learning_rate_decay_steps") == DIGITS.hyperparameters.max_epochs * steps_per_epoch
    assert results["iterations"] == EPOCHS * steps_per_epoch
    # Each replica took at most half a global batch; together they saw every sample once an
    # epoch (the warm-up, on zeros, adds one full and one short batch).
    sizes = collections.Counter(int(line) for line in (work / "batches.txt").read_text().split())
    assert max(sizes) == 16 and sizes[16] > 0
    warm_up_rows = 32 + train_rows % 32
    assert sum(size * count for size, count in sizes.items()) == warm_up_rows + EPOCHS * train_rows
    accuracies = _eval_accuracies(run)
    assert len(accuracies) == EPOCHS and accuracies[-1] > 0.9
    # The evaluation, split over the replicas, counts each eval sample once.
    evaluation = load_split(digits_data, "eval")
    assert accuracies[-1] == pytest.approx(_exported_accuracy(run / "model", [(evaluation.features, evaluation.labels)]))


@pytest.mark.slow
@pytest.mark.resnet
def test_the_seed_alone_decides_a_mirrored_run(two_replicas):
    work, _ = two_replicas
    assert _eval_accuracies(work / "mirrored") == _eval_accuracies(work / "mirrored_again")
    assert _devices(work / "default")["distribution"] == "default"
    assert _devices(work / "default")["devices"] == ["/device:CPU:0"]


@pytest.mark.slow
@pytest.mark.resnet
def test_a_global_batch_that_does_not_split_fails_in_init(two_replicas):
    work, results = two_replicas
    message = results["uneven"]
    assert message is not None
    assert "digits: target key training.distribution is mirrored with 2 replicas" in message
    assert "global_batch_size 33 does not split evenly over 2 replicas" in message
    assert not (work / "uneven").exists()
    assert not list(work.glob(".uneven.partial-*"))


@pytest.mark.slow
@pytest.mark.resnet
def test_thread_counts_of_the_target_reach_tensorflow(two_replicas):
    work, results = two_replicas
    assert results["tf_threads"] == [1, 2]
    # Null counts take the job's: 2 and 2, which TensorFlow, already started with 1 and 2, refuses.
    message = results["thread_change"]
    assert message is not None
    assert "training.intra_op_threads (null: the job's --threads) asks for 2 threads" in message
    assert "already started in this process with 1" in message
    assert not (work / "thread_change").exists()


@pytest.mark.slow
@pytest.mark.resnet
def test_a_model_whose_replicas_differ_is_refused(two_replicas):
    _, results = two_replicas
    assert results["keras_sgd_diverged"] == []
    assert results["hand_diverged"] == ["tiny/dense/kernel"]
    assert results["guard"] == (
        "digits: after training on 2 replicas their copies of 1 trainable variables differ (tiny/dense/kernel): "
        "the optimizer updated the replicas differently"
    )


@pytest.mark.slow
@pytest.mark.resnet
def test_the_resnet_optimizers_update_every_replica_alike(two_replicas):
    _, results = two_replicas
    assert (results["lars_diverged"], results["sgd_with_l2_diverged"]) == ([], [])


# ---- the trainer-hooks path under two replicas ----------------------------------------------


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    from imagenet_tree import layout, make_tree

    from benchpipe.datasets.tfrecord import convert

    out = tmp_path_factory.mktemp("converted") / "imagenet"
    convert(layout(make_tree(tmp_path_factory.mktemp("imagenet-src"))), out, workers=1)
    return out


@pytest.mark.slow
@pytest.mark.resnet
def test_a_trainer_hooks_run_evaluates_every_image_once_over_two_replicas(imagenet, tmp_path, cli_env):
    from imagenet_tree import SUBSET

    results = _run_child("resnet", imagenet, tmp_path, cli_env)
    run = tmp_path / "resnet"
    assert results["epochs"] == 1 and results["iterations"] == 3  # 12 images in global batches of 4
    # Each replica updates its own copy of the BatchNormalization statistics; the evaluation
    # made them one again, and the exported model holds that one.
    assert results["differing_replica_copies"] == []
    assert _devices(run)["per_replica_batch_size"] == 2 and _devices(run)["replicas"] == 2
    (accuracy,) = _eval_accuracies(run)
    # The 6 val images, in eval batches of 4 and 2 split over the replicas: each counted once,
    # as the exported model on one device counts them.
    assert abs(accuracy * SUBSET.val_images - round(accuracy * SUBSET.val_images)) < 1e-9
    assert accuracy == pytest.approx(results["exported_accuracy"])


# ---- precision ----------------------------------------------------------------------


def _forced_mixed(settings: TrainingDevices) -> TrainingPlacement:
    import tensorflow as tf

    # No CPU passes resolve_precision's check for mixed_float16; Keras runs it on a CPU all the same.
    return TrainingPlacement(tf.distribute.get_strategy(), "mixed_float16", 1)


@pytest.mark.slow
@pytest.mark.resnet
def test_a_mixed_float16_run_trains_in_float16_and_leaves_the_global_policy_alone(digits_data, tmp_path):
    import keras
    import tensorflow as tf

    models: list = []
    out = tmp_path / "run_0"
    # One epoch: a CPU has no float16 kernels that pay, so an epoch takes some 20 times longer.
    outcome = train_run(_recording(UNREACHABLE, models), digits_data, out, seed=5, submission=SUBMISSION,
                        threads=2, max_epochs=1, resolve_placement=_forced_mixed)
    assert keras.mixed_precision.dtype_policy().name == "float32"
    assert outcome.epochs == 1
    model = models[0]
    assert model.dtype_policy.name == "mixed_float16"
    assert all(w.dtype == "float32" for w in model.weights)  # float32 variables, float16 compute
    # Keras wraps the optimizer under mixed_float16, so that float16 gradients do not underflow.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert _devices(out)["precision"] == "mixed_float16"
    accuracies = _eval_accuracies(out)
    assert accuracies[-1] > 0.7  # it learns: a float32 run has 0.81 after one epoch
    # The exported model computes in float16 too, and agrees with the run's last evaluation.
    evaluation = load_split(digits_data, "eval")
    assert _exported_accuracy(out / "model", [(evaluation.features, evaluation.labels)]) == pytest.approx(accuracies[-1])
    # The logits layer computes in float32 whatever the policy, as ResNet's classifier does.
    exported = tf.saved_model.load(str(out / "model"))
    assert exported.serve(tf.constant(evaluation.features[:2])).dtype == tf.float32


def test_the_global_policy_comes_back_after_a_failed_run(digits_data, tmp_path):
    import keras

    def broken():
        raise TrainingError("no model today")

    out = tmp_path / "run_0"
    with pytest.raises(TrainingError, match="no model today"):
        train_run(dataclasses.replace(DIGITS, build_model=broken), digits_data, out, seed=1,
                  submission=SUBMISSION, threads=2, resolve_placement=_forced_mixed)
    assert keras.mixed_precision.dtype_policy().name == "float32"
    assert not out.exists()


def test_a_default_run_records_one_device_in_float32(trained_run):
    assert _devices(trained_run) == {
        "distribution": "default", "replicas": 1, "devices": ["/device:CPU:0"], "precision": "float32",
        "global_batch_size": 32, "per_replica_batch_size": 32, "intra_op_threads": 2, "inter_op_threads": 2,
    }


def test_a_placement_the_devices_cannot_give_fails_in_init(digits_data, tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("mirrored needs no GPU to fail here")
    out = tmp_path / "run_0"
    with pytest.raises(TrainingError, match="training.distribution is mirrored, but no GPU is visible"):
        train_run(DIGITS, digits_data, out, seed=1, submission=SUBMISSION, threads=2,
                  devices=TrainingDevices(distribution="mirrored"))
    assert not out.exists()


def test_the_warm_up_leaves_a_mixed_float16_model_alone_loss_scale_included(digits_data):
    import keras

    from benchpipe.train.harness import DataShape, compile_model, configure_tensorflow, dtype_policy, warm_up_steps

    configure_tensorflow(seed=5, threads=2)
    shape = DataShape.from_manifest(digits_data)
    with dtype_policy("mixed_float16"):
        model = compile_model(DIGITS, -(-shape.train_rows // 32))
        model.optimizer.build(model.trainable_variables)
        state = [*model.variables, *model.optimizer.variables]
        assert {"step_counter", "dynamic_scale"} <= {v.name for v in state}
        before = [v.numpy().copy() for v in state]
        warm_up_steps(model, 32, shape)
    assert keras.mixed_precision.dtype_policy().name == "float32"
    assert all((v.numpy() == b).all() for v, b in zip(state, before))
