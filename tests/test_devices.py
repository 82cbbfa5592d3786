"""The target's training strategy and precision, resolved against the devices a process sees."""

from __future__ import annotations

import pytest
import yaml

from benchpipe.contracts.config import TrainingDevices, load_target
from benchpipe.contracts.errors import ConfigError, TrainingError
from benchpipe.train.devices import (
    Gpu,
    ThreadCounts,
    TrainingPlacement,
    device_names,
    devices_record,
    distribution_name,
    make_strategy,
    per_replica_batch_size,
    placement,
    resolve_precision,
    thread_counts,
)

H100 = Gpu("NVIDIA H100", (9, 0))
P100 = Gpu("Tesla P100", (6, 0))


def test_auto_precision_is_mixed_only_where_every_gpu_has_tensor_cores():
    assert resolve_precision("auto", []) == "float32"
    assert resolve_precision("auto", [H100, H100]) == "mixed_float16"
    assert resolve_precision("auto", [H100, P100]) == "float32"
    assert resolve_precision("float32", [H100]) == "float32"


def test_mixed_precision_asked_of_a_device_without_it_names_the_key():
    with pytest.raises(TrainingError, match=r"training.precision is mixed_float16.*no GPU.*use auto or float32"):
        resolve_precision("mixed_float16", [])
    with pytest.raises(TrainingError, match=r"Tesla P100 \(compute capability \(6, 0\)\)"):
        resolve_precision("mixed_float16", [P100])


def test_mirrored_needs_gpus():
    with pytest.raises(TrainingError, match="training.distribution is mirrored, but no GPU is visible"):
        make_strategy("mirrored", [])


def test_this_cpu_gets_the_default_strategy_in_float32():
    # The real device list of this process: a CPU machine sees no GPU.
    result = placement(TrainingDevices())
    assert (result.replicas, result.precision) == (1, "float32")


def test_global_batch_is_split_never_multiplied():
    assert per_replica_batch_size(256, 8) == 32
    assert per_replica_batch_size(256, 1) == 256
    with pytest.raises(TrainingError, match="global_batch_size 100 does not split evenly over 8 replicas"):
        per_replica_batch_size(100, 8)


def test_target_file_carries_the_training_settings(tmp_path):
    path = tmp_path / "gpu-node.yaml"
    body = {"name": "gpu-node", "runtime": "local", "devices": {"kind": "gpu", "count": 8},
            "training": {"distribution": "mirrored", "precision": "mixed_float16"}}
    path.write_text(yaml.safe_dump(body))
    assert load_target(path).training == TrainingDevices("mirrored", "mixed_float16")
    body["training"] = {"intra_op_threads": 8, "inter_op_threads": None}
    path.write_text(yaml.safe_dump(body))
    assert load_target(path).training == TrainingDevices(intra_op_threads=8, inter_op_threads=None)
    body["training"] = {"inter_op_threads": 0}
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=r"gpu-node.yaml: key 'training.inter_op_threads'"):
        load_target(path)
    body["training"] = {"distribution": "horovod"}
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=r"gpu-node.yaml: key 'training.distribution'"):
        load_target(path)
    del body["training"]
    path.write_text(yaml.safe_dump(body))
    assert load_target(path).training == TrainingDevices("default", "auto", None, None)


def test_thread_counts_are_the_targets_or_else_the_jobs():
    assert thread_counts(TrainingDevices(), 4) == ThreadCounts(intra_op=4, inter_op=4)
    assert thread_counts(TrainingDevices(intra_op_threads=8), 4) == ThreadCounts(intra_op=8, inter_op=4)
    assert thread_counts(TrainingDevices(inter_op_threads=1), 4) == ThreadCounts(intra_op=4, inter_op=1)
    with pytest.raises(TrainingError, match=r"the job's thread count \(--threads\) is 0.*training.intra_op_threads"):
        thread_counts(TrainingDevices(), 0)
    with pytest.raises(TrainingError, match=r"target key training.inter_op_threads is -2"):
        thread_counts(TrainingDevices(inter_op_threads=-2), 4)


def test_the_record_of_a_default_placement_names_one_device():
    import tensorflow as tf

    default = TrainingPlacement(tf.distribute.get_strategy(), "float32", 1)
    assert distribution_name(default.strategy) == "default"
    first = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0]
    assert device_names(default.strategy) == [first.name]
    assert devices_record(default, ThreadCounts(2, 1), 256) == {
        "distribution": "default", "replicas": 1, "precision": "float32", "intra_op_threads": 2,
        "inter_op_threads": 1, "global_batch_size": 256, "per_replica_batch_size": 256, "devices": [first.name],
    }
    one_cpu = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert (distribution_name(one_cpu), device_names(one_cpu)) == ("mirrored", ["/device:CPU:0"])
