"""The HTTP API and web page behind ``digits serve``.

:func:`create_app` builds the FastAPI application around a loaded predictor
(see :mod:`digits.serving.app`); :func:`factory` builds it from environment
variables, for uvicorn's ``--factory`` mode with several worker processes.
Importing this package imports FastAPI but not Keras.
"""

from digits.serving.app import ServeSettings, create_app, factory, load_serving_predictor

__all__ = ["ServeSettings", "create_app", "factory", "load_serving_predictor"]
