"""ResNet-50 v1.5 model, its schedule, LARS and SGD updates, the loss and the MLLOG keys."""

from __future__ import annotations

import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from mlperf_logging import compliance_checker
from mlperf_logging.compliance_checker.mlp_compliance import is_integer

from benchpipe.benchmarks.resnet.hyperparameters import ResNetHyperparameters, mllog_hyperparameters
from benchpipe.benchmarks.resnet.model import build_resnet50
from benchpipe.benchmarks.resnet.optimizers import (
    LARS,
    PolynomialWarmup,
    SGDWithL2,
    label_smoothing_loss,
    learning_rate_schedule,
    make_optimizer,
)
from benchpipe.contracts.errors import ConfigError

RULES = Path(compliance_checker.__file__).parent


@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    return build_resnet50(32, 10)


def _convs(model: keras.Model) -> list[keras.layers.Conv2D]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


# --- model -----------------------------------------------------------------------------


def test_parameter_count_is_resnet50s():
    model = build_resnet50(224, 1000)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == 25_557_032
    # The BatchNormalization moving statistics come on top: two per channel.
    bn_channels = sum(
        int(layer.gamma.shape[0]) for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert model.count_params() == 25_557_032 + 2 * bn_channels
    assert model.input.shape == (None, 224, 224, 3)
    assert model.output.shape == (None, 1000)


def test_names_and_small_image_sizes(small_model):
    assert small_model.input.name == "images"
    assert small_model.output_names == ["logits"]
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    logits = small_model(images, training=False)
    assert logits.shape == (2, 10)
    assert np.all(np.isfinite(np.asarray(logits)))


def test_downsampling_strides_the_3x3_convolution(small_model):
    strided = {layer.name for layer in _convs(small_model) if tuple(layer.strides) == (2, 2)}
    assert strided == {
        "conv1",
        "res3a_branch2b", "res3a_branch1",
        "res4a_branch2b", "res4a_branch1",
        "res5a_branch2b", "res5a_branch1",
    }
    for stage in (3, 4, 5):
        assert small_model.get_layer(f"res{stage}a_branch2b").kernel_size == (3, 3)
        assert small_model.get_layer(f"res{stage}a_branch2a").kernel_size == (1, 1)


def test_convolutions_have_no_bias_and_no_regularizer(small_model):
    convs = _convs(small_model)
    assert len(convs) == 53  # stem, 16 blocks of three, four projections
    assert all(not layer.use_bias for layer in convs)
    assert all(not layer.losses for layer in small_model.layers)
    assert small_model.get_layer("logits").use_bias


def test_batch_norm_settings_and_zero_residual_gamma(small_model):
    norms = [l for l in small_model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(norms) == 53
    last_in_block = re.compile(r"bn\d[a-f]_branch2c")
    zeroed = []
    for layer in norms:
        assert layer.momentum == 0.9 and layer.epsilon == 1e-5
        gamma = np.asarray(layer.gamma)
        assert np.all(np.asarray(layer.beta) == 0)
        if last_in_block.fullmatch(layer.name):
            assert np.all(gamma == 0), layer.name
            zeroed.append(layer.name)
        else:
            assert np.all(gamma == 1), layer.name
    assert len(zeroed) == 16

    reference = build_resnet50(32, 10, zero_init_residual=False)
    assert all(
        np.all(np.asarray(l.gamma) == 1) for l in reference.layers
        if isinstance(l, keras.layers.BatchNormalization)
    )


def test_initialisers_scale_as_the_reference(small_model):
    kernel = np.asarray(small_model.get_layer("res5b_branch2b").kernel)
    fan_in = 3 * 3 * 512
    assert kernel.std() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.05)
    dense = np.asarray(small_model.get_layer("logits").kernel)
    assert dense.std() == pytest.approx(0.01, rel=0.1)
    assert np.all(np.asarray(small_model.get_layer("logits").bias) == 0)


def test_logits_are_float32_under_mixed_precision():
    model = build_resnet50(32, 10, dtype_policy="mixed_float16")
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.get_layer("conv1").kernel.dtype == "float32"
    assert model.output.dtype == "float32"

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_resnet50(32, 10)
        assert model.get_layer("res2a_branch2b").compute_dtype == "float16"
        assert model.get_layer("logits").compute_dtype == "float32"
        assert model.output.dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="image_size"):
        build_resnet50(0, 10)
    with pytest.raises(ConfigError, match="num_classes"):
        build_resnet50(32, 0)


