"""The registry of benchmark plug-ins: each name, and the module (in ``benchpipe.benchmarks``)
that defines its ``BENCHMARK``, loaded on first use as a plug-in is."""

from __future__ import annotations

import functools
import importlib

from benchpipe.contracts.benchmark import Benchmark
from benchpipe.contracts.errors import ConfigError

# "module" holds BENCHMARK; "module:NAME" holds it as NAME (one module, several benchmarks).
_MODULES = {
    "digits": "benchpipe.benchmarks.digits",
    "llama2_70b_lora": "benchpipe.benchmarks.llama.benchmark",
    "llama31_8b": "benchpipe.benchmarks.llama.serving:DATACENTER",
    "llama31_8b_edge": "benchpipe.benchmarks.llama.serving:EDGE",
    "mnist": "benchpipe.benchmarks.mnist",
    "resnet": "benchpipe.benchmarks.resnet.benchmark",
}


def names() -> list[str]:
    return sorted(_MODULES)


# The DAG asks once per job: import_module's locking, every time, was a tenth of a millisecond.
@functools.cache
def get(name: str) -> Benchmark:
    if name not in _MODULES:
        raise ConfigError(f"unknown benchmark '{name}' (known: {', '.join(names())})")
    module, _, attribute = _MODULES[name].partition(":")
    return getattr(importlib.import_module(module), attribute or "BENCHMARK")
