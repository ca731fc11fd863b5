"""The routes: the JSON API under ``/v1`` and the drawing page.  All answers are JSON except the page.

- ``POST /v1/predict``: one image, as a multipart upload (field ``file``), as
  the raw bytes of an image file, or as JSON ``{"pixels": 28×28 numbers in
  [0, 255]}`` (white digit on black, as in MNIST).  Answers
  ``{"label", "confidence", "probabilities", "model"}`` plus ``"reason"`` when
  the label is null (no ink, or unsure) and, with ``?image=true``, the 28×28
  ``"image"`` the model saw (0..255, the same convention as ``pixels``).
- ``POST /v1/predict/batch``: several images (multipart fields ``file`` or
  ``files``, or JSON ``{"images": [{"pixels": ...}, ...]}``), answered in order.
- ``POST /v1/read``: the number in a picture (multipart field ``file``, or
  the raw bytes of an image file), as :func:`digits.inference.read_number`
  reads it: ``{"number", "complete", "rows", "digits", "model"}``.
- ``GET /v1/health`` (liveness: 200 while the process answers), ``GET /v1/ready``
  (readiness: 200 once the model is warmed up, 503 before), ``GET /v1/model``.
- ``GET /``: the page (its script and style sheet are under ``/static``).

Uploads are decoded by :func:`digits.vision.decode_image`, which shares
:func:`digits.vision.load_image`'s checks, so what a file *is* is decided by
decoding it, never by its declared type.  Each route finds the service in
``request.app.state.service`` (see :func:`digits.serving.create_app`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from digits.serving.body import is_json, media_type, more_numbers_than, one_upload, pixels_array, read_body, uploads
from digits.serving.errors import ApiError
from digits.serving.schemas import (
    BatchPixelsRequest,
    BatchResponse,
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    PixelsRequest,
    PredictionResponse,
    ReadResponse,
)
from digits.serving.service import Service

STATIC_DIR = Path(__file__).resolve().parent / "static"

_PAGE_HEADERS = {
    # The page loads nothing from anywhere but this server.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(_service)]
WithImage = Annotated[bool, Query(description="also answer the 28×28 image the model saw")]


def _body_doc(json_model: str | None, multipart_field: str, raw: bool) -> dict:
    """The request body as OpenAPI shows it: the routes read it themselves, to apply the limits first."""
    content = {
        "multipart/form-data": {"schema": {
            "type": "object",
            "properties": {multipart_field: {"type": "string", "format": "binary",
                                             "description": "an image file: PNG, JPEG, BMP, GIF, TIFF, WebP, ..."}},
            "required": [multipart_field]}},
    }
    if json_model:
        content["application/json"] = {"schema": {"$ref": f"#/components/schemas/{json_model}"}}
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

api = APIRouter(prefix="/v1")
"""The JSON API."""


@api.post("/predict", response_model=PredictionResponse, response_model_exclude_unset=True,
          responses=_ERRORS, openapi_extra=_body_doc("PixelsRequest", "file", raw=True),
          summary="Recognize one digit", tags=["predict"])
async def predict(request: Request, service: ServiceDep, image: WithImage = False):
    """One image: a multipart upload (field `file`), the raw bytes of an image file, or
    JSON `{"pixels": 28×28 numbers in [0, 255]}` (white digit on black)."""
    body = await read_body(request, service.settings.max_upload_bytes)
    media = media_type(request)
    if is_json(media):
        if more_numbers_than(body, 1):
            raise ApiError(422, "invalid_pixels", "pixels: more numbers than one 28×28 image holds")
        item = pixels_array(await service.parse(PixelsRequest, body))
    else:
        item = await one_upload(request, body, media, elsewhere="/v1/predict/batch")
    (prediction,) = await service.recognize([item])
    return service.answer(prediction, image)


@api.post("/predict/batch", response_model=BatchResponse, response_model_exclude_unset=True,
          responses=_ERRORS, openapi_extra=_body_doc("BatchPixelsRequest", "files", raw=False),
          summary="Recognize several digits", tags=["predict"])
async def predict_batch(request: Request, service: ServiceDep,
                        image: Annotated[bool, Query(description="also answer the 28×28 images the model saw")] = False):
    """Several images in one request, answered in order: multipart (fields `files` or `file`,
    repeated) or JSON `{"images": [{"pixels": ...}, ...]}`."""
    max_batch = service.settings.max_batch
    body = await read_body(request, service.settings.max_upload_bytes)
    media = media_type(request)
    if is_json(media):
        if more_numbers_than(body, max_batch):
            raise ApiError(413, "too_many_images", f"more numbers than {max_batch} images of 28×28 hold; "
                                                   f"the limit is {max_batch} images")
        parsed = await service.parse(BatchPixelsRequest, body)
        if len(parsed.images) > max_batch:
            raise ApiError(413, "too_many_images", f"{len(parsed.images)} images; the limit is {max_batch}")
        items = [pixels_array(item) for item in parsed.images]
    elif media == "multipart/form-data":
        files = await uploads(request, body, ("files", "file"), max_files=max_batch)
        if not files:
            raise ApiError(422, "missing_file", "no files in the form; send them in fields named `files`")
        if len(files) > max_batch:
            raise ApiError(413, "too_many_images", f"{len(files)} images; the limit is {max_batch}")
        items = [(f"file {i + 1} ({name})", data) for i, (name, data) in enumerate(files)]
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send several images as multipart/form-data or JSON {\"images\": [...]}")
    predictions = await service.recognize(items)
    return BatchResponse(model=service.predictor.name,
                         predictions=[service.answer(p, image) for p in predictions])


@api.post("/read", response_model=ReadResponse, response_model_exclude_unset=True,
          responses=_ERRORS, openapi_extra=_body_doc(None, "file", raw=True),
          summary="Read a number", tags=["read"])
async def read(request: Request, service: ServiceDep):
    """The number in a picture of one or more rows of digits: a multipart upload (field `file`)
    or the raw bytes of an image file.  Each row is read left to right, the rows top to bottom;
    `complete` is false when a digit was unsure (it is `?` in the number) or none was found."""
    body = await read_body(request, service.settings.max_upload_bytes)
    media = media_type(request)
    if is_json(media):
        raise ApiError(415, "unsupported_media_type",
                       "send the picture as multipart/form-data (field `file`) or as the raw bytes of an image file")
    upload = await one_upload(request, body, media, elsewhere="one request each")
    return ReadResponse(**await service.read(upload), model=service.predictor.name)


@api.get("/health", response_model=HealthResponse, tags=["service"])
async def health(service: ServiceDep):
    return HealthResponse(status="ok", model=service.predictor.name, runtime=service.runtime)


@api.get("/ready", response_model=HealthResponse, tags=["service"],
         responses={503: {"model": ErrorResponse, "description": "the model is still warming up"}})
async def ready(request: Request, service: ServiceDep):
    """200 once the model is loaded and warmed up (a readiness probe), 503 `not_ready` before."""
    if not request.app.state.ready.is_set():
        raise ApiError(503, "not_ready", "the model is warming up; ask again in a moment")
    return HealthResponse(status="ready", model=service.predictor.name, runtime=service.runtime)


@api.get("/model", response_model=ModelInfo, tags=["service"])
async def model_info(service: ServiceDep):
    return service.model_info()


page = APIRouter(include_in_schema=False)
"""The drawing page."""


@page.get("/")
async def index():
    return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)
