"""The API's request and response bodies, as pydantic models: FastAPI validates and documents them from here."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from digits.datasets.arrays import MNIST_SIDE

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


class Recognized(BaseModel):
    """A :class:`digits.inference.Prediction`'s fields: what the model says about one digit."""

    label: int | None = Field(description="the digit, or null when there is no digit or the model is unsure")
    confidence: float = Field(description="the highest probability (0 when there was nothing to classify)")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="one per digit 0..9")
    reason: str | None = Field(None, description="why the label is null; absent otherwise")


class PredictionResponse(Recognized):
    """What the model says about one image."""

    model: str = Field(description="the id of the model that answered")
    image: list[list[int]] | None = Field(
        None, description="with ?image=true: the 28×28 image the model saw, 0..255, white on black")


class BatchResponse(BaseModel):
    model: str
    predictions: list[PredictionResponse] = Field(description="one per image, in the order sent")


Box = Annotated[list[int], Field(min_length=4, max_length=4,
                                 description="[x0, y0, x1, y1] in the picture's pixels (x1, y1 exclusive)")]


class ReadDigit(Recognized):
    """One digit of a number read from a picture, and where it was."""

    box: Box


class ReadRow(BaseModel):
    """One line of digits, left to right."""

    number: str = Field(description="the row's digits, `?` for each one the model is unsure of")
    complete: bool = Field(description="false when a digit of this row is unsure")
    box: Box
    digits: list[ReadDigit]


class ReadResponse(BaseModel):
    """The number in a picture, as :func:`digits.inference.read_number` reads it."""

    number: str | None = Field(description="the rows' numbers, top to bottom, joined by a newline; "
                                           "`?` for an unsure digit; null when no digit was found")
    complete: bool = Field(description="false when a digit was unsure or none was found")
    rows: list[ReadRow] = Field(description="the lines of digits, top to bottom")
    digits: list[ReadDigit] = Field(description="every digit, row after row, each left to right")
    reason: str | None = Field(None, description="why no number was read; absent otherwise")
    model: str = Field(description="the id of the model that answered")


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
