"""MLCommons' inference submission checker, run on an inference tree as the review committee runs it.

The checker is not a package: users point benchpipe at their own checkout of mlcommons/inference
(config key ``inference.checker``). Its README runs it from ``<checkout>/tools/submission`` as
``python -m submission_checker.main --input ROOT --version v6.1 --submitter ORG --csv OUT.csv``;
it reads nothing relative to its cwd, so benchpipe runs the same module from the submission tree
with ``<checkout>/tools/submission`` on PYTHONPATH, and every path it prints is the tree's own.
Never copy it into the project.

What it prints (logging, set up by its ``loader.py``): one record per line,
``[2026-11-29 08:32:45,494 performance_check.py:381 ERROR] <path> <message>``; a message with a
newline continues on the following lines. Every check class logs ``Starting <checks> for: P``, its
own ERROR lines, then ``Some <checks> Checks failed for: P`` (ERROR) when one failed; main then
logs ``NoResults P`` (ERROR) for every result with a failed check, ``Results=N, NoResults=M, ...``
and last ``SUMMARY: submission looks OK`` (INFO, exit 0) or ``SUMMARY: submission has errors``
(ERROR, exit 1). Its exit status is not enough: some findings (``not hash value for accuracy.txt``
in the open division) log an ERROR and still exit 0, and a check that fails without an error line
(closed accuracy below target is only a WARNING) still fails its block. A missing ``performance/``,
``accuracy/`` or system JSON ends it with a traceback and no SUMMARY line.

``--skip-dataset-size-check`` makes the accuracy run's dataset-size check log only
``<path> Skipping dataset size check`` (INFO): with it, a subset accuracy run logs no error at all.

Older checkers (the single-file ``submission_checker.py``) also log an error for any folder in the
input root that is not a division (except ``.git``, ``.github``, ``assets``) and for any file there
that is not ``.md``/``.pdf``: the checker's own CSV and log are therefore kept outside the root.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ConfigError, ValidationError

CONFIG_KEY = "inference.checker"
DEFAULT_VERSION = "v6.1"  # matches the seeds built into mlcommons-loadgen 6.0.17
CHECKER_SUBDIR = Path("tools") / "submission"
CHECKER_MODULE = "submission_checker.main"
LOG_NAME = "submission_checker.log"
CSV_NAME = "summary.csv"
TIMEOUT_S = 1800
DIVISIONS = ("closed", "open", "network")

SUMMARY_OK = "SUMMARY: submission looks OK"
SUMMARY_ERRORS = "SUMMARY: submission has errors"
VERDICT_PASSED = "passed"
VERDICT_DEVELOPMENT = "passed (development: only allowed errors)"

# The only finding a development tree may have: runs shorter than the official 600 s.
DURATION_ERROR = "Test duration less than 600s in user config"
# A development run issues its performance queries from the accuracy subset (performance_sample_count
# = inference.accuracy_samples, docs/inference.md): for an LLM, whose rule is the whole dataset
# (13,368 articles for llama3.1-8b), that is below the round's count. Allowed only where the
# accuracy run covers a subset too.
SAMPLE_COUNT_ERROR = re.compile(r" performance_sample_count, found \d+, needs to be >= \d+$")
# The dataset-size finding; --skip-dataset-size-check silences it, so it is never allowed.
DATASET_SIZE_ERROR = "accurcy run does not cover all dataset"  # sic

_RECORD = re.compile(
    r"^\[(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (?P<source>\S+:\d+) (?P<level>[A-Z]+)\] (?P<message>.*)$"
)
_BLOCK_START = re.compile(r"^Starting (?P<checks>.+) for: (?P<path>.*)$")
_BLOCK_FAILED = re.compile(r"^Some (?P<checks>.+) Checks failed for: (?P<path>.*)$")
_BLOCK_PASSED = re.compile(r"^All (?P<checks>.+) checks passed for: (?P<path>.*)$")
_NO_RESULTS = re.compile(r"^NoResults (?P<path>.*)$")
_COUNTS = re.compile(r"^Results=(?P<results>\d+), NoResults=(?P<no_results>\d+)")
_README_COMMIT = re.compile(r"\bcommit\s+([0-9a-f]{40})\b")
ERROR_LEVELS = ("ERROR", "CRITICAL")
TAIL_LINES = 15


def checker_dir(checkout: Path) -> Path:
    """``<checkout>/tools/submission``, the folder the checker runs from."""
    folder = Path(checkout) / CHECKER_SUBDIR
    if (folder / "submission_checker" / "main.py").is_file():
        return folder
    if (folder / "submission_checker.py").is_file():
        # Before v6.0 the checker was one script with another command line and tree layout.
        raise ConfigError(
            f"{CONFIG_KEY}: {checkout} holds the old single-file checker ({folder / 'submission_checker.py'}); "
            f"check out a mlcommons/inference commit with {CHECKER_SUBDIR / 'submission_checker' / 'main.py'}"
        )
    raise ConfigError(
        f"{CONFIG_KEY}: {checkout} is not a checkout of mlcommons/inference "
        f"(no {CHECKER_SUBDIR / 'submission_checker' / 'main.py'} in it)"
    )


# ---------------------------------------------------------------------------------------------
# Reading the output


@dataclass
class CheckerLine:
    """One log record of the checker, its continuation lines joined."""

    level: str
    source: str  # "performance_check.py:381"
    message: str

    def quote(self) -> str:
        # The timestamp is left out: the same finding quotes the same on every run.
        return f"[{self.source} {self.level}] {self.message}"

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS


def parse_output(output: str) -> list[CheckerLine]:
    """The checker's log records in order; lines before the first record are dropped."""
    records: list[CheckerLine] = []
    for line in output.splitlines():
        match = _RECORD.match(line)
        if match:
            records.append(CheckerLine(match["level"], match["source"], match["message"].rstrip()))
        elif records and line.strip():
            records[-1].message += " " + line.strip()
    return records