# --- schedule --------------------------------------------------------------------------


def _closed_form(step: int, base: float, end: float, warmup: int, decay: int, power: float) -> float:
    if step <= warmup:
        return base * step / warmup
    done = min(step - warmup, decay) / decay
    return (base - end) * (1 - done) ** power + end


@pytest.mark.parametrize("step", [0, 5, 10, 11, 30, 50, 51, 500])
def test_schedule_matches_the_closed_form(step):
    schedule = PolynomialWarmup(10.0, 1e-4, warmup_steps=10, decay_steps=41, power=2.0)
    expected = _closed_form(step, 10.0, 1e-4, 10, 41, 2.0)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9)  # float32


def test_schedule_landmarks():
    schedule = PolynomialWarmup(8.0, 1e-4, warmup_steps=4, decay_steps=9, power=2.0)
    assert float(schedule(0)) == 0.0
    assert float(schedule(2)) == pytest.approx(4.0)
    assert float(schedule(4)) == pytest.approx(8.0)  # the warm-up ends at the base rate
    assert float(schedule(4 + 9)) == pytest.approx(1e-4)  # the decay counts from there
    assert float(schedule(10_000)) == pytest.approx(1e-4)


def test_schedule_without_warmup_starts_at_the_base_rate():
    schedule = PolynomialWarmup(2.0, 0.0, warmup_steps=0, decay_steps=4, power=1.0)
    assert [float(schedule(s)) for s in range(6)] == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0, 0.0])


def test_run_schedule_uses_the_reference_decay_length():
    hp = ResNetHyperparameters(
        global_batch_size=3264, base_learning_rate=10.5, warmup_epochs=2, train_epochs=37,
        weight_decay=5e-5,
    )
    schedule = learning_rate_schedule(hp, steps_per_epoch=393)
    assert schedule.warmup_steps == 2 * 393
    assert schedule.decay_steps == 37 * 393 - 2 * 393 + 1
    assert schedule.end_learning_rate == 1e-4 and schedule.power == 2.0


def test_schedule_serializes():
    schedule = PolynomialWarmup(3.0, 1e-4, warmup_steps=7, decay_steps=20, power=2.0)
    again = PolynomialWarmup.from_config(schedule.get_config())
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    for step in (0, 3, 7, 15, 40):
        assert float(again(step)) == float(schedule(step)) == float(clone(step))


def test_schedule_rejects_bad_values():
    with pytest.raises(ConfigError, match="decay_steps"):
        PolynomialWarmup(1.0, 0.0, warmup_steps=1, decay_steps=0)
    with pytest.raises(ConfigError, match="base_learning_rate"):
        PolynomialWarmup(0.0, 0.0, warmup_steps=1, decay_steps=5)


# --- optimizer updates -----------------------------------------------------------------


def _tiny_model() -> keras.Model:
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="fc")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    for variable in model.trainable_variables:  # no zeros: every norm and update is non-trivial
        variable.assign(rng.normal(0.0, 0.5, variable.shape).astype("float32"))
    return model


def _gradients(model: keras.Model, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.1, v.shape).astype("float32") for v in model.trainable_variables]


def _lars_step(w, g, v, *, lr, momentum, decay, eta, exempt):
    w, g, v = (np.asarray(a, np.float64) for a in (w, g, v))
    if not exempt:
        w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
        lr = lr * eta * w_norm / (g_norm + decay * w_norm)
        g = g + decay * w
    v = momentum * v - lr * g
    return w + v, v


def test_lars_steps_match_a_hand_computation():
    model = _tiny_model()
    lr, momentum, decay, eta = 0.5, 0.9, 0.01, 0.02
    optimizer = LARS(learning_rate=lr, momentum=momentum, weight_decay=decay, eta=eta)
    paths = [v.path for v in model.trainable_variables]
    assert paths == ["conv/kernel", "bn/gamma", "bn/beta", "fc/kernel", "fc/bias"]
    exempt = {"bn/gamma", "bn/beta", "fc/bias"}

    weights = [np.asarray(v) for v in model.trainable_variables]
    velocity = [np.zeros_like(w, np.float64) for w in weights]
    for seed in (11, 12):  # two steps, so that momentum carries over
        grads = _gradients(model, seed)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        for i, path in enumerate(paths):
            weights[i], velocity[i] = _lars_step(
                weights[i], grads[i], velocity[i], lr=lr, momentum=momentum, decay=decay,
                eta=eta, exempt=path in exempt,
            )
        for variable, expected in zip(model.trainable_variables, weights):
            np.testing.assert_allclose(np.asarray(variable), expected, rtol=1e-5, atol=1e-7,
                                       err_msg=variable.path)


