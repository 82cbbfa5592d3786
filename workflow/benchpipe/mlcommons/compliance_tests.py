"""MLCommons' own TEST01, TEST04 and TEST06 verification: ``compliance/TEST0x/run_verification.py``.

The scripts come from the checkout of mlcommons/inference that holds the submission checker
(config key ``inference.checker``; located and checked as ``inference_checker.checker_dir``
does). Each runs as its README says::

    python compliance/TEST01/run_verification.py -r RESULTS_DIR -c COMPLIANCE_DIR -o OUTPUT_DIR [--dtype D]
    python compliance/TEST04/run_verification.py -r RESULTS_DIR -c COMPLIANCE_DIR -o OUTPUT_DIR

RESULTS_DIR holds ``accuracy/mlperf_log_accuracy.json`` (TEST01: the whole log, not the truncated
copy a tree keeps) and ``performance/run_1/`` (TEST01 reads its detail log, TEST04 its summary);
COMPLIANCE_DIR holds the compliance run's logs. The script writes ``verify_*.txt`` into its
working directory, then copies them with the run's logs into ``OUTPUT_DIR/TEST0x/``:
``verify_accuracy.txt`` (TEST01), ``verify_performance.txt``, ``performance/run_1/`` (summary and
detail) and, for TEST01, ``accuracy/mlperf_log_accuracy.json``.

The scripts exit 0 whatever they find, and some failures print no verdict at all (TEST04 ends
with ``Test and reference scenarios do not match!``; TEST01's performance script dies with a
NameError on a log with LoadGen errors). The verdict is therefore read from the ``verify_*.txt``
files, the way the submission checker reads them (``compliance_check.py``: a line that is exactly
``TEST PASS`` in verify_accuracy.txt, ``TEST PASS`` within a line of verify_performance.txt); a
file without a ``TEST PASS`` or ``TEST FAIL`` line is an error that quotes its last line.

TEST06 (an LLM's) reads only the TEST06 run's accuracy log, which logs every response with its
first token and token count::

    python compliance/TEST06/run_verification.py -c COMPLIANCE_DIR -o OUTPUT_DIR -s SCENARIO \
        --eos_token_id ID --dtype int32

and writes ``OUTPUT_DIR/TEST06/verify_accuracy.txt`` (``First token check pass: True|False|Skipped``,
``EOS check pass: ...``, ``Sample length check pass: ...``, then ``TEST06 verification complete``
or ``... failed``) and ``OUTPUT_DIR/TEST06/accuracy/mlperf_log_accuracy.json``. The checker reads
those three lines; a verify file with any other line, a missing one, or a verdict that
contradicts them is an error. Its ``--eos_token_id`` is taken as text (no ``type=int``) and so
never equals a token id: its EOS check passes any output, and benchpipe's own check (which
compares ids) is the one that finds a doubled end of sequence.

The commands go through a shell inside the scripts (``shell=True``, unquoted paths), so the
inputs are copied into a scratch folder whose path needs no quoting.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.contracts.layout import ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG, VERIFY_ACCURACY, VERIFY_PERFORMANCE
from benchpipe.contracts.rounds import ROUND
from benchpipe.mlcommons.inference_checker import CONFIG_KEY, checker_dir

TESTS = ("TEST01", "TEST04", "TEST06")
SCRIPT = "run_verification.py"
# The verdict lines of the verify files, as the submission checker reads them.
PASS_LINE = "TEST PASS"
FAIL_LINE = "TEST FAIL"
DTYPES = ("byte", "float32", "int32", "int64")  # TEST01's --dtype choices
TIMEOUT_S = 600
TAIL_LINES = 10

# The verify files each script writes, and the logs it copies (from COMPLIANCE_DIR) into its output.
VERIFY_FILES = {"TEST01": (VERIFY_ACCURACY, VERIFY_PERFORMANCE), "TEST04": (VERIFY_PERFORMANCE,)}
COPIED_LOGS = {
    "TEST01": (f"performance/run_1/{SUMMARY_LOG}", f"performance/run_1/{DETAIL_LOG}", f"accuracy/{ACCURACY_LOG}"),
    "TEST04": (f"performance/run_1/{SUMMARY_LOG}", f"performance/run_1/{DETAIL_LOG}"),
}
# The constants of the round's submission checker that say where each test's outputs live.
_TREE_PATH_CONSTANT = {"TEST01": "TEST01_ACC_PATH", "TEST04": "TEST04_PERF_PATH", "TEST06": "TEST06_ACC_PATH"}
_COMPLETE = "{test} verification complete"
# TEST06's verify_accuracy.txt: its three check lines ("<label>: True|False|Skipped", the first
# token check skipped for Offline, which reports no first token) and the closing verdict.
TEST06_CHECKS = ("First token check pass", "EOS check pass", "Sample length check pass")
TEST06_VALUES = ("True", "False", "Skipped")
TEST06_COMPLETE = "TEST06 verification complete"
TEST06_FAILED = "TEST06 verification failed"
TEST06_DTYPE = "int32"  # the LLM SUT's tokens (infer.decoding.TOKEN_DTYPE)


@dataclass(frozen=True)
class FileVerdict:
    """One ``verify_*.txt``: the checker's reading of it and the line that decided."""

    name: str
    passed: bool
    line: str  # the TEST PASS / TEST FAIL line, as the script wrote it