def _summary(records: list[CheckerLine]) -> str | None:
    found = [r.message for r in records if r.message.startswith("SUMMARY:")]
    return found[-1] if found else None


def _result_counts(records: list[CheckerLine]) -> tuple[int, int] | None:
    for record in records:
        if match := _COUNTS.match(record.message):
            return int(match["results"]), int(match["no_results"])
    return None


def _is_consequence(record: CheckerLine) -> bool:
    """Error lines that only repeat that some check above failed."""
    return bool(
        _BLOCK_FAILED.match(record.message) or _NO_RESULTS.match(record.message)
        or record.message.startswith("SUMMARY:")
    )


def is_allowed_in_development(record: CheckerLine, subset: bool = False) -> bool:
    """The errors a development tree may have: runs shorter than 600 s and, when it runs on a
    subset (``subset``), a performance sample count below the round's; nothing else."""
    return DURATION_ERROR in record.message or (subset and bool(SAMPLE_COUNT_ERROR.search(record.message)))


@dataclass(frozen=True)
class Findings:
    errors: list[CheckerLine]  # every ERROR/CRITICAL record, in order
    allowed: list[CheckerLine]  # development: the allowed ones among them
    offending: list[CheckerLine]  # what makes the run fail, first first


def _unexplained_blocks(records: list[CheckerLine], subset: bool = False) -> list[CheckerLine]:
    """``Some ... Checks failed`` lines whose block has no allowed error: a check failed for another reason.

    A check can fail with only a WARNING (closed accuracy below target) or with nothing logged;
    such a block holds no allowed error and so fails a development run too. Blocks nest (the
    compliance check runs performance checks on TEST01/TEST04): a block holds its inner blocks' lines.
    """
    unexplained: list[CheckerLine] = []
    stack: list[list[CheckerLine]] = [[]]
    for record in records:
        if _BLOCK_START.match(record.message):
            stack.append([])
            continue
        ended = _BLOCK_FAILED.match(record.message) or _BLOCK_PASSED.match(record.message)
        if not ended or len(stack) == 1:
            stack[-1].append(record)
            continue
        block = stack.pop()
        if _BLOCK_FAILED.match(record.message) and not any(r.is_error and is_allowed_in_development(r, subset)
                                                          for r in block):
            context = [r for r in block if r.level == "WARNING" and "skipped for" not in r.message]
            quoted = record
            if context:
                quoted = CheckerLine(record.level, record.source, f"{record.message} (after: {context[0].quote()})")
            unexplained.append(quoted)
        stack[-1].extend([*block, record])
    return unexplained