def test_lars_exempt_variables_take_plain_momentum_sgd():
    model = _tiny_model()
    before = {v.path: np.asarray(v) for v in model.trainable_variables}
    grads = _gradients(model, 5)
    LARS(learning_rate=0.3, momentum=0.9, weight_decay=0.5, eta=0.001).apply_gradients(
        zip(grads, model.trainable_variables)
    )
    for variable, grad in zip(model.trainable_variables, grads):
        step = np.asarray(variable) - before[variable.path]
        if variable.path in ("bn/gamma", "bn/beta", "fc/bias"):
            np.testing.assert_allclose(step, -0.3 * grad, rtol=1e-5, err_msg=variable.path)
        else:  # scaled by a trust ratio far below one, and decayed
            assert np.linalg.norm(step) < 0.01 * np.linalg.norm(0.3 * grad), variable.path


def test_lars_trust_ratio_is_one_for_zero_weights_or_gradients():
    kernel = keras.Variable(np.zeros((2, 2), "float32"), name="kernel")
    other = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    grads = [np.full((2, 2), 0.5, "float32"), np.zeros((2, 2), "float32")]
    LARS(learning_rate=0.1, momentum=0.9, weight_decay=0.01).apply_gradients(
        zip(grads, [kernel, other])
    )
    np.testing.assert_allclose(np.asarray(kernel), -0.05, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(other), 1 - 0.1 * 0.01, rtol=1e-6)


def test_sgd_adds_the_reference_l2_gradient_outside_batch_norm():
    model = _tiny_model()
    lr, momentum, l2 = 0.2, 0.9, 0.05
    optimizer = SGDWithL2(learning_rate=lr, momentum=momentum, l2=l2)
    weights = [np.asarray(v, np.float64) for v in model.trainable_variables]
    velocity = [np.zeros_like(w) for w in weights]
    for seed in (21, 22):
        grads = _gradients(model, seed)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        for i, variable in enumerate(model.trainable_variables):
            g = grads[i].astype(np.float64)
            if not variable.path.startswith("bn/"):  # the classifier's bias is decayed too
                g = g + 2 * l2 * weights[i]
            velocity[i] = momentum * velocity[i] - lr * g
            weights[i] = weights[i] + velocity[i]
        for variable, expected in zip(model.trainable_variables, weights):
            np.testing.assert_allclose(np.asarray(variable), expected, rtol=1e-5, atol=1e-7,
                                       err_msg=variable.path)


def test_sgd_refuses_decoupled_weight_decay():
    with pytest.raises(ConfigError, match="weight_decay"):
        SGDWithL2(learning_rate=0.1, weight_decay=1e-4)


def test_optimizers_serialize():
    hp = ResNetHyperparameters(
        global_batch_size=256, base_learning_rate=2.0, warmup_epochs=2, train_epochs=10,
        weight_decay=5e-5,
    )
    for name, cls in (("lars", LARS), ("sgd", SGDWithL2)):
        optimizer = make_optimizer(name, hp, steps_per_epoch=50)
        assert isinstance(optimizer, cls)
        clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(clone) is cls
        config, again = optimizer.get_config(), clone.get_config()
        assert config == again
        assert isinstance(clone._learning_rate, PolynomialWarmup)
    assert make_optimizer("lars", hp, 50).lars_weight_decay == 5e-5
    assert make_optimizer("sgd", hp, 50).l2 == 5e-5


def test_unknown_optimizer_is_a_config_error():
    hp = ResNetHyperparameters(
        global_batch_size=256, base_learning_rate=2.0, warmup_epochs=2, train_epochs=10,
        weight_decay=5e-5,
    )
    with pytest.raises(ConfigError, match="opt_name.*'adam'"):
        make_optimizer("adam", hp, steps_per_epoch=10)
    with pytest.raises(ConfigError, match="train_epochs"):
        ResNetHyperparameters(
            global_batch_size=256, base_learning_rate=2.0, warmup_epochs=5, train_epochs=5,
            weight_decay=5e-5,
        )


