"""ResNet-50 v1.5, laid out as the MLPerf training reference (TensorFlow 2) lays it out.

v1.5 differs from the original ResNet-50 (v1) in one place: a downsampling bottleneck
strides its 3x3 convolution, not its first 1x1, which costs a little speed and gains
about half a point of top-1. Layer names follow the reference (``conv1``, ``bn_conv1``,
``res3a_branch2b``, ``bn3a_branch2b``...), so checkpoints and logs read the same.

Weight decay is not attached to the layers: the optimizers in ``optimizers`` apply it
(see there), which keeps ``model.losses`` empty and the rule in one place.
"""

from __future__ import annotations

import keras

from benchpipe.contracts.errors import ConfigError

BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5

# (stage number, bottleneck width, blocks); the output width is four times the bottleneck.
STAGES: tuple[tuple[int, int, int], ...] = ((2, 64, 3), (3, 128, 4), (4, 256, 6), (5, 512, 3))


def _conv(
    filters: int, kernel: int, name: str, policy: str | None, strides: int = 1,
    padding: str = "same",
) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, use_bias=False,
        kernel_initializer="he_normal", name=name, dtype=policy,
    )


def _batch_norm(name: str, policy: str | None, zero_gamma: bool = False) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name, dtype=policy,
    )


def _bottleneck(
    x, width: int, stage: int, block: str, *, strides: int, projection: bool,
    zero_init_residual: bool, policy: str | None,
):
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    shortcut = x
    if projection:
        shortcut = _conv(4 * width, 1, conv + "1", policy, strides=strides)(x)
        shortcut = _batch_norm(bn + "1", policy)(shortcut)

    y = _conv(width, 1, conv + "2a", policy)(x)
    y = _batch_norm(bn + "2a", policy)(y)
    y = keras.layers.Activation("relu", dtype=policy)(y)
    y = _conv(width, 3, conv + "2b", policy, strides=strides)(y)  # v1.5: the stride sits here
    y = _batch_norm(bn + "2b", policy)(y)
    y = keras.layers.Activation("relu", dtype=policy)(y)
    y = _conv(4 * width, 1, conv + "2c", policy)(y)
    # A zero gamma makes each residual branch start as the identity, which steadies the
    # first large-batch steps (Goyal et al. 2017).
    y = _batch_norm(bn + "2c", policy, zero_gamma=zero_init_residual)(y)

    y = keras.layers.Add(name=f"res{stage}{block}", dtype=policy)([y, shortcut])
    return keras.layers.Activation("relu", name=f"res{stage}{block}_relu", dtype=policy)(y)


def build_resnet50(
    image_size: int = 224,
    num_classes: int = 1000,
    *,
    dtype_policy: str | None = None,
    zero_init_residual: bool = True,
) -> keras.Model:
    """ResNet-50 v1.5 taking ``images`` (NHWC, float) and returning float32 ``logits``.

    ``dtype_policy`` (e.g. "mixed_float16") applies to every layer but the classifier, which
    computes in float32 so that the loss never sees float16 logits; ``None`` uses the
    global policy. ``zero_init_residual`` sets the gamma of each block's last
    BatchNormalization to zero; the TensorFlow 2 reference initialises it to one, so pass
    False to reproduce it exactly.
    """
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be positive, got {num_classes}")

    images = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = keras.layers.ZeroPadding2D(padding=3, name="conv1_pad", dtype=dtype_policy)(images)
    x = _conv(64, 7, "conv1", dtype_policy, strides=2, padding="valid")(x)
    x = _batch_norm("bn_conv1", dtype_policy)(x)
    x = keras.layers.Activation("relu", dtype=dtype_policy)(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1", dtype=dtype_policy)(x)

    for stage, width, blocks in STAGES:
        for index in range(blocks):
            x = _bottleneck(
                x, width, stage, "abcdef"[index],
                strides=2 if index == 0 and stage > 2 else 1,
                projection=index == 0,
                zero_init_residual=zero_init_residual,
                policy=dtype_policy,
            )

    x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype_policy)(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="logits",
        dtype="float32",
    )(x)
    return keras.Model(images, logits, name="resnet50_v1_5")
