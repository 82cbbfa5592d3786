"""Hyperparameters as config: ``training.hyperparameters.<benchmark>`` applied to a benchmark.

Open division: any value the code can run; the submission tree records each departure from
the reference (``departures``). Closed division: only the values the training rules allow,
refused before the first job with the key named and the rule quoted (``check_closed``):

- keys the rules fix although no MLLOG event shows them (ResNet's image size and label
  smoothing), which no compliance checker can see in a log;
- the MLLOG hyperparameter events the run would log, put through the CHECKs of the rules files
  that the official compliance checker applies to a closed log of the benchmark, evaluated as
  the checker evaluates them;
- for an MLPerf benchmark, a global batch size that the RCP checker can match.

Nothing here imports TensorFlow: the workflow runs these checks while it parses the config.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from benchpipe.contracts import registry
from benchpipe.contracts.benchmark import Benchmark, HyperparameterSet
from benchpipe.contracts.errors import ConfigError
from benchpipe.contracts.rounds import TRAINING_RULESET
from benchpipe.mlcommons import training
from benchpipe.mlcommons.rules import RuleFailure, rule_failures

CONFIG_KEY = "training.hyperparameters"
DIVISIONS = ("closed", "open")
# The MLLOG decay steps are the only hyperparameter event that depends on the dataset's size.
# The closed rules leave ResNet's free and ask digits' and mnist's only to be positive, which
# max_epochs >= 1 and any positive steps_per_epoch ensure: a nominal one stands in for the
# dataset, which may not exist yet when the config is checked.
NOMINAL_STEPS_PER_EPOCH = 1000

_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", NoneType: "null"}


# ---------------------------------------------------------------------------------------------
# Overrides


def _show(value: Any) -> str:
    """A value as the config (YAML or JSON) writes it."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _kinds(hint: Any) -> tuple[Any, ...]:
    if get_origin(hint) in (Union, UnionType):
        return get_args(hint)
    return (hint,)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """``value`` as the field's declared type, or a ConfigError naming ``path``."""
    kinds = _kinds(hint)
    # bool is an int to Python, never to a config: true is not a batch size.
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is None and NoneType in kinds:
        return None
    if isinstance(value, bool) and bool in kinds:
        return value
    if is_number and isinstance(value, int) and int in kinds:
        return value
    if is_number and float in kinds:
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, not {value}")
        return float(value)
    if isinstance(value, str) and str in kinds:
        return value
    expected = " or ".join(_KIND_NAMES.get(kind, getattr(kind, "__name__", str(kind))) for kind in kinds)
    raise ConfigError(f"{path}: must be {expected}, not {_show(value)}")


def known_keys(benchmark: Benchmark) -> list[str]:
    """The config keys of ``benchmark``'s hyperparameters: its dataclass's fields, in order."""
    return [f.name for f in dataclasses.fields(benchmark.hyperparameters)]


def apply_hyperparameters(benchmark: Benchmark, overrides: dict[str, Any] | None, where: str) -> Benchmark:
    """A copy of ``benchmark`` whose hyperparameters take ``overrides``; ``where`` names them in errors.

    Refuses an unknown key, a value of the wrong type and a value the code cannot run.
    """
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: must map hyperparameter names to values, not {_show(overrides)}")
    hp = benchmark.hyperparameters
    hints = get_type_hints(type(hp))
    known = known_keys(benchmark)
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: not a hyperparameter of {benchmark.name} (known: {', '.join(known)})")
        changes[key] = _coerce(value, hints[key], f"{where}.{key}")
    used = dataclasses.replace(hp, **changes)
    for key, why in used.problems():
        raise ConfigError(f"{where}.{key}: {_show(getattr(used, key))} {why}")
    return dataclasses.replace(benchmark, hyperparameters=used)


def departures(used: Benchmark, reference: Benchmark) -> dict[str, dict[str, Any]]:
    """Each hyperparameter of ``used`` that differs from ``reference``'s, in field order."""
    if type(used.hyperparameters) is not type(reference.hyperparameters):
        raise ConfigError(f"{used.name}: its hyperparameters are not of the reference's kind")
    found = {}
    for key in known_keys(reference):
        was, now = getattr(reference.hyperparameters, key), getattr(used.hyperparameters, key)
        if was != now:
            found[key] = {"reference": was, "used": now}
    return found


def closed_events(benchmark: Benchmark) -> list[tuple[str, Any]]:
    """What a closed run of ``benchmark`` logs before its hyperparameters, then the hyperparameters.

    The division and benchmark events route the official rules to the closed files of the
    benchmark, and set the division that digits' and mnist's closed CHECKs read.
    """
    items = benchmark.hyperparameters.mllog_items(NOMINAL_STEPS_PER_EPOCH)
    return [("submission_division", "closed"), ("submission_benchmark", benchmark.name), *items.items()]


def _refusal(failure: RuleFailure, hp: HyperparameterSet, where: str) -> str:
    logged = f"logs {failure.key} = {_show(failure.value)}, which {failure.describe()}"
    source = hp.mllog_sources().get(failure.key)
    if source is None:  # a value benchpipe sets, whatever the config says
        return f"{where}: benchpipe {logged}"
    return f"{where}.{source}: {_show(getattr(hp, source))} {logged}"


def _alternatives(values: tuple[Any, ...]) -> str:
    shown = [_show(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def check_closed(benchmark: Benchmark, where: str, ruleset: str = TRAINING_RULESET) -> None:
    """Refuse hyperparameters that the closed division of training ``ruleset`` does not allow; ``where`` names them."""
    hp = benchmark.hyperparameters
    reference = registry.get(benchmark.name).hyperparameters
    for key, fixed in hp.closed_fixed().items():
        value = getattr(hp, key)
        if value not in fixed.allowed:
            raise ConfigError(
                f"{where}.{key}: {_show(value)} is not the reference's {_show(getattr(reference, key))}, "
                f"and the closed division allows only {_alternatives(fixed.allowed)}: {fixed.rule}"
            )
    failures = rule_failures(benchmark.rules_file, closed_events(benchmark), ruleset)
    if failures:
        raise ConfigError(_refusal(failures[0], hp, where))
    if training.is_official(benchmark.name, ruleset):
        training.check_closed_batch_size(benchmark.name, hp.global_batch_size, ruleset,
                                         where=f"{where}.global_batch_size")


def resolve_hyperparameters(
    name: str, settings: dict[str, Any] | None, division: str, ruleset: str = TRAINING_RULESET
) -> Benchmark:
    """Benchmark ``name`` with its ``training.hyperparameters`` applied, checked for ``division`` of ``ruleset``."""
    if division not in DIVISIONS:
        raise ConfigError(f"submission.division: {_show(division)} is neither closed nor open")
    table = settings or {}
    if not isinstance(table, dict):
        raise ConfigError(f"{CONFIG_KEY}: must map benchmark names to hyperparameters, not {_show(table)}")
    where = f"{CONFIG_KEY}.{name}"
    used = apply_hyperparameters(registry.get(name), table.get(name), where)
    if division == "closed":
        check_closed(used, where, ruleset)
    return used
