"""Reading request bodies within the limits: the size cap, multipart forms, JSON pixels.

The body is read once, counted as it arrives (a missing or false
Content-Length does not get past the limit), and only then parsed, so every
route sees the same checks and the same error codes.
"""

from __future__ import annotations

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from digits.datasets.arrays import MNIST_SIDE
from digits.serving.errors import ApiError, validation_detail
from digits.serving.schemas import PixelsRequest

Upload = tuple[str, bytes]
"""An uploaded image file: the name to report it by, and its bytes (decoded in a worker thread)."""


async def read_body(request: Request, limit: int) -> bytes:
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


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def more_numbers_than(body: bytes, images: int) -> bool:
    """Whether a JSON body holds more numbers than `images` 28×28 images: known before parsing.

    Every number after the first in a valid body follows a comma, so a body
    of N images has fewer than N×784 commas.  Counting them takes
    milliseconds; validating a 10 MiB body of numbers takes seconds (pydantic
    checks a list's length only after validating its items), which must not
    be spent on what will be refused anyway.
    """
    return body.count(b",") >= images * MNIST_SIDE * MNIST_SIDE


def parse_json(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors()
        if errors and errors[0].get("type") == "json_invalid":
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {errors[0].get('msg')}") from None
        raise ApiError(422, "invalid_pixels", validation_detail(errors)) from None


def pixels_array(item: PixelsRequest) -> np.ndarray:
    # 0..255 white on black, as MNIST: to [0, 1], which to_mnist passes through nearly unchanged.
    return np.asarray(item.pixels, dtype=np.float32) / np.float32(255.0)


async def uploads(request: Request, body: bytes, names: tuple[str, ...], max_files: int) -> list[Upload]:
    """The files of a multipart body (fields in `names`, in order) as (name, bytes)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    _check_terminated(request, body)
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


def _check_terminated(request: Request, body: bytes) -> None:
    """Refuse a multipart body cut short (400): its parser would answer a form without the file."""
    from python_multipart.multipart import parse_options_header

    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if boundary and b"--" + boundary + b"--" not in body:
        raise ApiError(400, "bad_multipart",
                       "malformed multipart body: it ends before its closing boundary (the upload was cut short?)")


async def one_upload(request: Request, body: bytes, media: str, elsewhere: str) -> Upload:
    """The one image file of a request: a multipart upload in the field ``file``, or the raw body.

    Raw bytes are taken whatever type they claim: decoding decides what they
    are.  `elsewhere` says where several files should go instead.
    """
    if media != "multipart/form-data":
        return ("upload", body)
    files = await uploads(request, body, ("file",), max_files=1)
    if not files:
        raise ApiError(422, "missing_file", "no file in the form; send the image in the field `file`")
    if len(files) > 1:
        raise ApiError(422, "too_many_files", f"send one file here; several go to {elsewhere}")
    return files[0]
