"""The model registry: one name, one builder, the recipe it trains with.

Every model takes a batch of 28×28 float32 images scaled to [0, 1] (the
seeds' convention) and returns 10 softmax probabilities, so any run can be
evaluated, served or compared the same way.

The seed architectures keep their seeds' own training settings as defaults
(Adam, loss, epochs, batch size); ``digits train --model mlp --epochs 5``
is seed 001.  Building a model imports Keras, so the backend must already be
chosen (:func:`digits.backend.use_backend`); reading the registry does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from digits.errors import DigitsError


@dataclass(frozen=True)
class HyperParameter:
    """An architecture setting a builder takes (width, depth, dropout...), its default and range.

    A run sets them in ``TrainConfig.extra["architecture"]`` (``config.json``);
    ``digits tune`` searches them.  Integer settings have an int default.
    """

    default: int | float
    low: int | float
    high: int | float
    help: str = ""

    @property
    def integer(self) -> bool:
        return isinstance(self.default, int)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], "keras.Model"]  # noqa: F821  (keras is imported lazily)
    description: str
    epochs: int
    batch_size: int
    learning_rate: float = 1e-3
    one_hot: bool = False  # categorical cross-entropy on one-hot labels (seed 004)
    backend: str = "jax"  # the backend it trains fastest on here (README: "Choosing the backend")
    jit_compile: bool = True  # XLA on TensorFlow: 4× faster for dense nets, 2× slower for convolutions
    seed: str = ""  # which seed project this reproduces
    lr_schedule: str = "cosine"  # see digits.training.SCHEDULES
    # Adam's (beta_1, beta_2): Keras's defaults, except where a short recipe measured better with
    # shorter memories (`fast`: (0.7, 0.9), as in tuomaso/train_mnist_fast; BENCHMARKS.md).
    adam_betas: tuple[float, float] = (0.9, 0.999)
    # "mixed_bfloat16": compute in bfloat16 where the processor does it natively (see
    # digits.backend.native_bfloat16), else float32.  Measured: 1.5× faster for `fast`'s
    # convolutions on an AMD EPYC; for cnn-bn no faster there, 1.5-2× on an Intel Xeon with
    # AMX, where batch norm then takes half its time (BENCHMARKS.md, benchmarks/cnn_bn_profile.py).
    precision: str = "float32"
    # Architecture settings `build` accepts as keywords; their defaults give the fixed model above.
    hyperparameters: Mapping[str, HyperParameter] = field(default_factory=dict, hash=False)

    def architecture(self, values: Mapping | None) -> dict:
        """`values` (from ``extra["architecture"]``) checked against this model's settings."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.hyperparameters))
        if unknown:
            known = ", ".join(self.hyperparameters) or "none"
            raise DigitsError(f"model {self.name!r} has no architecture setting {', '.join(unknown)} "
                              f"(its settings: {known})")
        for name, value in values.items():
            hp = self.hyperparameters[name]
            kind = int if hp.integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not hp.low <= value <= hp.high:
                what = "a whole number" if hp.integer else "a number"
                raise DigitsError(f"architecture setting {name} of {self.name!r} must be {what} "
                                  f"in [{hp.low}, {hp.high}], got {value!r}")
        return values


def _mlp(*widths: int) -> Callable[..., "keras.Model"]:  # noqa: F821
    """Dense layers of `widths`; with `width`/`depth` given, `depth` layers of `width` instead."""

    def build(width: int | None = None, depth: int | None = None, dropout: float = 0.0,
              augment: float = 0.0):
        import keras

        units = list(widths)
        if width is not None or depth is not None:
            units = [width or widths[0]] * (depth or len(widths))
        layers = [keras.Input((28, 28), name="image")]
        if augment:
            layers += [keras.layers.Reshape((28, 28, 1)), *_augmentation(augment)]
        layers.append(keras.layers.Flatten())
        for w in units:
            layers.append(keras.layers.Dense(w, activation="relu"))
            if dropout:
                layers.append(keras.layers.Dropout(dropout))
        layers.append(keras.layers.Dense(10, activation="softmax", name="probabilities"))
        return keras.Sequential(layers, name="mlp_" + "_".join(map(str, units)))

    return build


