"""Hyperparameters as config: overrides, the closed division's rules, and departures from the reference."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from mlperf_logging.compliance_checker import mlp_compliance

from benchpipe.benchmarks.hyperparameters import (
    NOMINAL_STEPS_PER_EPOCH,
    apply_hyperparameters,
    check_closed,
    closed_events,
    departures,
    resolve_hyperparameters,
)
from benchpipe.benchmarks.resnet.benchmark import ResNetTraining
from benchpipe.contracts import registry
from benchpipe.contracts.errors import ConfigError
from benchpipe.mlcommons.rules import log_lines, rule_failures

RESNET = registry.get("resnet")
WHERE = "training.hyperparameters.resnet"
LARS_WEIGHT_DECAY_CHECK = "CHECK \" is_integer(math.log2(v['value'] / 0.0001)) \""


def _closed(name: str, **overrides):
    return resolve_hyperparameters(name, {name: overrides}, "closed")


def _open(name: str, **overrides):
    return resolve_hyperparameters(name, {name: overrides}, "open")


# --- overrides -------------------------------------------------------------------------------


def test_overrides_reach_the_benchmark_and_what_its_trainer_logs():
    used = _open("resnet", global_batch_size=1632, base_learning_rate=7, optimizer="sgd", image_size=64)
    hp = used.hyperparameters
    assert (hp.global_batch_size, hp.optimizer, hp.image_size) == (1632, "sgd", 64)
    assert hp.base_learning_rate == 7.0 and isinstance(hp.base_learning_rate, float)  # a float field
    assert hp.max_epochs == RESNET.hyperparameters.max_epochs  # untouched keys keep the reference's
    logged = used.trainer(hp).mllog_items(100)
    assert logged["global_batch_size"] == 1632 and logged["opt_name"] == "sgd"
    assert logged["sgd_opt_base_learning_rate"] == 7.0
    assert used.rules_file == RESNET.rules_file and used.name == "resnet"
    assert registry.get("resnet").hyperparameters.global_batch_size == 3264  # the reference is not changed


def test_no_overrides_leave_the_reference():
    for settings in ({}, None, {"resnet": None}, {"digits": {"max_epochs": 3}}):
        assert resolve_hyperparameters("resnet", settings, "open").hyperparameters == RESNET.hyperparameters


def test_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        _open("resnet", image_sise=32)
    message = str(exc.value)
    assert message.startswith(f"{WHERE}.image_sise: not a hyperparameter of resnet")
    assert "image_size" in message and "global_batch_size" in message and "model_bn_span" in message


def test_keys_the_code_fixes_are_not_config_keys():
    # The closed rules fix LARS's end learning rate; benchpipe offers no key to change it.
    with pytest.raises(ConfigError, match=rf"^{WHERE}\.end_learning_rate: not a hyperparameter"):
        _open("resnet", end_learning_rate=0.001)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("global_batch_size", 3.5, "must be an integer, not 3.5"),
        ("global_batch_size", True, "must be an integer, not true"),
        ("global_batch_size", "1632", 'must be an integer, not "1632"'),
        ("max_epochs", 39.0, "must be an integer, not 39.0"),
        ("base_learning_rate", True, "must be a number, not true"),
        ("base_learning_rate", "7.4", 'must be a number, not "7.4"'),
        ("weight_decay", float("nan"), "must be a finite number"),
        ("optimizer", 1, "must be a string, not 1"),
        ("model_bn_span", 2.5, "must be an integer or null, not 2.5"),
        ("image_size", None, "must be an integer, not null"),
    ],
)
def test_wrong_type_is_refused_naming_the_key(key, value, expected):
    with pytest.raises(ConfigError) as exc:
        _open("resnet", **{key: value})
    assert str(exc.value).startswith(f"{WHERE}.{key}: {expected}")


def test_optional_integer_takes_null_and_an_integer():
    assert _open("resnet", model_bn_span=None).hyperparameters.model_bn_span is None
    assert _open("resnet", model_bn_span=204).hyperparameters.model_bn_span == 204


@pytest.mark.parametrize(
    "name, overrides, key, expected",
    [
        ("resnet", {"global_batch_size": 0}, "global_batch_size", "0 must be at least 1"),
        ("resnet", {"optimizer": "adam"}, "optimizer", '"adam" must be "sgd" or "lars"'),
        ("resnet", {"image_size": 16}, "image_size", "16 is too small"),
        ("resnet", {"image_size": 31}, "image_size", "31 is too small: ResNet-50 halves its input five times, so it needs at least 32"),
        ("resnet", {"warmup_epochs": 39}, "max_epochs", "39 must exceed warmup_epochs (39.0)"),
        ("resnet", {"base_learning_rate": 0}, "base_learning_rate", "0.0 must be positive"),
        ("resnet", {"momentum": 1}, "momentum", "1.0 must be in [0, 1)"),
        ("resnet", {"label_smoothing": 1}, "label_smoothing", "1.0 must be in [0, 1)"),
        ("resnet", {"model_bn_span": 4000}, "model_bn_span", "4000 must be null or in [1, global_batch_size]"),
        ("digits", {"warmup_epochs": 1}, "warmup_epochs", "1 must be 0: the harness's schedule has no warm-up"),
        ("mnist", {"max_epochs": 0}, "max_epochs", "0 must be at least 1"),
        ("mnist", {"decay_poly_power": 0}, "decay_poly_power", "0.0 must be positive"),
    ],
)
def test_value_the_code_cannot_run_is_refused_in_either_division(name, overrides, key, expected):
    for division in ("open", "closed"):
        with pytest.raises(ConfigError) as exc:
            resolve_hyperparameters(name, {name: overrides}, division)
        assert str(exc.value).startswith(f"training.hyperparameters.{name}.{key}: {expected}")


def test_the_smallest_image_resnet_runs_is_accepted_in_open():
    assert _open("resnet", image_size=32).hyperparameters.image_size == 32


def test_overrides_must_be_a_mapping():
    with pytest.raises(ConfigError, match=rf"^{WHERE}: must map hyperparameter names to values"):
        apply_hyperparameters(RESNET, [("image_size", 32)], WHERE)
    with pytest.raises(ConfigError, match="^submission.division: \"final\""):
        resolve_hyperparameters("resnet", {}, "final")


# --- closed division ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "mnist", "resnet"])
def test_reference_hyperparameters_pass_the_closed_checks(name):
    used = _closed(name)
    assert used.hyperparameters == registry.get(name).hyperparameters
    assert rule_failures(used.rules_file, closed_events(used)) == []


def test_resnet_reference_is_the_rcp_of_its_batch_size():
    hp = RESNET.hyperparameters
    assert (hp.global_batch_size, hp.base_learning_rate, hp.warmup_epochs, hp.max_epochs) == (3264, 10.5, 2, 39)
    assert (hp.weight_decay, hp.momentum, hp.optimizer) == (5e-5, 0.9, "lars")


def test_closed_lars_weight_decay_off_the_power_of_two_grid_is_refused_quoting_the_check():
    with pytest.raises(ConfigError) as exc:
        _closed("resnet", weight_decay=3e-4)
    assert str(exc.value) == (
        f"{WHERE}.weight_decay: 0.0003 logs lars_opt_weight_decay = 0.0003, which "
        "training_3.1.0/closed_resnet_lars.yaml (enqueued by training_4.0.0/closed_resnet.yaml) refuses: "
        + LARS_WEIGHT_DECAY_CHECK
    )
    # 0.0001 * 2 ** 1 is on the grid.
    assert _closed("resnet", weight_decay=2e-4).hyperparameters.weight_decay == 2e-4


def test_closed_weight_decay_of_zero_fails_the_check_as_the_checker_does():
    # math.log2(0) raises; the official checker counts a CHECK that raises as failed.
    with pytest.raises(ConfigError, match=r"lars_opt_weight_decay = 0\.0, .* \(it raised ValueError: math domain error\)$"):
        _closed("resnet", weight_decay=0)


def test_closed_sgd_learning_rate_must_be_a_multiple_of_a_thousandth():
    assert _closed("resnet", optimizer="sgd", base_learning_rate=2.048, weight_decay=1e-4)
    with pytest.raises(ConfigError) as exc:
        _closed("resnet", optimizer="sgd", base_learning_rate=2.0485)
    assert str(exc.value).startswith(f"{WHERE}.base_learning_rate: 2.0485 logs sgd_opt_base_learning_rate = 2.0485")
    assert "training_3.1.0/closed_resnet_sgd.yaml" in str(exc.value)
    assert "CHECK \" is_integer(v['value'] / 0.001) \"" in str(exc.value)


def test_lars_fixed_end_learning_rate_poly_power_and_epsilon():
    items = RESNET.hyperparameters.mllog_items(NOMINAL_STEPS_PER_EPOCH)
    assert (items["lars_opt_end_learning_rate"], items["lars_opt_learning_rate_decay_poly_power"]) == (0.0001, 2)
    assert items["lars_epsilon"] == 0
    events = closed_events(RESNET)
    for key, value, check in [
        ("lars_opt_end_learning_rate", 0.001, " v['value'] == 0.0001 "),
        ("lars_opt_learning_rate_decay_poly_power", 1.0, " v['value'] == 2 "),
        ("lars_epsilon", 1e-7, " v['value'] == 0.0 "),
    ]:
        changed = [(k, value if k == key else v) for k, v in events]
        failures = rule_failures(RESNET.rules_file, changed)
        assert [(f.key, f.value, f.code, f.rules_file) for f in failures] == [
            (key, value, check, "training_3.1.0/closed_resnet_lars.yaml")
        ]


def test_a_refused_value_that_benchpipe_sets_names_no_config_key(monkeypatch):
    # Should the code ever log an end learning rate other than the rules', no config key is to blame.
    schedule = ResNetTraining.schedule
    monkeypatch.setattr(
        ResNetTraining, "schedule", lambda self: dataclasses.replace(schedule(self), end_learning_rate=0.001)
    )
    with pytest.raises(ConfigError) as exc:
        check_closed(RESNET, WHERE)
    assert str(exc.value).startswith(f"{WHERE}: benchpipe logs lars_opt_end_learning_rate = 0.001, which ")
    assert str(exc.value).endswith("refuses: CHECK \" v['value'] == 0.0001 \"")


def test_closed_image_size_is_the_reference_open_records_the_departure():
    with pytest.raises(ConfigError) as exc:
        _closed("resnet", image_size=64)
    assert str(exc.value) == (
        f"{WHERE}.image_size: 64 is not the reference's 224, and the closed division allows only 224: "
        'training rules, Data Representation: "CLOSED: Images must have the same size as in the reference '
        'implementation."'
    )
    used = _open("resnet", image_size=64)
    assert departures(used, RESNET) == {"image_size": {"reference": 224, "used": 64}}


def test_closed_label_smoothing_is_0_or_0_1():
    assert _closed("resnet", label_smoothing=0).hyperparameters.label_smoothing == 0.0
    with pytest.raises(ConfigError) as exc:
        _closed("resnet", label_smoothing=0.2)
    message = str(exc.value)
    assert message.startswith(f"{WHERE}.label_smoothing: 0.2 is not the reference's 0.1")
    assert "allows only 0.0 or 0.1" in message and '"label smoothing** | 0 or 0.1"' in message


def test_closed_batch_size_without_an_rcp_is_refused():
    with pytest.raises(ConfigError) as exc:
        _closed("resnet", global_batch_size=100_000)
    assert str(exc.value).startswith(f"{WHERE}.global_batch_size: 100000 has no reference convergence point")
    # The same batch size is any other hyperparameter in the open division.
    assert departures(_open("resnet", global_batch_size=100_000), RESNET) == {
        "global_batch_size": {"reference": 3264, "used": 100_000}
    }


def test_closed_batch_size_with_its_rcp_hyperparameters_is_accepted():
    # rcps_resnet.json, resnet_ref_1632: LARS, base lr 7.4, 2 warm-up epochs, weight decay 5e-5;
    # its 27476 decay steps are 35 epochs of 785 steps past the warm-up, plus one: 37 epochs.
    used = _closed("resnet", global_batch_size=1632, base_learning_rate=7.4, max_epochs=37)
    assert departures(used, RESNET) == {
        "global_batch_size": {"reference": 3264, "used": 1632},
        "base_learning_rate": {"reference": 10.5, "used": 7.4},
        "max_epochs": {"reference": 39, "used": 37},
    }
    assert used.hyperparameters.mllog_items(1_281_167 // 1632)["lars_opt_learning_rate_decay_steps"] == 27476


def test_digits_closed_follows_its_own_rules_file():
    with pytest.raises(ConfigError) as exc:
        _closed("digits", global_batch_size=64)
    assert str(exc.value) == (
        "training.hyperparameters.digits.global_batch_size: 64 logs global_batch_size = 64, which "
        "digits.rules.yaml refuses: CHECK \" v['value'] > 0 and (s['division'] == 'open' or v['value'] == 32) \""
    )
    with pytest.raises(ConfigError, match=r"^training\.hyperparameters\.mnist\.momentum: 0\.95 logs sgd_opt_momentum"):
        _closed("mnist", momentum=0.95)
    # Its rules leave the number of epochs free; the open division takes any runnable value.
    assert _closed("digits", max_epochs=5).hyperparameters.max_epochs == 5
    assert _open("digits", global_batch_size=64, momentum=0.95).hyperparameters.global_batch_size == 64


@pytest.mark.parametrize(
    "name, overrides, flagged",
    [
        ("resnet", {}, set()),
        ("resnet", {"weight_decay": 3e-4}, {"lars_opt_weight_decay"}),
        ("resnet", {"optimizer": "sgd", "base_learning_rate": 2.0485, "weight_decay": 3e-4},
         {"sgd_opt_base_learning_rate", "sgd_opt_weight_decay"}),
        ("digits", {"global_batch_size": 64, "base_learning_rate": 0.1}, {"global_batch_size", "sgd_opt_base_learning_rate"}),
        ("mnist", {}, set()),
    ],
)
def test_rule_replay_agrees_with_the_official_compliance_checker(name, overrides, flagged):
    used = _open(name, **overrides)
    events = closed_events(used)
    ours = {f.key for f in rule_failures(used.rules_file, events)}

    # The checker itself, on a log of the same events: only the hyperparameter keys matter, the
    # rest of a run's events are missing on purpose.
    checker = mlp_compliance.ComplianceChecker("training", "4.0.0", quiet=True, werror=False)
    checker.check_loglines(log_lines(events), str(used.rules_file))
    theirs = {key for key in checker.overwritable if key in dict(events)}
    assert ours == theirs == flagged


# --- departures and the entry point ------------------------------------------------------------


def test_departures_follow_the_field_order_and_skip_equal_values():
    used = _open("resnet", model_bn_span=204, warmup_epochs=2, optimizer="sgd", base_learning_rate=2.048)
    # warmup_epochs: 2 is the reference's 2 (as a float): no departure.
    assert list(departures(used, RESNET).items()) == [
        ("base_learning_rate", {"reference": 10.5, "used": 2.048}),
        ("optimizer", {"reference": "lars", "used": "sgd"}),
        ("model_bn_span", {"reference": None, "used": 204}),
    ]
    assert departures(RESNET, RESNET) == {}


@pytest.mark.parametrize("name", ["digits", "mnist", "resnet"])
def test_every_logged_hyperparameter_maps_to_a_config_key_or_to_benchpipe(name):
    for hp in (registry.get(name).hyperparameters,
               *([dataclasses.replace(RESNET.hyperparameters, optimizer="sgd")] if name == "resnet" else [])):
        sources = hp.mllog_sources()
        items = hp.mllog_items(NOMINAL_STEPS_PER_EPOCH)
        assert set(items) <= set(sources), set(items) - set(sources)
        fields = {f.name for f in dataclasses.fields(hp)}
        assert {s for s in sources.values() if s is not None} <= fields


def test_the_preflight_imports_no_tensorflow(repo_root):
    code = (
        "import sys; from benchpipe.benchmarks.hyperparameters import resolve_hyperparameters; "
        "resolve_hyperparameters('resnet', {'resnet': {'global_batch_size': 1632, 'base_learning_rate': 7.4}}, 'closed'); "
        "resolve_hyperparameters('digits', {}, 'closed'); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