def findings(records: list[CheckerLine], *, development: bool, subset: bool = False) -> Findings:
    errors = [r for r in records if r.is_error]
    if not development:
        specific = [r for r in errors if not _is_consequence(r)]
        return Findings(errors, [], specific + [r for r in errors if _is_consequence(r)])
    allowed = [r for r in errors if is_allowed_in_development(r, subset)]
    disallowed = [r for r in errors if not _is_consequence(r) and not is_allowed_in_development(r, subset)]
    return Findings(errors, allowed, disallowed + _unexplained_blocks(records, subset))


# ---------------------------------------------------------------------------------------------
# Running it


def checker_commit(checkout: Path) -> str | None:
    """The commit of the checkout: git's, else a ``commit <sha>`` line in its README, else None."""
    checkout = Path(checkout).resolve()
    try:
        top = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--show-toplevel", "HEAD"],
                             text=True, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        top = None
    if top is not None and top.returncode == 0:
        lines = top.stdout.split()
        # Only the checkout's own repository: a checkout copied into another repository is not one.
        if len(lines) == 2 and Path(lines[0]).resolve() == checkout:
            return lines[1]
    try:
        match = _README_COMMIT.search((checkout / "README.md").read_text(errors="replace"))
    except OSError:
        return None
    return match.group(1) if match else None


def _check_layout(root: Path, keep_dir: Path, submitter: str) -> None:
    if not root.is_dir():
        raise ValidationError(f"{root}: no inference submission root (the folder holding <division>/<org>/)")
    if not any((root / d / submitter).is_dir() for d in DIVISIONS):
        # The checker skips other submitters and then reports nothing checked as "looks OK".
        raise ValidationError(
            f"{root}: no {'/, '.join(DIVISIONS)}/ folder holds '{submitter}/': the checker would check nothing"
        )
    if keep_dir == root or root in keep_dir.parents:
        raise ValidationError(
            f"{keep_dir}: the checker's CSV and log cannot be kept inside the root it checks ({root}): "
            "checkers reject folders and files there other than the divisions"
        )


def _relative(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


def _tail(output: str, lines: int = TAIL_LINES) -> str:
    kept = [l for l in output.splitlines() if l.strip()][-lines:]
    return "\n".join(kept) if kept else "(no output)"


def _crash(proc: subprocess.CompletedProcess[str], summary: str | None) -> bool:
    # An uncaught exception prints a traceback and ends the run before its SUMMARY line;
    # exit 2 is an argparse error (an unknown --version, a flag this checker lacks).
    return proc.returncode not in (0, 1) or summary is None or "Traceback (most recent call last):" in proc.stdout


def _csv_rows(path: Path) -> int | None:
    try:
        with path.open(newline="") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)
    except OSError:
        return None


def _offending_message(found: Findings, proc_rc: int, summary: str) -> str:
    first = found.offending[0].quote() if found.offending else f"exit {proc_rc}, {summary}"
    more = len(found.offending) - 1
    return first + (f" (and {more} more offending line{'s' if more > 1 else ''})" if more > 0 else "")


