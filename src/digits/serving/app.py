"""The HTTP API and the drawing page: a FastAPI application around one loaded predictor.

Routes (all answers JSON except the page and its files):

- ``POST /v1/predict``: one image, as a multipart upload (field ``file``), as
  the raw bytes of an image file, or as JSON ``{"pixels": 28×28 numbers in
  [0, 255]}`` (white digit on black, as in MNIST).  Answers
  ``{"label", "confidence", "probabilities", "model"}`` plus ``"reason"`` when
  the label is null (no ink, or unsure) and, with ``?image=true``, the 28×28
  ``"image"`` the model saw (0..255, the same convention as ``pixels``).
- ``POST /v1/predict/batch``: several images (multipart fields ``file`` or
  ``files``, or JSON ``{"images": [{"pixels": ...}, ...]}``), answered in order.
- ``GET /v1/health``, ``GET /v1/model``.
- ``GET /``: the page; ``/static/...``: its script and style sheet.
- ``/openapi.json``, ``/docs``, ``/redoc``: FastAPI's schema and docs.

Every picture goes through :func:`digits.inference.recognize`, the code path
of ``digits predict``; uploads are decoded by
:func:`digits.vision.decode_image`, which shares :func:`load_image`'s checks,
so what a file *is* is decided by decoding it, never by its declared type.

Errors are JSON ``{"error": code, "detail": one line}``: 400 for an empty or
malformed body, 413 for a request over the size limit (checked on the
Content-Length header and again on the bytes actually read), a batch over the
length limit or an image with too many pixels, 415 for content that is not an
image (or a batch sent as raw bytes), 422 for wrong shapes, NaN or
out-of-range pixels and corrupt images.  Anything unexpected is logged with
its traceback on the server and answered 500 with no details.

Decoding and inference run in worker threads (at most `threads` at once, which
bounds the memory big photos take); the predictor is thread-safe, and with
``micro_batch=True`` the model calls of requests that arrive together are run
as one batch (:class:`digits.serving.batching.BatchingPredictor`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from digits.datasets.arrays import MNIST_SIDE
from digits.errors import DigitsError
from digits.inference import recognize

log = logging.getLogger("digits.serving")

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_VERSION = "v1"

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Largest request body (10 MiB): a phone photo is 2..6 MB."""
DEFAULT_MAX_BATCH = 64
"""Most images in one batch request."""
DEFAULT_MAX_PIXELS = 25_000_000
"""Most pixels in one decoded upload: a 24-megapixel photo passes; more would take
seconds and hundreds of MB to normalize, and a small file can claim billions."""

# ---------------------------------------------------------------------------
# Request and response models


Pixel = Annotated[float, Field(ge=0, le=255, allow_inf_nan=False, strict=True)]
Row = Annotated[list[Pixel], Field(min_length=MNIST_SIDE, max_length=MNIST_SIDE)]


class PixelsRequest(BaseModel):
    """One digit as numbers: 28 rows of 28 grey levels, 0 = black paper to 255 = white ink (as in MNIST)."""

    model_config = ConfigDict(extra="forbid")
    pixels: Annotated[list[Row], Field(min_length=MNIST_SIDE, max_length=MNIST_SIDE,
                                       description="28 rows of 28 numbers in [0, 255]")]


class BatchPixelsRequest(BaseModel):
    """Several digits as numbers, answered in the same order."""

    model_config = ConfigDict(extra="forbid")
    images: Annotated[list[PixelsRequest], Field(min_length=1, description="at most the server's max batch")]


class PredictionResponse(BaseModel):
    """What the model says about one image."""

    label: int | None = Field(description="the digit, or null when there is no digit or the model is unsure")
    confidence: float = Field(description="the highest probability (0 when there was nothing to classify)")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="one per digit 0..9")
    reason: str | None = Field(None, description="why the label is null; absent otherwise")
    model: str = Field(description="the id of the model that answered")
    image: list[list[int]] | None = Field(
        None, description="with ?image=true: the 28×28 image the model saw, 0..255, white on black")


class BatchResponse(BaseModel):
    model: str
    predictions: list[PredictionResponse] = Field(description="one per image, in the order sent")


class HealthResponse(BaseModel):
    status: str = Field(description='"ok" when the model is loaded and answering')
    model: str
    runtime: str


class InputFormat(BaseModel):
    shape: list[int]
    pixels: str
    uploads: str


class ModelInfo(BaseModel):
    name: str = Field(description="the model id sent with every prediction")
    architecture: str | None
    parameters: int | None
    test_accuracy: float | None = Field(description="accuracy on the 10,000 MNIST test images")
    dataset: str | None
    input: InputFormat
    runtime: str = Field(description='"keras" (and its backend) or "onnx" (ONNX Runtime)')
    threshold: float = Field(description="below this confidence the label is null (unsure)")
    version: str = Field(description="the digits package version")
    api_version: str


