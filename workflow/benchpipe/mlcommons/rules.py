"""MLCommons' training rules files: where they lie, and their CHECKs replayed on MLLOG events.

The compliance checker evaluates the Python in a rules file (BEGIN, PRE, CHECK, POST) against
each logged event. ``rule_failures`` does the same on the events a run would log, so that a
closed-division config is refused before any job runs, with the rule that refuses it.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlperf_logging.compliance_checker import mlp_compliance

from benchpipe.contracts.errors import ConfigError
from benchpipe.contracts.rounds import TRAINING_RULESET

# Where the compliance checker resolves the rules files that a rule enqueues.
CHECKER_DIR = Path(mlp_compliance.__file__).parent


def training_rules_file(name: str, ruleset: str = TRAINING_RULESET) -> Path:
    """One of the compliance checker's own rules files for ``ruleset`` (``common.yaml``, say)."""
    path = CHECKER_DIR / f"training_{ruleset}" / name
    if not path.is_file():
        raise ConfigError(f"{path}: mlperf-logging has no rules file {name} for training {ruleset}")
    return path


@dataclass(frozen=True)
class RuleFailure:
    """One rule that refuses one logged event."""

    key: str  # the MLLOG key
    value: Any  # its value, as the checker reads it back from the log
    code: str  # the CHECK expression, as the rules file writes it
    rules_file: str  # as the checker names it: relative to its own folder, or the file's name
    enqueued_by: str | None  # the rules file whose POST enqueued it; None: the entry file
    error: str | None = None  # what the expression raised, if it raised

    def describe(self) -> str:
        origin = f" (enqueued by {self.enqueued_by})" if self.enqueued_by else ""
        raised = f" (it raised {self.error})" if self.error else ""
        return f'{self.rules_file}{origin} refuses: CHECK "{self.code}"{raised}'


def log_lines(events: list[tuple[str, Any]], ruleset: str = TRAINING_RULESET) -> list[Any]:
    """The events as the checker's own parser reads them from a log: values through JSON."""
    parser = importlib.import_module(
        f"mlperf_logging.compliance_checker.mlp_parser.ruleset_{ruleset.replace('.', '')}"
    )
    text = [
        ":::MLLOG " + json.dumps({"namespace": "", "time_ms": 0, "event_type": "POINT_IN_TIME",
                                  "key": key, "value": value, "metadata": {}})
        for key, value in events
    ]
    lines, errors = parser.parse_generator(text)
    if errors:
        raise ConfigError(f"MLLOG events the compliance checker cannot parse: {errors[0][1]}: {errors[0][0]}")
    return lines


def _label(path: Path) -> str:
    try:
        return str(path.relative_to(CHECKER_DIR))
    except ValueError:
        return path.name


def _load_rules(path: Path, enqueued_by: str | None) -> list[dict[str, Any]]:
    try:
        # The checker's loader: every scalar stays a string, as the checker evaluates it.
        return yaml.load(path.read_text(), Loader=yaml.BaseLoader) or []
    except (OSError, yaml.YAMLError) as exc:
        origin = f" (enqueued by {enqueued_by})" if enqueued_by else ""
        raise ConfigError(f"{path}{origin}: cannot read the compliance rules: {exc}") from exc


def _as_list(code: str | list[str]) -> list[str]:
    return code if isinstance(code, list) else [code]


def rule_failures(
    rules_file: Path, events: list[tuple[str, Any]], ruleset: str = TRAINING_RULESET
) -> list[RuleFailure]:
    """What the compliance checker's CHECKs refuse among ``events``, in log order.

    As mlp_compliance.ComplianceChecker does: start from ``rules_file``, run each file's BEGIN
    block, then for each event in order its PRE, CHECK and POST, with the checker's globals
    (``s``, ``is_integer``, ``math``, ``enqueue_config``) and ``ll``/``v``; load the files that
    POSTs enqueue; a later file's rule for a key replaces an earlier file's verdict on it. Only
    occurrence counts (REQ), ATLEAST_ONE_CHECK and the END block are left out: they judge a
    whole run's log. (No training 4.0.0 or 3.1.0 file uses FIRST_CHECK.)
    """
    lines = log_lines(events, ruleset)
    queue: list[tuple[str, str | None]] = [(str(rules_file), None)]
    failed: dict[str, RuleFailure] = {}
    while queue:
        name, enqueued_by = queue.pop(0)
        path = CHECKER_DIR / name  # an absolute name stays itself, as in the checker
        label = _label(path)
        records = _load_rules(path, enqueued_by)
        enqueued: list[str] = []
        state = {"enqueue_config": enqueued.append, "s": {}, "is_integer": mlp_compliance.is_integer,
                 "math": math}
        for record in records:
            if "BEGIN" in record:
                exec(record["BEGIN"]["CODE"].strip(), state, {})
        rules = {r["KEY"]["NAME"]: r["KEY"] for r in records if "KEY" in r}
        for key in rules:
            failed.pop(key, None)
        for line in lines:
            rule = rules.get(line.key)
            if rule is None:
                continue
            local = {"ll": line, "v": line.value}
            if "PRE" in rule:
                exec(rule["PRE"].strip(), state, local)
            for code in _as_list(rule.get("CHECK", [])):
                try:
                    passed, error = bool(eval(code.strip(), state, local)), None
                except Exception as exc:  # the checker counts any exception as a failed CHECK
                    passed, error = False, f"{type(exc).__name__}: {exc}"
                if not passed and line.key not in failed:
                    failed[line.key] = RuleFailure(line.key, line.value["value"], code, label, enqueued_by, error)
            if "POST" in rule:
                exec(rule["POST"].strip(), state, local)
        queue.extend((child, label) for child in enqueued)
    order = [line.key for line in lines]
    return sorted(failed.values(), key=lambda f: order.index(f.key))