# --- loss ------------------------------------------------------------------------------


def test_label_smoothing_loss_equals_categorical_on_one_hot():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 5)).astype("float32")
    labels = rng.integers(0, 5, size=6)
    ours = float(label_smoothing_loss(0.1)(labels, logits))
    keras_one_hot = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    assert ours == pytest.approx(float(keras_one_hot(np.eye(5)[labels], logits)), rel=1e-6)

    targets = 0.9 * np.eye(5)[labels] + 0.1 / 5
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert ours == pytest.approx(float(-(targets * log_softmax).sum(axis=1).mean()), rel=1e-5)


# --- MLLOG keys ------------------------------------------------------------------------


def _rules(path: Path) -> list[dict]:
    return [item["KEY"] for item in yaml.safe_load(path.read_text()) if "KEY" in item]


def _required_hyperparameter_rules(optimizer: str) -> dict[str, dict]:
    """The rules closed ResNet 4.0.0 applies to the hyperparameter events of ``optimizer``."""
    ruleset = RULES / "training_4.0.0"
    rules = {}
    for key in _rules(ruleset / "closed_resnet.yaml"):
        if key["NAME"] == "eval_accuracy":
            continue  # logged by the training loop, not a hyperparameter
        rules[key["NAME"]] = key
        if key["NAME"] == "opt_name":
            # opt_name's POST loads the optimizer's own rules file.
            pattern = re.search(r"enqueue_config\('([^']+)'", key["POST"]).group(1)
            for nested in _rules(RULES / pattern.format(optimizer)):
                rules[nested["NAME"]] = nested
    for key in _rules(ruleset / "closed_common.yaml"):
        if key["NAME"] == "gradient_accumulation_steps":
            rules[key["NAME"]] = key
    return rules


@pytest.mark.parametrize(
    "optimizer, hp",
    [
        ("lars", ResNetHyperparameters(
            global_batch_size=3264, base_learning_rate=10.5, warmup_epochs=2, train_epochs=37,
            weight_decay=5e-5)),
        ("sgd", ResNetHyperparameters(
            global_batch_size=1024, base_learning_rate=2.048, warmup_epochs=5, train_epochs=41,
            weight_decay=1e-4)),
    ],
)
def test_mllog_keys_satisfy_the_closed_resnet_rules(optimizer, hp):
    rules = _required_hyperparameter_rules(optimizer)
    items = mllog_hyperparameters(optimizer, hp, steps_per_epoch=393)
    assert len([k for k in rules if k.startswith(f"{optimizer}_")]) == {"lars": 8, "sgd": 6}[optimizer]
    assert set(rules) <= set(items)
    assert set(items) - set(rules) <= {"model_bn_span"}  # the reference logs it for LARS too
    for name, rule in rules.items():
        assert rule["REQ"] == "EXACTLY_ONE"
        check = rule.get("CHECK")
        checks = [check] if isinstance(check, str) else check or []
        for expression in checks:
            ok = eval(expression, {"math": math, "is_integer": is_integer}, {"v": {"value": items[name]}})
            assert ok, f"{name}={items[name]!r} fails {expression}"
        assert isinstance(items[name], (int, float, str)) and not isinstance(items[name], bool)
    assert items["opt_name"] == optimizer
    warmup_steps = hp.warmup_epochs * 393
    assert items[f"{optimizer}_opt_learning_rate_decay_steps"] == hp.train_epochs * 393 - warmup_steps + 1


# --- training --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.resnet
def test_lars_trains_resnet50_on_random_data():
    keras.utils.set_random_seed(0)
    model = build_resnet50(32, 10)
    hp = ResNetHyperparameters(
        global_batch_size=8, base_learning_rate=2.0, warmup_epochs=1, train_epochs=20,
        weight_decay=5e-5,
    )
    model.compile(
        optimizer=make_optimizer("lars", hp, steps_per_epoch=2),
        loss=label_smoothing_loss(0.1),
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, size=8)
    before = np.asarray(model.get_layer("res3a_branch2b").kernel)
    losses = [float(model.train_on_batch(images, labels)) for _ in range(8)]
    assert all(math.isfinite(loss) for loss in losses)
    assert not np.allclose(np.asarray(model.get_layer("res3a_branch2b").kernel), before)
    assert losses[1] == pytest.approx(losses[0])  # the first step runs at learning rate 0
    assert max(losses[4:]) < 0.5 * losses[0]