@dataclass(frozen=True)
class OfficialVerdict:
    """The outcome of one run of ``compliance/<test>/run_verification.py``."""

    test: str
    round: str
    passed: bool
    checks: tuple[FileVerdict, ...]
    folder: Path  # OUTPUT_DIR/<test>: the script's output, laid out as the tree holds it
    files: tuple[Path, ...]  # every file in ``folder``
    script: Path
    tree_path: str  # where the round's checker looks for ``folder`` ("{division}/.../TEST01")
    output: str  # what the script printed

    @property
    def decided_by(self) -> list[str]:
        return [f"{c.name}: {c.line}" for c in self.checks]

    @property
    def accuracy_passed(self) -> bool | None:
        """TEST01's comparison of answers, TEST06's checks of outputs; None for TEST04, which has none."""
        if self.test == "TEST06":
            return self.passed
        return next((c.passed for c in self.checks if c.name == VERIFY_ACCURACY), None)

    @property
    def reasons(self) -> list[str]:
        # No local path: the reasons go into the tree's README and checks.json.
        return [f"{self.test}/{c.name}: {c.line} (MLCommons compliance/{self.test}/{SCRIPT})"
                for c in self.checks if not c.passed]


def script_path(checkout: Path, test: str) -> Path:
    """``<checkout>/compliance/<test>/run_verification.py``, of a checkout that holds the v6 checker."""
    if test not in TESTS:
        raise ValidationError(f"compliance test '{test}' is not one of {', '.join(TESTS)}")
    checker_dir(checkout)
    script = Path(checkout) / "compliance" / test / SCRIPT
    if not script.is_file():
        raise ConfigError(f"{CONFIG_KEY}: {checkout} has no compliance/{test}/{SCRIPT}")
    return script