def run_inference_checker(
    checkout: Path,
    root: Path,
    *,
    submitter: str,
    version: str = DEFAULT_VERSION,
    development: bool,
    subset_accuracy: bool,
    keep_dir: Path,
    timeout_s: int = TIMEOUT_S,
) -> dict[str, Any]:
    """The official inference checker on ``root``; its verdict as a checks.json entry, or ValidationError.

    ``root`` holds ``<division>/<submitter>/``; ``keep_dir`` (outside ``root``) receives the full
    output as ``submission_checker.log`` and the checker's ``summary.csv``. Paths in the entry and
    in the output are relative to the folder holding both ``root`` and ``keep_dir`` (the submission
    tree), where the checker runs: the log stays true once the tree is moved into place.

    Official: passes only on ``SUMMARY: submission looks OK``, exit 0 and no ERROR line at all.
    Development: the only errors allowed are the duration ones and, with ``subset_accuracy``, the
    performance sample count below the round's; the ``NoResults``, ``Some ... Checks failed`` and
    ``submission has errors`` lines (exit 1) they cause are accepted with them. With
    ``subset_accuracy`` the dataset-size check is skipped (``--skip-dataset-size-check``).
    """
    folder = checker_dir(checkout)
    root, keep_dir = Path(root).resolve(), Path(keep_dir).resolve()
    _check_layout(root, keep_dir, submitter)
    base = Path(os.path.commonpath([root, keep_dir]))
    log, csv_out = keep_dir / LOG_NAME, keep_dir / CSV_NAME
    keep_dir.mkdir(parents=True, exist_ok=True)
    for stale in (log, csv_out):
        stale.unlink(missing_ok=True)

    args = ["--input", _relative(root, base), "--version", version, "--submitter", submitter,
            "--csv", _relative(csv_out, base)]
    if subset_accuracy:
        args.append("--skip-dataset-size-check")
    # Run from the tree (not from tools/submission) so that every path the checker prints is the
    # tree's own; -P keeps the tree's folders off sys.path, PYTHONPATH puts the checker on it.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder.resolve()), os.environ.get("PYTHONPATH")) if p)
    command = ["-P", "-m", CHECKER_MODULE, *args]
    try:
        proc = subprocess.run([sys.executable, *command], cwd=base, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ValidationError(f"{root}: the inference checker did not finish within {timeout_s} s") from exc
    log.write_text(proc.stdout)

    records = parse_output(proc.stdout)
    summary = _summary(records)
    where = f"{root}: the MLCommons inference checker ({version}"
    # The absolute path: a tree that fails may be a temporary one, removed after the error.
    if _crash(proc, summary):
        raise ValidationError(
            f"{where}) crashed (exit {proc.returncode}, full output in {log}); its last lines:\n"
            + _tail(proc.stdout)
        )
    counts = _result_counts(records)
    if counts is None or sum(counts) == 0:
        raise ValidationError(f"{where}) found no result to check for '{submitter}' (full output in {log})")

    found = findings(records, development=development, subset=subset_accuracy)
    if development:
        passed = not found.offending and (
            (proc.returncode == 0 and summary == SUMMARY_OK)
            or (proc.returncode == 1 and summary == SUMMARY_ERRORS and bool(found.allowed))
        )
    else:
        passed = proc.returncode == 0 and summary == SUMMARY_OK and not found.errors
    if not passed:
        mode = "development" if development else "official"
        raise ValidationError(
            f"{where}, {mode}) rejects the submission (exit {proc.returncode}, {summary}; "
            f"full output in {log}): {_offending_message(found, proc.returncode, summary)}"
        )
    return {
        "tool": f"mlcommons/inference {CHECKER_SUBDIR.as_posix()} ({CHECKER_MODULE})",
        "checker_commit": checker_commit(checkout),
        "command": ["python", *command],
        "cwd": ".",
        "version": version,
        "submitter": submitter,
        "mode": "development" if development else "official",
        "exit_code": proc.returncode,
        "summary": summary,
        "results": {"accepted": counts[0], "rejected": counts[1]},
        "errors_allowed": [r.quote() for r in found.allowed],
        "verdict": VERDICT_DEVELOPMENT if found.errors else VERDICT_PASSED,
        "csv": _relative(csv_out, base),
        "csv_rows": _csv_rows(csv_out),
        "log": _relative(log, base),
    }