def _augmentation(strength: float) -> list:
    """Random rotation (±100·strength degrees), shift and zoom (±strength); none at 0.

    At 0.1 these are cnn-bn's ±10°, ±10%, ±10%.  They take (N, 28, 28, 1) images; Keras applies
    them only while training.
    """
    if not strength:
        return []
    from keras import layers

    return [
        layers.RandomRotation(strength * 100 / 360, fill_mode="constant"),
        layers.RandomTranslation(strength, strength, fill_mode="constant"),
        layers.RandomZoom(strength, fill_mode="constant"),
    ]


_MLP_SETTINGS = {
    "width": HyperParameter(128, 1, 4096, "units in each hidden layer"),
    "depth": HyperParameter(1, 1, 8, "hidden layers"),
    "dropout": HyperParameter(0.0, 0.0, 0.9, "dropout after each hidden layer"),
    "augment": HyperParameter(0.0, 0.0, 0.5, "augmentation strength (0: none)"),
}


def _cnn(filters: int = 32, blocks: int = 2, dense: int = 128, dropout: float = 0.25,
         augment: float = 0.0):
    """Two VGG-style blocks (two 3×3 convolutions, then pooling), dropout, softmax.

    Small enough to train on two CPU cores in minutes, and above 99% on the
    MNIST test set after a few epochs (measured: BENCHMARKS.md).  The defaults are
    that model; ``digits tune`` varies the first block's `filters` (doubled
    in each further block), the number of `blocks`, the `dense` width,
    `dropout` and `augment` (see :func:`_augmentation`).
    """
    import keras
    from keras import layers

    convs = []
    for i in range(blocks):
        convs += [layers.Conv2D(filters * 2**i, 3, padding="same", activation="relu"),
                  layers.Conv2D(filters * 2**i, 3, activation="relu"),
                  layers.MaxPooling2D()]
    return keras.Sequential(
        [
            keras.Input((28, 28), name="image"),
            layers.Reshape((28, 28, 1)),
            *_augmentation(augment),
            *convs,
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Dense(dense, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="cnn",
    )


_CNN_SETTINGS = {
    "filters": HyperParameter(32, 1, 256, "convolution filters in the first block, doubled per block"),
    "blocks": HyperParameter(2, 1, 3, "convolution blocks (two 3×3 convolutions and pooling)"),
    "dense": HyperParameter(128, 1, 4096, "units in the dense layer"),
    "dropout": HyperParameter(0.25, 0.0, 0.9, "dropout before and after the dense layer"),
    "augment": HyperParameter(0.0, 0.0, 0.5, "augmentation strength (0: none)"),
}


def _cnn_bn():
    """The stronger sibling: batch norm, strided convolutions instead of pooling, augmentation.

    After the widely used Kaggle MNIST design (two 3×3 convolutions then a
    strided 5×5 per block, batch normalization, dropout 0.4). The random
    rotation (±10°), shift (±10%) and zoom (±10%) layers act only while
    training; they also make the model kinder to users' own pictures.
    """
    import keras
    from keras import layers

    def conv(filters, size, strides=1, padding="same"):
        return [layers.Conv2D(filters, size, strides=strides, padding=padding, use_bias=False),
                layers.BatchNormalization(), layers.Activation("relu")]

    return keras.Sequential(
        [
            keras.Input((28, 28), name="image"),
            layers.Reshape((28, 28, 1)),
            *_augmentation(0.1),
            *conv(32, 3), *conv(32, 3), *conv(32, 5, strides=2), layers.Dropout(0.4),
            *conv(64, 3), *conv(64, 3), *conv(64, 5, strides=2), layers.Dropout(0.4),
            *conv(128, 4, padding="valid"), layers.Flatten(), layers.Dropout(0.4),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="cnn_bn",
    )


def _fast(filters: int = 32):
    """Little arithmetic that still reaches 99% in two epochs: two strided convolutions, a dense layer.

    A 5×5 convolution with stride 2 (32 filters) and a 3×3 with stride 2
    (`filters`, 32) take the place of convolution-plus-pooling, so every
    multiply produces an output: 0.45 M multiply-adds per image against the
    Keras example convnet's 2.4 M, for 113,898 parameters.  The second
    convolution had 64 filters (0.78 M multiply-adds) until three seeds showed
    that 32 reach the same accuracy in three epochs, on the validation split
    (99.13–99.20%) as on the test set, while 16 filters in the first
    convolution and 32 in the second stopped at 98.98% (BENCHMARKS.md,
    "Fixed costs and time to accuracy").
    Trained with a one-cycle rate (peak 0.01), batch 256 and mixed
    bfloat16 (where the processor computes bfloat16 natively), for two
    epochs with Adam's betas at (0.7, 0.9) as in tuomaso/train_mnist_fast:
    three epochs with Keras's defaults (0.9, 0.999) reached the same
    validation accuracy, two epochs with the defaults 98.90% on the test set
    (BENCHMARKS.md, "Two epochs instead of three").
    The output layer computes in float32, so probabilities keep full precision.
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28), name="image"),
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, 5, strides=2, activation="relu"),
            layers.Conv2D(filters, 3, strides=2, activation="relu"),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax", name="probabilities", dtype="float32"),
        ],
        name="fast",
    )


def _fast_aug():
    """`fast`'s two strided convolutions with shifts, batch norm and dropout: aimed at 99.5% within a minute.

    The earlier `fast` shape (5×5 stride 2 with 32 filters, 3×3 stride 2
    with 64: 0.78 M multiply-adds per image) with batch normalization after
    each convolution, dropout 0.4 before and after the dense layer, and random
    shifts of up to 8% (2 pixels) while training, for 12 epochs of `fast`'s
    one-cycle rate.  It reaches about 99.4%, not 99.5% (BENCHMARKS.md,
    "Fixed costs and time to accuracy").  On the validation split it tied with
    the same network with dropout alone (99.40% against 99.43% after 12
    epochs, one image of 3,000 apart); it was kept because its three seeds
    were measured.
    """
    import keras
    from keras import layers

    def conv(filters, size):
        return [layers.Conv2D(filters, size, strides=2, use_bias=False), layers.BatchNormalization(),
                layers.Activation("relu")]

    return keras.Sequential(
        [
            keras.Input((28, 28), name="image"),
            layers.Reshape((28, 28, 1)),
            layers.RandomTranslation(0.08, 0.08, fill_mode="constant"),
            *conv(32, 5), *conv(64, 3),
            layers.Flatten(),
            layers.Dropout(0.4),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.4),
            layers.Dense(10, activation="softmax", name="probabilities", dtype="float32"),
        ],
        name="fast_aug",
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("mlp", _mlp(128), "Flatten → Dense(128, relu) → Dense(10, softmax)",
                  epochs=5, batch_size=32, seed="000, 001, 002", hyperparameters=_MLP_SETTINGS),
        ModelSpec("mlp2", _mlp(128, 128), "Flatten → 128 → 128 → 10",
                  epochs=10, batch_size=32, seed="003",
                  hyperparameters={**_MLP_SETTINGS, "depth": HyperParameter(2, 1, 8, "hidden layers")}),
        ModelSpec("mlp-256-128", _mlp(256, 128), "Flatten → 256 → 128 → 10, one-hot labels",
                  epochs=10, batch_size=32, one_hot=True, seed="004"),
        ModelSpec("cnn", _cnn, "2×(conv3×3 ×2 → maxpool) → dropout → Dense(128) → 10",
                  epochs=6, batch_size=128, backend="tensorflow", jit_compile=False,
                  hyperparameters=_CNN_SETTINGS),
        ModelSpec("cnn-bn", _cnn_bn, "augmentation → 2×(conv3×3 ×2 → conv5×5/2, batch norm, dropout) → conv4×4 → 10",
                  epochs=15, batch_size=128, backend="tensorflow", jit_compile=False),
        ModelSpec("fast", _fast, "conv5×5/2(32) → conv3×3/2(32) → Dense(128) → 10: 99% in 2 epochs",
                  epochs=2, batch_size=256, learning_rate=0.01, lr_schedule="onecycle", adam_betas=(0.7, 0.9),
                  backend="tensorflow", jit_compile=False, precision="mixed_bfloat16",
                  hyperparameters={"filters": HyperParameter(32, 1, 256, "filters in the second convolution")}),
        ModelSpec("fast-aug", _fast_aug, "shifts → conv5×5/2(32) → conv3×3/2(64), batch norm → dropout, Dense(128) → 10",
                  epochs=12, batch_size=256, learning_rate=0.01, lr_schedule="onecycle",
                  backend="tensorflow", jit_compile=False),
    ]
}


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise DigitsError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)} (see `digits models`)"
        ) from None


def build_model(name: str, architecture: Mapping | None = None) -> "keras.Model":  # noqa: F821
    """A fresh, uncompiled Keras model for the registry entry `name` (with its `architecture` settings)."""
    spec = get_model_spec(name)
    return spec.build(**spec.architecture(architecture))
