"""Digits: handwritten digit recognition with Keras 3.

The Python API and the ``digits`` command are the same functions::

    import digits
    run = digits.train(model="mlp", epochs=5)        # digits train --model mlp --epochs 5
    result = digits.evaluate(run)                     # digits evaluate RUN_DIR
    digits.predict_test_images(run, [0, 1, 2])        # digits predict --model RUN_DIR --index 0 ...

Importing digits does not import Keras: choose a backend first with
``digits.use_backend("jax")`` or ``KERAS_BACKEND`` if you need one other than
the model's default.
"""

__version__ = "0.1.0"

from digits.backend import use_backend
from digits.errors import DigitsError

_LAZY = {
    "load_dataset": "digits.datasets",
    "Dataset": "digits.datasets",
    "MODELS": "digits.models",
    "build_model": "digits.models",
    "train": "digits.training",
    "TrainConfig": "digits.training",
    "evaluate": "digits.evaluation",
    "predict_test_images": "digits.evaluation",
    "Run": "digits.runs",
    "recognize": "digits.inference",
    "read_number": "digits.inference",
    "load_predictor": "digits.inference",
    "ensemble": "digits.ensemble",
    "tune": "digits.tuning",
}

__all__ = ["DigitsError", "use_backend", *_LAZY]


def __getattr__(name: str):
    """Load the API lazily, so `import digits` stays instant and backend-neutral."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'digits' has no attribute {name!r}")
