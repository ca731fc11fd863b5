"""What the routes call: one loaded predictor, the server's settings, and the worker threads.

Decoding and recognition run in worker threads, at most ``settings.threads``
at once, within the pixel budgets of :mod:`digits.serving.limits`, which
bound the memory big photos take; the predictor is thread-safe.  Every
picture goes through the library's own code paths,
:func:`digits.inference.recognize` and :func:`digits.inference.read_number`,
so the API answers what ``digits predict`` and ``digits read`` print (exactly,
for pictures of up to ``settings.predict_pixels``; /v1/predict decodes bigger
ones reduced).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os

import numpy as np
from anyio import CapacityLimiter, to_thread

from digits.datasets.arrays import MNIST_SIDE
from digits.errors import DigitsError
from digits.inference import ImagePredictor, Prediction, read_number, recognize
from digits.serving import metrics
from digits.serving.body import Upload, parse_json
from digits.serving.limits import (
    BIG_PICTURE,
    PixelBudget,
    big_picture_threads,
    check_request_pixels,
    give_memory_back,
    largest_picture,
)
from digits.serving.schemas import InputFormat, ModelInfo, PredictionResponse
from digits.serving.settings import ServeSettings

API_VERSION = "v1"


@dataclasses.dataclass
class Service:
    """The app's state (``app.state.service``): the predictor and how requests may use it."""

    predictor: ImagePredictor
    settings: ServeSettings
    threshold: float
    """The abstain threshold in use: the settings' when given, else the model's own."""
    limiter: CapacityLimiter
    budget: PixelBudget
    """The pixels decoded at once in this process (``settings.max_pixels_in_flight``)."""
    big_pool: concurrent.futures.Executor
    """The threads of lower CPU priority that requests with big pictures run in (``settings.big_picture_threads``)."""

    @classmethod
    def start(cls, predictor: ImagePredictor, settings: ServeSettings) -> Service:
        """The service for `predictor`, wrapped for micro-batching when the settings ask for it."""
        settings.check()
        threshold = predictor.threshold if settings.threshold is None else settings.threshold
        if settings.micro_batch:
            from digits.serving.batching import BatchingPredictor

            predictor = BatchingPredictor(predictor)
        threads = settings.threads or max(2, os.cpu_count() or 1)
        return cls(predictor, settings, threshold, CapacityLimiter(threads), PixelBudget(settings.max_pixels_in_flight),
                   big_picture_threads(settings.big_picture_threads))

    @property
    def runtime(self) -> str:
        return self.predictor.runtime

    def _decode(self, item: Upload | np.ndarray, reduce_to: int | None = None):
        """An upload as a picture (arrays pass through): called in a worker thread."""
        from digits.vision import decode_image

        if isinstance(item, tuple):
            return decode_image(item[1], item[0], max_pixels=self.settings.max_pixels, reduce_to=reduce_to)
        return item

    def _decoded(self, items: list[Upload | np.ndarray]):
        """The pictures one at a time, reduced for recognition: only one big picture exists at once."""
        for item in items:
            yield self._decode(item, self.settings.predict_pixels)

    def _recognize(self, items: list[Upload | np.ndarray]) -> list[Prediction]:
        pictures = self._decoded(items)
        try:
            predictions = recognize(self.predictor, pictures, threshold=self.threshold)
        finally:
            pictures.close()
        if self.settings.metrics:
            metrics.count_answers((p.label, p.reason) for p in predictions)
        return predictions

    def _read(self, upload: Upload) -> dict:
        answer = read_number(self.predictor, self._decode(upload), threshold=self.threshold)
        if self.settings.metrics:
            metrics.count_answers((d["label"], d.get("reason")) for d in answer["digits"])
        return answer

    async def _within_budget(self, items: list, work, reduce_to: int | None):
        """Run `work(items)` in a worker thread once the pixels it decodes fit the budgets (see limits)."""
        from digits.vision.decode import decoded_size

        def read_sizes() -> list:
            return [decoded_size(item[1], reduce_to) if isinstance(item, tuple) else None for item in items]

        uploads = any(isinstance(item, tuple) for item in items)
        # Headers are read in a thread too: a PNG's may hold megabytes of compressed text before its pixels.
        sizes = await to_thread.run_sync(read_sizes, limiter=self.limiter) if uploads else [None] * len(items)
        max_pixels = self.settings.max_pixels
        check_request_pixels(sizes, self.settings.max_request_pixels, max_pixels)
        largest = largest_picture(sizes, max_pixels)
        if largest < BIG_PICTURE:
            async with self.budget.hold(largest):
                return await to_thread.run_sync(work, items, limiter=self.limiter)
        loop = asyncio.get_running_loop()
        try:
            async with self.budget.hold(largest):
                return await loop.run_in_executor(self.big_pool, work, items)
        finally:
            await loop.run_in_executor(self.big_pool, give_memory_back)

    async def recognize(self, items: list[Upload | np.ndarray]) -> list[Prediction]:
        """Decode the uploads and recognize everything, in a worker thread."""
        return await self._within_budget(items, self._recognize, self.settings.predict_pixels)

    async def read(self, upload: Upload) -> dict:
        """Decode the upload and read the number in it, in a worker thread."""
        return await self._within_budget([upload], lambda items: self._read(items[0]), None)

    async def parse(self, model, body: bytes):
        """A JSON body validated as `model`, in a worker thread, so that the event loop keeps answering."""
        return await to_thread.run_sync(parse_json, model, body, limiter=self.limiter)

    def answer(self, prediction: Prediction, with_image: bool) -> PredictionResponse:
        fields = prediction.to_dict()
        fields["model"] = self.predictor.name
        if with_image and prediction.image is not None:
            seen = np.clip(np.rint(np.asarray(prediction.image) * 255.0), 0, 255).astype(np.uint8)
            fields["image"] = seen.tolist()
        return PredictionResponse(**fields)

    def model_info(self) -> ModelInfo:
        """What ``GET /v1/model`` says: the run's recipe and test accuracy, the input format, the threshold."""
        from PIL import Image

        from digits import __version__

        info = self.predictor.info or {}
        config = info.get("config") or {}
        metrics = info.get("metrics") or {}
        name = config.get("model")
        architecture = None
        if name:
            try:
                from digits.models import get_model_spec

                architecture = f"{name}: {get_model_spec(name).description}"
            except DigitsError:
                architecture = name
        accuracy = metrics.get("test_accuracy")
        return ModelInfo(
            name=self.predictor.name,
            architecture=architecture,
            parameters=metrics.get("parameters"),
            test_accuracy=float(accuracy) if accuracy is not None else None,
            dataset=config.get("dataset"),
            input=InputFormat(
                shape=[MNIST_SIDE, MNIST_SIDE],
                pixels="JSON: 28 rows of 28 numbers in [0, 255], white digit on black (MNIST)",
                uploads="any image Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP, ...) of up to "
                        f"{self.settings.max_pixels or Image.MAX_IMAGE_PIXELS} pixels, normalized as MNIST was made",
            ),
            runtime=self.runtime,
            threshold=self.threshold,
            version=__version__,
            api_version=API_VERSION,
        )
