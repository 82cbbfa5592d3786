"""Real LoadGen logs of an LLM: the LLM SUT over a CountingDecoder, configured as benchpipe's runs are.

Each test runs in a child process (LoadGen allows one ``FromConfig`` per process), which reads a
user.conf under the LoadGen model key with ``FromConfig``, so that the round's seeds and token
limits of the built-in mlperf.conf apply, then serves prompts through ``LLMSUT``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NO_AUDIT = "no-audit.config"


def run_llm_loadgen(
    out_dir: Path,
    *,
    model: str = "llama3_1-8b",
    scenario: str = "Server",
    mode: str = "performance",
    conf: dict[str, Any] | None = None,
    audit_config: Path | None = None,
    step_s: float = 0.002,
    prompts: int = 48,
    timeout_s: float = 120.0,
) -> Path:
    """One LoadGen test of ``model`` in LoadGen's ``scenario``; returns ``out_dir`` with its logs.

    ``conf`` keys become ``model.scenario.key = value`` lines of user.conf (use_token_latencies
    is on unless it says otherwise); ``step_s`` is the decoder's time per generated token.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    args = {"out_dir": str(out_dir), "model": model, "scenario": scenario, "mode": mode,
            "conf": {"use_token_latencies": 1, **(conf or {})},
            "audit_config": str(audit_config) if audit_config else str(out_dir / NO_AUDIT),
            "step_s": step_s, "prompts": prompts}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(args)],
                          cwd=out_dir, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"LoadGen child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out_dir


def _child(args: dict[str, Any]) -> None:
    import mlperf_loadgen as lg
    from llm_decoders import EOS, CountingDecoder, prompt_library

    from benchpipe.infer.decoding import GenerationLimits
    from benchpipe.infer.llm_sut import LLMSUT
    from benchpipe.infer.sut import start_test

    out = Path(args["out_dir"])
    conf = out / "user.conf"
    model, scenario = args["model"], args["scenario"]
    conf.write_text("".join(f"{model}.{scenario}.{key} = {value}\n" for key, value in args["conf"].items()))
    settings = lg.TestSettings()
    if settings.FromConfig(str(conf), model, scenario) != 0:
        raise SystemExit(f"{conf}: LoadGen rejected the configuration")
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.AccuracyOnly if args["mode"] == "accuracy" else lg.TestMode.PerformanceOnly
    prompts = prompt_library(args["prompts"])
    sut = LLMSUT(CountingDecoder(slots=8, step_s=args["step_s"]), prompts, GenerationLimits(32, (EOS,)))
    start_test(sut, prompts, settings, out, prompts.total, audit_config=Path(args["audit_config"]))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    _child(json.loads(sys.argv[1]))
