"""Real LoadGen logs in a fraction of a second, from a tiny numpy SUT (no TensorFlow).

LoadGen accepts one ``FromConfig`` per process (a second one logs an error that invalidates the
run), so every test runs in a child process: ``python tests/loadgen_logs.py '<json>'``.
``run_loadgen`` builds that command and waits for it. A ``predict`` callable crosses the process
boundary by name, so it must be a module-level function of an importable module (e.g. this one).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESPONSE_DTYPE = np.dtype("<i4")  # one little-endian int32 class per sample, as our SUT answers
HERE = Path(__file__).resolve().parent
NO_AUDIT = "no-audit.config"  # an explicit path that does not exist: never a compliance run by accident


# --- predictors: module-level, so that the child process can import them by name ---------------

def label_of(indices: np.ndarray) -> np.ndarray:
    """The deterministic SUT: sample i is class i mod 10."""
    return (indices % 10).astype(RESPONSE_DTYPE)


def wrong_for_odd(indices: np.ndarray) -> np.ndarray:
    """Answers another class than ``label_of`` for every odd sample."""
    return ((indices + (indices % 2)) % 10).astype(RESPONSE_DTYPE)


def _reference(predict: Callable[[np.ndarray], np.ndarray]) -> str:
    name = f"{predict.__module__}:{predict.__qualname__}"
    if "<" in predict.__qualname__:
        raise ValueError(f"predict {name} must be a module-level function, importable in a child process")
    return name


def _resolve(reference: str) -> Callable[[np.ndarray], np.ndarray]:
    module, _, name = reference.partition(":")
    if module == "__main__":
        module = "loadgen_logs"
    return getattr(importlib.import_module(module), name)


# --- the parent side -----------------------------------------------------------------------------

def user_conf(model: str, scenario: str, min_duration_ms: int, extra_conf: dict[str, Any]) -> str:
    lines = [f"{model}.{scenario}.min_duration = {min_duration_ms}"]
    lines += [f"{model}.{scenario}.{key} = {value}" for key, value in extra_conf.items()]
    return "\n".join(lines) + "\n"


def run_loadgen(
    out_dir: Path,
    *,
    model: str = "resnet50",
    scenario: str = "SingleStream",
    mode: str = "performance",
    min_duration_ms: int = 200,
    audit_config: Path | None = None,
    predict: Callable[[np.ndarray], np.ndarray] = label_of,
    total: int = 64,
    perf_count: int = 64,
    extra_conf: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    delay_s: float = 0.0,
    cached_delay_s: float | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """One LoadGen test in a child process; returns ``out_dir`` holding its logs and user.conf.

    ``delay_s`` is slept per sample (once per query, for all its samples), which sets the
    throughput and latency the logs report. With ``cached_delay_s`` the SUT caches answers:
    a sample answered before costs that instead: a SUT that TEST04 must catch.
    ``extra_conf`` keys are written as ``model.scenario.key = value`` lines of user.conf;
    ``settings`` are set on LoadGen's TestSettings after FromConfig (how a harness could
    change what user.conf cannot, e.g. the seeds).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    args = {
        "out_dir": str(out_dir), "model": model, "scenario": scenario, "mode": mode,
        "min_duration_ms": min_duration_ms,
        "audit_config": str(audit_config) if audit_config else str(out_dir / NO_AUDIT),
        "predict": _reference(predict), "total": total, "perf_count": perf_count,
        "extra_conf": extra_conf or {}, "settings": settings or {}, "delay_s": delay_s, "cached_delay_s": cached_delay_s,
    }
    # cwd=out_dir: an audit.config lying in the caller's directory can never leak in.
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), json.dumps(args)],
        cwd=out_dir, capture_output=True, text=True, timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"LoadGen child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out_dir


# --- the child side ------------------------------------------------------------------------------

class _SUT:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], delay_s: float, cached_delay_s: float | None) -> None:
        self.predict = predict
        self.delay_s = delay_s
        self.cached_delay_s = cached_delay_s
        self.seen: set[int] = set()

    def issue(self, query_samples) -> None:
        import mlperf_loadgen as lg

        indices = np.array([q.index for q in query_samples], dtype=np.int64)
        delay = self.delay_s * len(indices)
        if self.cached_delay_s is not None:
            fresh = set(indices.tolist()) - self.seen
            delay = self.delay_s * len(fresh) + self.cached_delay_s * (len(indices) - len(fresh))
            self.seen.update(fresh)
        if delay:
            time.sleep(delay)  # one sleep per query: its length is then precise
        answers = np.ascontiguousarray(self.predict(indices), dtype=RESPONSE_DTYPE)
        size = RESPONSE_DTYPE.itemsize
        base = answers.ctypes.data
        responses = [lg.QuerySampleResponse(q.id, base + k * size, size) for k, q in enumerate(query_samples)]
        # `answers` stays referenced until QuerySamplesComplete returns, as LoadGen requires.
        lg.QuerySamplesComplete(responses)

    def flush(self) -> None:
        pass


def _child(args: dict[str, Any]) -> None:
    import mlperf_loadgen as lg

    out = Path(args["out_dir"])
    conf = out / "user.conf"
    conf.write_text(user_conf(args["model"], args["scenario"], args["min_duration_ms"], args["extra_conf"]))
    settings = lg.TestSettings()
    if settings.FromConfig(str(conf), args["model"], args["scenario"]) != 0:
        raise SystemExit(f"{conf}: LoadGen rejected the configuration")
    for name, value in args["settings"].items():
        setattr(settings, name, value)
    settings.scenario = getattr(lg.TestScenario, args["scenario"])
    settings.mode = lg.TestMode.PerformanceOnly if args["mode"] == "performance" else lg.TestMode.AccuracyOnly
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(out)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    cached = args["cached_delay_s"]
    sut = _SUT(_resolve(args["predict"]), float(args["delay_s"]), None if cached is None else float(cached))
    sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
    qsl_handle = lg.ConstructQSL(args["total"], args["perf_count"], lambda ids: None, lambda ids: None)
    try:
        lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings, args["audit_config"])
    finally:
        lg.DestroyQSL(qsl_handle)
        lg.DestroySUT(sut_handle)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    _child(json.loads(sys.argv[1]))