@lru_cache(maxsize=None)
def _tree_path(folder: str, test: str, round: str) -> str:
    constant = _TREE_PATH_CONSTANT[test]
    code = f"from submission_checker.constants import {constant} as p; print(p.get({round!r}, ''))"
    env = dict(os.environ, PYTHONPATH=folder)
    proc = subprocess.run([sys.executable, "-P", "-c", code], cwd=folder, env=env, text=True,
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise ConfigError(f"{folder}/submission_checker/constants.py: cannot read {constant}: {_tail(proc.stderr)}")
    return proc.stdout.strip()


def tree_path(checkout: Path, test: str, round: str = ROUND) -> str:
    """Where the round's submission checker looks for ``test``'s outputs, e.g.
    ``{division}/{submitter}/results/{system}/{benchmark}/{scenario}/TEST01`` (v6.x; v5.x kept
    them under ``compliance/``). A round the checkout's checker does not know is an error."""
    folder = str(checker_dir(checkout).resolve())
    template = _tree_path(folder, test, round)
    if not template:
        raise ConfigError(
            f"{CONFIG_KEY}: {folder}/submission_checker/constants.py: {_TREE_PATH_CONSTANT[test]} has no "
            f"round '{round}': check out the mlcommons/inference commit of that round"
        )
    marker = f"/{test}/"
    if marker not in template:
        raise ConfigError(f"{folder}/submission_checker/constants.py: {_TREE_PATH_CONSTANT[test]}[{round!r}] "
                          f"is not a path inside a {test}/ folder: {template}")
    # The constant names a file in the test's folder; the folder is what the script writes.
    return template[: template.index(marker) + len(marker) - 1]


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(no output)"


def _copy(source: Path, destination: Path, what: str) -> None:
    if not source.is_file():
        raise ValidationError(f"{source}: missing: {what}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def _scratch() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="benchpipe-compliance-")).resolve()
    if shlex.quote(str(scratch)) != str(scratch):
        shutil.rmtree(scratch)
        # The scripts build shell commands from these paths without quoting them.
        raise ConfigError(f"TMPDIR: {scratch} needs shell quoting; MLCommons' {SCRIPT} cannot use it")
    return scratch


def _file_verdict(script: Path, folder: Path, name: str) -> FileVerdict:
    path = folder / name
    if not path.is_file():
        raise ValidationError(f"{script}: wrote no {path}")
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    verdicts = [line for line in lines if line.startswith((PASS_LINE, FAIL_LINE))]
    if not verdicts:
        last = lines[-1] if lines else "(empty)"
        raise ValidationError(f"{script}: {path} holds no '{PASS_LINE}' or '{FAIL_LINE}' line; its last line: {last}")
    if len({line.startswith(PASS_LINE) for line in verdicts}) > 1:
        raise ValidationError(f"{script}: {path} holds both '{PASS_LINE}' and '{FAIL_LINE}': {verdicts}")
    # As the submission checker reads them: verify_accuracy.txt needs a line that is exactly TEST PASS.
    passed = PASS_LINE in lines if name == VERIFY_ACCURACY else any(PASS_LINE in line for line in lines)
    return FileVerdict(name, passed, verdicts[-1])


def _run(script: Path, test: str, args: list[str], cwd: Path, timeout_s: int,
         done: tuple[str, ...] = ()) -> str:
    """The script's output; an error unless it exited 0 and printed one of ``done`` (default: its
    ``<test> verification complete`` line)."""
    done = done or (_COMPLETE.format(test=test),)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ValidationError(f"{script}: did not finish within {timeout_s} s") from exc
    if proc.returncode != 0 or not any(line in proc.stdout for line in done):
        raise ValidationError(
            f"{script}: exit {proc.returncode} without '{done[0]}'; its last lines:\n" + _tail(proc.stdout)
        )
    return proc.stdout


def _verify(checkout: Path, test: str, inputs: dict[str, tuple[Path, str]], extra: list[str],
            output_dir: Path, round: str, timeout_s: int) -> OfficialVerdict:
    script = script_path(checkout, test)
    where = tree_path(checkout, test, round)
    folder = Path(output_dir) / test
    if folder.exists():
        # The script copies into whatever is there: a stale verify file would survive a crash.
        raise ValidationError(f"{folder}: exists; {script} needs a fresh output folder")
    scratch = _scratch()
    try:
        for relative, (source, what) in inputs.items():
            _copy(Path(source), scratch / relative, what)
        (scratch / "work").mkdir()
        args = ["-r", str(scratch / "results"), "-c", str(scratch / "compliance"),
                "-o", str(Path(output_dir).resolve()), *extra]
        output = _run(script, test, args, scratch / "work", timeout_s)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checks = tuple(_file_verdict(script, folder, name) for name in VERIFY_FILES[test])
    files = tuple(sorted(p for p in folder.rglob("*") if p.is_file()))
    missing = [name for name in COPIED_LOGS[test] if folder / name not in files]
    if missing:
        # run_verification.py prints "Exception occured trying to copy" and goes on.
        raise ValidationError(f"{script}: did not copy {', '.join(missing)} into {folder}: {_tail(output, 3)}")
    return OfficialVerdict(test, round, all(c.passed for c in checks), checks, folder, files, script, where, output)


def verify_test01(checkout: Path, *, accuracy_log: Path, submission_perf_dir: Path, test_dir: Path,
                  output_dir: Path, dtype: str = "byte", round: str = ROUND,
                  timeout_s: int = TIMEOUT_S) -> OfficialVerdict:
    """MLCommons' TEST01 verification; its outputs go to ``output_dir/TEST01``.

    ``accuracy_log`` is the accuracy run's whole ``mlperf_log_accuracy.json``;
    ``submission_perf_dir`` and ``test_dir`` hold the submission run's and the TEST01 run's
    detail and summary logs (``test_dir`` also its accuracy log). ``dtype`` is how the script
    decodes a response: it compares only the first element of each.
    """
    if dtype not in DTYPES:
        raise ValidationError(f"TEST01 --dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    perf, test = Path(submission_perf_dir), Path(test_dir)
    inputs = {
        f"results/accuracy/{ACCURACY_LOG}": (Path(accuracy_log), "the accuracy run's whole LoadGen accuracy log"),
        f"results/performance/run_1/{DETAIL_LOG}": (perf / DETAIL_LOG, "the submission run's LoadGen detail log"),
        f"results/performance/run_1/{SUMMARY_LOG}": (perf / SUMMARY_LOG, "the submission run's LoadGen summary"),
        f"compliance/{DETAIL_LOG}": (test / DETAIL_LOG, "the TEST01 run's LoadGen detail log"),
        f"compliance/{SUMMARY_LOG}": (test / SUMMARY_LOG, "the TEST01 run's LoadGen summary"),
        f"compliance/{ACCURACY_LOG}": (test / ACCURACY_LOG, "the TEST01 run's LoadGen accuracy log"),
    }
    return _verify(checkout, "TEST01", inputs, ["--dtype", dtype], output_dir, round, timeout_s)


def verify_test04(checkout: Path, *, submission_perf_dir: Path, test_dir: Path, output_dir: Path,
                  round: str = ROUND, timeout_s: int = TIMEOUT_S) -> OfficialVerdict:
    """MLCommons' TEST04 verification; its outputs go to ``output_dir/TEST04``."""
    perf, test = Path(submission_perf_dir), Path(test_dir)
    inputs = {
        f"results/performance/run_1/{SUMMARY_LOG}": (perf / SUMMARY_LOG, "the submission run's LoadGen summary"),
        f"results/performance/run_1/{DETAIL_LOG}": (perf / DETAIL_LOG, "the submission run's LoadGen detail log"),
        f"compliance/{SUMMARY_LOG}": (test / SUMMARY_LOG, "the TEST04 run's LoadGen summary"),
        f"compliance/{DETAIL_LOG}": (test / DETAIL_LOG, "the TEST04 run's LoadGen detail log"),
    }
    return _verify(checkout, "TEST04", inputs, [], output_dir, round, timeout_s)


def _test06_verdicts(script: Path, path: Path) -> tuple[FileVerdict, ...]:
    """TEST06's verify_accuracy.txt read line by line: its three checks, then the verdict that must
    follow from them; anything else in it is an error that quotes the line."""
    if not path.is_file():
        raise ValidationError(f"{script}: wrote no {path}")
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    found: dict[str, str] = {}
    verdict = None
    for line in lines:
        label, sep, value = line.partition(":")
        if sep and label in TEST06_CHECKS and value.strip() in TEST06_VALUES and label not in found:
            found[label] = value.strip()
        elif line in (TEST06_COMPLETE, TEST06_FAILED) and verdict is None:
            verdict = line
        else:
            raise ValidationError(f"{script}: {path}: unexpected line {line!r} (TEST06 writes "
                                  f"{', '.join(TEST06_CHECKS)} and '{TEST06_COMPLETE}' or '{TEST06_FAILED}')")
    missing = [label for label in TEST06_CHECKS if label not in found]
    if missing or verdict is None:
        raise ValidationError(f"{script}: {path}: no {', '.join(missing) or 'verdict'} line")
    # The checker takes "Skipped" only for the first token check (the script's Offline).
    passed = {label: value == "True" or (label == TEST06_CHECKS[0] and value == "Skipped")
              for label, value in found.items()}
    if (verdict == TEST06_COMPLETE) != all(passed.values()):
        raise ValidationError(f"{script}: {path}: '{verdict}' contradicts its checks: {found}")
    return tuple(FileVerdict(VERIFY_ACCURACY, passed[label], f"{label}: {found[label]}") for label in TEST06_CHECKS)


def verify_test06(checkout: Path, *, test_dir: Path, output_dir: Path, scenario: str, eos_token_id: int,
                  round: str = ROUND, timeout_s: int = TIMEOUT_S) -> OfficialVerdict:
    """MLCommons' TEST06 verification of the TEST06 run in ``test_dir`` (its whole accuracy log);
    its outputs go to ``output_dir/TEST06``. ``eos_token_id``: the served checkpoint's end of
    sequence (generation_config.json), which the script takes one of; the tokens are int32."""
    test = "TEST06"
    script = script_path(checkout, test)
    where = tree_path(checkout, test, round)
    folder = Path(output_dir) / test
    if folder.exists():
        raise ValidationError(f"{folder}: exists; {script} needs a fresh output folder")
    scratch = _scratch()
    try:
        _copy(Path(test_dir) / ACCURACY_LOG, scratch / "compliance" / ACCURACY_LOG,
              "the TEST06 run's LoadGen accuracy log")
        (scratch / "work").mkdir()
        args = ["-c", str(scratch / "compliance"), "-o", str(Path(output_dir).resolve()), "-s", scenario,
                "--eos_token_id", str(int(eos_token_id)), "--dtype", TEST06_DTYPE]
        output = _run(script, test, args, scratch / "work", timeout_s, done=(TEST06_COMPLETE, TEST06_FAILED))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checks = _test06_verdicts(script, folder / VERIFY_ACCURACY)
    files = tuple(sorted(p for p in folder.rglob("*") if p.is_file()))
    if folder / "accuracy" / ACCURACY_LOG not in files:
        raise ValidationError(f"{script}: did not copy accuracy/{ACCURACY_LOG} into {folder}: {_tail(output, 3)}")
    return OfficialVerdict(test, round, all(c.passed for c in checks), checks, folder, files, script, where, output)
