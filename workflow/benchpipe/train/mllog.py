"""One MLLOG logger per run, writing the official format through mlperf_logging.mllog."""

from __future__ import annotations

import logging
import numbers
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import mllog as _mllog

from benchpipe.contracts.errors import TrainingError


def plain(value: Any) -> Any:
    """Coerce numpy/TensorFlow scalars to Python ones.

    mllog drops a value it cannot JSON-encode with only a "Failed to encode" line, which
    would lose a required key silently; refuse such values loudly instead.
    """
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (bool, str)):
        return value
    raise TrainingError(f"MLLOG value {value!r} of type {type(value).__name__} is not a plain number or string")


class RunLog:
    """MLLOG events of one training run, appended to ``path``.

    A dedicated logging.Logger with exactly one file handler: mllog.config(filename=...)
    would add a handler to the shared logger on every call.
    """

    def __init__(self, path: Path, root_dir: Path | None = None) -> None:
        self.path = path
        self._logger = logging.getLogger(f"benchpipe.mllog.{path}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        for handler in list(self._logger.handlers):
            self._logger.removeHandler(handler)
            handler.close()
        self._handler = logging.FileHandler(path, mode="w", encoding="utf-8")
        self._logger.addHandler(self._handler)
        self._mllogger = _mllog.MLLogger(
            logger=self._logger,
            default_stack_offset=2,
            root_dir=str(root_dir) if root_dir else None,
        )

    def _meta(self, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        return {k: plain(v) for k, v in metadata.items()} if metadata else None

    def event(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        self._mllogger.event(key, plain(value), metadata=self._meta(metadata))

    def start(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        self._mllogger.start(key, plain(value), metadata=self._meta(metadata))

    def end(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        self._mllogger.end(key, plain(value), metadata=self._meta(metadata))

    def close(self) -> None:
        self._handler.flush()
        self._logger.removeHandler(self._handler)
        self._handler.close()