class ErrorResponse(BaseModel):
    error: str = Field(description="a short code, e.g. payload_too_large")
    detail: str = Field(description="one line saying what was wrong")


# ---------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """A client error with its status, code and one-line detail."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _error(status: int, error: str, detail: Any, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": _one_line(detail)}, status_code=status, headers=headers)


_DECODE_STATUS = {"empty": (400, "empty_body"), "not_image": (415, "not_an_image"),
                  "corrupt": (422, "corrupt_image"), "too_large": (413, "image_too_large")}


def _validation_detail(errors: list[dict]) -> str:
    """Pydantic errors as one line: the first error's place and message, and how many more."""
    first = errors[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ()) if p != "body")
    where = loc.lstrip(".") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(DigitsError)
    async def digits_error(request: Request, exc: DigitsError):
        from digits.vision import ImageDecodeError

        if isinstance(exc, ImageDecodeError) and exc.kind in _DECODE_STATUS:
            return _error(*_DECODE_STATUS[exc.kind], exc)
        return _error(422, "invalid_input", exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, "validation_error", _validation_detail(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        from http import HTTPStatus

        try:
            code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        except ValueError:
            code = "http_error"
        return _error(exc.status_code, code, exc.detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("unexpected error answering %s %s", request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return _error(500, "internal_error", "the server failed to answer this request; the error was logged")


# ---------------------------------------------------------------------------
# Reading requests


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length is not a number: {declared!r}") from None
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body of {size} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise ApiError(400, "empty_body", "the request has no body; send an image or JSON pixels")
    return body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _parse_json(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors()
        if errors and errors[0].get("type") == "json_invalid":
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {errors[0].get('msg')}") from None
        raise ApiError(422, "invalid_pixels", _validation_detail(errors)) from None


def _pixels_array(item: PixelsRequest) -> np.ndarray:
    # 0..255 white on black, as MNIST: to [0, 1], which to_mnist passes through nearly unchanged.
    return np.asarray(item.pixels, dtype=np.float32) / np.float32(255.0)


async def _uploads(request: Request, body: bytes, names: tuple[str, ...], max_files: int) -> list[tuple[str, bytes]]:
    """The files of a multipart body (fields in `names`, in order) as (name, bytes)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=max_files + 1, max_fields=32,
                                                         max_part_size=len(body) + 1)
    except StarletteHTTPException as e:
        if "too many files" in str(e.detail).lower():
            raise ApiError(413, "too_many_images", f"more than {max_files} files in one request") from None
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {e.detail}") from None
    try:
        files = []
        for key, value in form.multi_items():
            if key not in names:
                continue
            if not isinstance(value, UploadFile):
                raise ApiError(422, "not_a_file", f"form field {key!r} must be a file upload, not text")
            files.append((value.filename or key, await value.read()))
        return files
    finally:
        await form.close()


# ---------------------------------------------------------------------------
# The application


@dataclasses.dataclass
class _Service:
    predictor: Any
    threshold: float
    max_pixels: int | None
    limiter: CapacityLimiter
    runtime: str

    def _recognize(self, items: list) -> list:
        """Decode uploads and recognize everything, in a worker thread."""
        from digits.vision import decode_image

        pictures = [decode_image(item[1], item[0], max_pixels=self.max_pixels) if isinstance(item, tuple)
                    else item for item in items]
        return recognize(self.predictor, pictures, threshold=self.threshold)

    async def recognize(self, items: list) -> list:
        return await to_thread.run_sync(self._recognize, items, limiter=self.limiter)

    def answer(self, prediction, with_image: bool) -> PredictionResponse:
        fields = prediction.to_dict()
        fields["model"] = self.predictor.name
        if with_image and prediction.image is not None:
            seen = np.clip(np.rint(np.asarray(prediction.image) * 255.0), 0, 255).astype(np.uint8)
            fields["image"] = seen.tolist()
        return PredictionResponse(**fields)


def _body_doc(json_model: str, multipart_field: str, raw: bool) -> dict:
    content = {
        "multipart/form-data": {"schema": {
            "type": "object",
            "properties": {multipart_field: {"type": "string", "format": "binary",
                                             "description": "an image file: PNG, JPEG, BMP, GIF, TIFF, WebP, ..."}},
            "required": [multipart_field]}},
        "application/json": {"schema": {"$ref": f"#/components/schemas/{json_model}"}},
    }
    if multipart_field == "files":
        content["multipart/form-data"]["schema"]["properties"]["files"] = {
            "type": "array", "items": {"type": "string", "format": "binary"},
            "description": "image files (field name `files` or `file`, repeated), answered in order"}
    if raw:
        content["image/*"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "empty or malformed body",
    413: "request, batch or image too large",
    415: "not an image",
    422: "wrong shape, NaN or out-of-range pixels, corrupt image",
    500: "unexpected server error (logged; no details are sent)",
}.items()}


def create_app(
    predictor,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    threshold: float | None = None,
    threads: int | None = None,
    micro_batch: bool = False,
) -> FastAPI:
    """The FastAPI app serving `predictor` (a :class:`digits.inference.Predictor` or alike).

    `max_upload_bytes` bounds a request body, `max_batch` the images in one
    batch request, `max_pixels` one decoded image.  `threads` (default: the
    CPU count, at least 2) is how many requests are decoded and classified at
    once.  `micro_batch` runs concurrent requests' model calls as one batch.
    """
    from digits import __version__

    if max_upload_bytes < 1 or max_batch < 1:
        raise DigitsError("max upload size and max batch must be at least 1")
    if threshold is None:
        threshold = predictor.threshold  # the model's own
    if not 0 <= threshold <= 1:
        raise DigitsError(f"threshold must be between 0 and 1, got {threshold}")
    if micro_batch:
        from digits.serving.batching import BatchingPredictor

        predictor = BatchingPredictor(predictor)
    service = _Service(predictor, threshold, max_pixels,
                       CapacityLimiter(threads or max(2, os.cpu_count() or 1)),
                       getattr(predictor, "runtime", "keras"))  # a predictor "alike" may not say

    app = FastAPI(
        title="Digits",
        version=__version__,
        description="Handwritten digit recognition: upload an image or send 28×28 pixels, get the digit "
                    "and the ten probabilities. Errors are JSON `{\"error\": code, \"detail\": line}`.",
    )
    app.state.service = service
    app.state.settings = {"max_upload_bytes": max_upload_bytes, "max_batch": max_batch, "max_pixels": max_pixels}
    _install_error_handlers(app)

    @app.post("/v1/predict", response_model=PredictionResponse, response_model_exclude_unset=True,
              responses=_ERRORS, openapi_extra=_body_doc("PixelsRequest", "file", raw=True),
              summary="Recognize one digit", tags=["predict"])
    async def predict(request: Request,
                      image: bool = Query(False, description="also answer the 28×28 image the model saw")):
        """One image: a multipart upload (field `file`), the raw bytes of an image file, or
        JSON `{"pixels": 28×28 numbers in [0, 255]}` (white digit on black)."""
        body = await _read_body(request, max_upload_bytes)
        media = _media_type(request)
        if _is_json(media):
            items = [_pixels_array(_parse_json(PixelsRequest, body))]
        elif media == "multipart/form-data":
            files = await _uploads(request, body, ("file",), max_files=1)
            if not files:
                raise ApiError(422, "missing_file", "no file in the form; send the image in the field `file`")
            if len(files) > 1:
                raise ApiError(422, "too_many_files", "send one file here; several go to /v1/predict/batch")
            items = files
        else:  # raw bytes, whatever type they claim: decoding decides
            items = [("upload", body)]
        (prediction,) = await service.recognize(items)
        return service.answer(prediction, image)

    @app.post("/v1/predict/batch", response_model=BatchResponse, response_model_exclude_unset=True,
              responses=_ERRORS, openapi_extra=_body_doc("BatchPixelsRequest", "files", raw=False),
              summary="Recognize several digits", tags=["predict"])
    async def predict_batch(request: Request,
                            image: bool = Query(False, description="also answer the 28×28 images the model saw")):
        """Several images in one request, answered in order: multipart (fields `files` or `file`,
        repeated) or JSON `{"images": [{"pixels": ...}, ...]}`."""
        body = await _read_body(request, max_upload_bytes)
        media = _media_type(request)
        if _is_json(media):
            parsed = _parse_json(BatchPixelsRequest, body)
            if len(parsed.images) > max_batch:
                raise ApiError(413, "too_many_images", f"{len(parsed.images)} images; the limit is {max_batch}")
            items = [_pixels_array(item) for item in parsed.images]
        elif media == "multipart/form-data":
            files = await _uploads(request, body, ("files", "file"), max_files=max_batch)
            if not files:
                raise ApiError(422, "missing_file", "no files in the form; send them in fields named `files`")
            if len(files) > max_batch:
                raise ApiError(413, "too_many_images", f"{len(files)} images; the limit is {max_batch}")
            items = [(f"file {i + 1} ({name})", data) for i, (name, data) in enumerate(files)]
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send several images as multipart/form-data or JSON {\"images\": [...]}")
        predictions = await service.recognize(items)
        return BatchResponse(model=predictor.name,
                             predictions=[service.answer(p, image) for p in predictions])

    @app.get("/v1/health", response_model=HealthResponse, tags=["service"])
    async def health():
        return HealthResponse(status="ok", model=predictor.name, runtime=service.runtime)

    @app.get("/v1/model", response_model=ModelInfo, tags=["service"])
    async def model_info():
        return _model_info(predictor, service, __version__)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def openapi():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PixelsRequest, BatchPixelsRequest):
                doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(doc.pop("$defs", {}))
                components[model.__name__] = doc
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


_PAGE_HEADERS = {
    # The page loads nothing from anywhere but this server.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _model_info(predictor, service: _Service, version: str) -> ModelInfo:
    info = predictor.info or {}
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
    from PIL import Image

    return ModelInfo(
        name=predictor.name,
        architecture=architecture,
        parameters=metrics.get("parameters"),
        test_accuracy=float(accuracy) if accuracy is not None else None,
        dataset=config.get("dataset"),
        input=InputFormat(
            shape=[MNIST_SIDE, MNIST_SIDE],
            pixels="JSON: 28 rows of 28 numbers in [0, 255], white digit on black (MNIST)",
            uploads="any image Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP, ...) of up to "
                    f"{service.max_pixels or Image.MAX_IMAGE_PIXELS} pixels, normalized as MNIST was made",
        ),
        runtime=service.runtime,
        threshold=service.threshold,
        version=version,
        api_version=API_VERSION,
    )


# ---------------------------------------------------------------------------
# Loading, and uvicorn's factory for several worker processes


@dataclasses.dataclass
class ServeSettings:
    """What ``digits serve`` passes to each worker process (through environment variables)."""

    model: str | None = None  # a run directory; None: the bundled default model
    runtime: str = "keras"  # "keras" or "onnx"
    backend: str | None = None  # Keras backend for runtime "keras" (default JAX)
    onnx_path: str | None = None  # the exported model for runtime "onnx"
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_batch: int = DEFAULT_MAX_BATCH
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    threshold: float | None = None  # None: the model's own
    threads: int | None = None
    micro_batch: bool = False

    PREFIX = "DIGITS_SERVE_"

    def to_env(self) -> dict[str, str]:
        return {self.PREFIX + f.name.upper(): "" if (v := getattr(self, f.name)) is None else str(v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_env(cls, env=None) -> "ServeSettings":
        env = os.environ if env is None else env
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(cls.PREFIX + f.name.upper())
            if raw is None:
                continue
            default = f.default
            if raw == "":
                values[f.name] = None
            elif isinstance(default, bool):
                values[f.name] = raw == "True"
            elif f.name in ("max_upload_bytes", "max_batch", "max_pixels", "threads"):
                values[f.name] = int(raw)
            elif f.name == "threshold":
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        return cls(**values)


def load_serving_predictor(settings: ServeSettings):
    """Load the model once: Keras (on JAX unless told otherwise) or an ONNX export with ONNX Runtime."""
    if settings.runtime == "onnx":
        from digits.export import OnnxPredictor

        if settings.model is None and settings.onnx_path is None:
            raise DigitsError("--runtime onnx needs --model RUN_DIR (or an exported model)")
        if settings.model is None:
            return OnnxPredictor(settings.onnx_path, name=Path(settings.onnx_path).stem)
        return OnnxPredictor.from_run(settings.model, settings.onnx_path)
    if settings.runtime != "keras":
        raise DigitsError(f"unknown runtime {settings.runtime!r}; choose keras or onnx")
    from digits.backend import use_backend
    from digits.inference import load_predictor

    use_backend(settings.backend)  # JAX unless --backend or KERAS_BACKEND say otherwise
    return load_predictor(settings.model)


def warm_up(predictor) -> None:
    """Compile the batch shapes a server meets first (1..8 images), before the first request."""
    for n in (1, 2, 4, 8):
        predictor.probabilities(np.zeros((n, MNIST_SIDE, MNIST_SIDE), np.float32))


def app_for(settings: ServeSettings, predictor=None) -> FastAPI:
    predictor = predictor if predictor is not None else load_serving_predictor(settings)
    warm_up(predictor)
    return create_app(predictor, max_upload_bytes=settings.max_upload_bytes, max_batch=settings.max_batch,
                      max_pixels=settings.max_pixels, threshold=settings.threshold, threads=settings.threads,
                      micro_batch=settings.micro_batch)


def factory() -> FastAPI:
    """uvicorn's app factory (``digits.serving.app:factory``): each worker loads the model once."""
    return app_for(ServeSettings.from_env())
