"""The SavedModel a LoadGen test serves: one a training run exported, or one the user supplies.

Either way its sha256 is recorded beside the results (``model.json``) and goes into the
tree's ``measurements.json`` as the starting weights, so that an auditor can tell which
weights were measured.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.records import ServedModel

SAVED_MODEL_PB = "saved_model.pb"
CHECKPOINT_CONFIG = "config.json"


def savedmodel_sha256(directory: Path) -> str:
    """One digest of a SavedModel directory: every file's relative path and sha256, in path order.

    A SavedModel is a tree (saved_model.pb, variables/, assets/), so a single-file digest
    does not apply; listing each file's digest makes a changed or missing file change it.
    """
    if not (directory / SAVED_MODEL_PB).is_file():
        raise InferenceError(f"{directory}: not a SavedModel directory (no {SAVED_MODEL_PB})")
    return directory_sha256(directory)


def checkpoint_sha256(directory: Path) -> str:
    """The same digest of a Hugging Face checkpoint folder (config.json, safetensors, ...)."""
    if not (directory / CHECKPOINT_CONFIG).is_file():
        raise InferenceError(f"{directory}: not a checkpoint folder (no {CHECKPOINT_CONFIG})")
    return directory_sha256(directory)


def directory_sha256(directory: Path) -> str:
    """Every file's relative path and sha256, in path order, as one digest."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            digest.update(f"{path.relative_to(directory).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def supplied_model(directory: Path, expected_sha256: str, benchmark: str) -> ServedModel:
    """A user's SavedModel, refused unless its digest is the one the config states."""
    key = f"inference.models.{benchmark}"
    if not directory.is_dir():
        raise InferenceError(f"{key}.savedmodel: {directory} is not a directory")
    actual = savedmodel_sha256(directory)
    if actual != expected_sha256:
        raise InferenceError(
            f"{key}.sha256: {directory} has sha256 {actual}, the config says {expected_sha256}"
        )
    return ServedModel(str(directory), actual, "supplied", f"SavedModel {directory.name} (sha256 {actual})")


def supplied_checkpoint(directory: Path, expected_sha256: str, benchmark: str) -> ServedModel:
    """A user's Hugging Face checkpoint (an LLM benchmark's model), refused unless its digest matches."""
    key = f"inference.models.{benchmark}"
    if not directory.is_dir():
        raise InferenceError(f"{key}.checkpoint: {directory} is not a directory")
    actual = checkpoint_sha256(directory)
    if actual != expected_sha256:
        raise InferenceError(f"{key}.sha256: {directory} has sha256 {actual}, the config says {expected_sha256}")
    return ServedModel(str(directory), actual, "supplied", f"checkpoint {directory.name} (sha256 {actual})")


def trained_model(train_runs: list[Path]) -> ServedModel:
    """The model of the first training run that reached its target (open runs: see select_model)."""
    from benchpipe.results.mllog_parser import read_run, select_model

    model_dir = select_model(train_runs)
    digest = savedmodel_sha256(model_dir)
    run_dir = model_dir.parent
    run = read_run(run_dir)
    how = "reached the quality target" if run.status == "success" else (
        f"best evaluation accuracy {run.best_eval_accuracy:.4f} of open-division runs that stopped at their epoch limit"
    )
    return ServedModel(
        str(model_dir), digest, "training",
        f"SavedModel exported by benchpipe training run {run_dir} ({how}; sha256 {digest})",
    )


def input_sample_shape(directory: Path) -> tuple[int, ...]:
    """The per-sample input shape of the ``serving_default`` signature, read from saved_model.pb.

    Read from the proto, without loading the variables, so that the sample source can be
    chosen (e.g. ResNet at 224 px or at a training size) before the model is built.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = directory / SAVED_MODEL_PB
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
        signature = proto.meta_graphs[0].signature_def["serving_default"]
    except (OSError, IndexError, KeyError, ValueError) as exc:
        raise InferenceError(f"{path}: no serving_default signature ({exc})") from exc
    if len(signature.inputs) != 1:
        raise InferenceError(f"{path}: serving_default takes {len(signature.inputs)} inputs, benchpipe serves one")
    (tensor,) = signature.inputs.values()
    dims = [d.size for d in tensor.tensor_shape.dim][1:]
    if any(d < 0 for d in dims):
        raise InferenceError(f"{path}: serving_default input has an unknown sample shape {dims}")
    return tuple(dims)
