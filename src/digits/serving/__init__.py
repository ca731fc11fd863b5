"""The HTTP API and web page behind ``digits serve``.

:func:`create_app` builds the FastAPI application around a loaded predictor
(see :mod:`digits.serving.app`); :func:`factory` builds it from environment
variables, for uvicorn's ``--factory`` mode with several worker processes;
:func:`serve` starts uvicorn (what ``digits serve`` calls once its flags are read).
Importing this package imports FastAPI but not Keras.
"""

from digits.serving.app import ServeSettings, create_app, factory, load_serving_predictor
from digits.serving.server import serve

__all__ = ["ServeSettings", "create_app", "factory", "load_serving_predictor", "serve"]
