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

from dataclasses import dataclass
from typing import Callable

from digits.errors import DigitsError


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


def _mlp(*widths: int) -> Callable[[], "keras.Model"]:  # noqa: F821
    def build():
        import keras

        layers = [keras.Input((28, 28), name="image"), keras.layers.Flatten()]
        layers += [keras.layers.Dense(w, activation="relu") for w in widths]
        layers.append(keras.layers.Dense(10, activation="softmax", name="probabilities"))
        return keras.Sequential(layers, name="mlp_" + "_".join(map(str, widths)))

    return build


def _cnn():
    """Two VGG-style blocks (two 3×3 convolutions, then pooling), dropout, softmax.

    Small enough to train in about a minute an epoch on two CPU cores, and
    above 99.2% on the MNIST test set after a few epochs.
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28), name="image"),
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.25),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="cnn",
    )


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
            layers.RandomRotation(10 / 360, fill_mode="constant"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
            layers.RandomZoom(0.1, fill_mode="constant"),
            *conv(32, 3), *conv(32, 3), *conv(32, 5, strides=2), layers.Dropout(0.4),
            *conv(64, 3), *conv(64, 3), *conv(64, 5, strides=2), layers.Dropout(0.4),
            *conv(128, 4, padding="valid"), layers.Flatten(), layers.Dropout(0.4),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="cnn_bn",
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("mlp", _mlp(128), "Flatten → Dense(128, relu) → Dense(10, softmax)",
                  epochs=5, batch_size=32, seed="000, 001, 002"),
        ModelSpec("mlp2", _mlp(128, 128), "Flatten → 128 → 128 → 10",
                  epochs=10, batch_size=32, seed="003"),
        ModelSpec("mlp-256-128", _mlp(256, 128), "Flatten → 256 → 128 → 10, one-hot labels",
                  epochs=10, batch_size=32, one_hot=True, seed="004"),
        ModelSpec("cnn", _cnn, "2×(conv3×3 ×2 → maxpool) → dropout → Dense(128) → 10",
                  epochs=6, batch_size=128, backend="tensorflow", jit_compile=False),
        ModelSpec("cnn-bn", _cnn_bn, "augmentation → 2×(conv3×3 ×2 → conv5×5/2, batch norm, dropout) → conv4×4 → 10",
                  epochs=15, batch_size=128, backend="tensorflow", jit_compile=False),
    ]
}


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise DigitsError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)} (see `digits models`)"
        ) from None


def build_model(name: str) -> "keras.Model":  # noqa: F821
    """A fresh, uncompiled Keras model for the registry entry `name`."""
    return get_model_spec(name).build()
