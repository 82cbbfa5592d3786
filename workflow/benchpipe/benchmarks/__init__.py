"""Benchmark plug-ins: one module each, registered by name."""

from __future__ import annotations

import functools
import importlib

from benchpipe.benchmarks.base import Benchmark
from benchpipe.errors import ConfigError

_MODULES = {
    "digits": "benchpipe.benchmarks.digits",
    "mnist": "benchpipe.benchmarks.mnist",
    "resnet": "benchpipe.benchmarks.resnet",
}


def names() -> list[str]:
    return sorted(_MODULES)


# The DAG asks once per job: import_module's locking, every time, was a tenth of a millisecond.
@functools.cache
def get(name: str) -> Benchmark:
    if name not in _MODULES:
        raise ConfigError(f"unknown benchmark '{name}' (known: {', '.join(names())})")
    return importlib.import_module(_MODULES[name]).BENCHMARK
