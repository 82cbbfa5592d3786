"""MLCommons' training compliance checker and system-description checker, their verdicts read
from their output."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchpipe.contracts.rounds import TRAINING_RULESET


@dataclass(frozen=True)
class ComplianceResult:
    log: Path
    passed: bool
    output: str

    def problems(self) -> str:
        """The checker's error lines, joined: what a user must fix."""
        lines = [l.strip() for l in self.output.splitlines()]
        errors = [l for l in lines if l.startswith(("ERROR", "WARNING")) and l != "ERROR - FAILED"]
        return "; ".join(errors) or (lines[-1] if lines else "no output")


def run_compliance_checker(
    log: Path, rules: Path, output_log: Path, cwd: Path | None = None, ruleset: str = TRAINING_RULESET
) -> ComplianceResult:
    """The official checker with our rules; it exits 1 on failure.

    ``log`` and ``output_log`` may be relative to ``cwd``, so that the checker's report
    names the log as it lies in a submission tree.
    """
    base = cwd or Path.cwd()
    proc = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.compliance_checker", str(log),
         "--usage", "training", "--ruleset", ruleset,
         # The checker joins --config onto its own package directory: only an absolute
         # path reaches our rules.
         "--config", str(rules.resolve()), "--log_output", str((base / output_log).resolve())],
        capture_output=True, text=True, cwd=base,
    )
    return ComplianceResult(log, proc.returncode == 0, proc.stdout + proc.stderr)


def run_system_desc_checker(
    system_json: Path, output_log: Path, cwd: Path | None = None, ruleset: str = TRAINING_RULESET
) -> ComplianceResult:
    """The official system-description checker; it exits 0 even on failure, so read its verdict."""
    base = cwd or Path.cwd()
    proc = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.system_desc_checker", str(system_json),
         "training", ruleset, "--log_output", str((base / output_log).resolve())],
        capture_output=True, text=True, cwd=base,
    )
    output = proc.stdout + proc.stderr
    passed = proc.returncode == 0 and "System description checker passed" in output
    return ComplianceResult(system_json, passed, output)
