"""The small JSON records of the runs tree that several stages read back: which model a
LoadGen test served (``model.json``) and which kind of run a scenario was calibrated for
(``calibration.json``'s ``kind``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.layout import CALIBRATION, MODEL_RECORD
from benchpipe.contracts.rounds import OFFICIAL_MIN_DURATION_MS


@dataclass(frozen=True)
class ServedModel:
    path: str
    sha256: str
    origin: str  # "training" (benchpipe trained it) or "supplied" (inference.models)
    description: str  # one line for READMEs and measurements.json

    @property
    def retrained(self) -> bool:
        return self.origin == "training"

    def write(self, directory: Path) -> None:
        (directory / MODEL_RECORD).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")


def read_model_record(directory: Path) -> ServedModel:
    path = directory / MODEL_RECORD
    try:
        return ServedModel(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise InferenceError(f"{path}: cannot read the served model's record: {exc}") from exc


@dataclass(frozen=True)
class RunKind:
    """Development (short, accuracy on a subset, labelled) or official (what a round needs)."""

    official: bool
    min_duration_ms: int
    accuracy_samples: int | None  # None: the whole dataset

    @classmethod
    def from_settings(cls, inference: dict[str, Any]) -> RunKind:
        if inference.get("official"):
            return cls(True, OFFICIAL_MIN_DURATION_MS, None)
        return cls(False, int(inference["min_duration_ms"]), inference.get("accuracy_samples"))

    @property
    def label(self) -> str:
        if self.official:
            return "official"
        return (
            f"development (min_duration {self.min_duration_ms} ms"
            + (f", accuracy on the first {self.accuracy_samples} samples" if self.accuracy_samples else "")
            + "): not valid for a round"
        )


def read_run_kind(directory: Path) -> RunKind:
    """The RunKind a calibration directory (or a test that copied its calibration) was made for."""
    path = directory / CALIBRATION
    try:
        return RunKind(**json.loads(path.read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InferenceError(f"{path}: cannot read the calibration: {exc}") from exc
