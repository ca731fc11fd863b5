"""The HTTP API, through FastAPI's test client: every route, every error, the same answers as `digits predict`."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digits.errors import DigitsError
from digits.vision import load_image
from digits.inference import Predictor, read_number, recognize
from digits.serving import ServeSettings, create_app
from digits.serving.app import STATIC_DIR, factory
from digits.serving.batching import BatchingPredictor
from helpers import free_port, png_bomb


TINY_THRESHOLD = 0.5


@pytest.fixture(scope="module")
def run(tiny_mlp_run):
    return tiny_mlp_run


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor.from_run(run)


@pytest.fixture(scope="module")
def client(predictor):
    # The tiny test model is often less than 80% sure (the default threshold); 0.5 keeps labels.
    app = create_app(predictor, max_upload_bytes=200_000, max_batch=4, threshold=TINY_THRESHOLD)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def mnist(mnist_data):
    return mnist_data.x_test[:40], mnist_data.y_test[:40]


def png(array: np.ndarray, fmt: str = "PNG", invert: bool = True) -> bytes:
    """An MNIST digit as an image file: dark ink on white paper (as people send) unless invert=False."""
    buf = io.BytesIO()
    img = Image.fromarray(255 - array if invert else array)
    if fmt == "JPEG":
        img = img.resize((112, 112))
    img.save(buf, fmt)
    return buf.getvalue()


def assert_error(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == error, body
    assert isinstance(body["detail"], str) and body["detail"] and "\n" not in body["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


# ---------------------------------------------------------------------------
# Routes


def test_health(client):
    r = client.get("/v1/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": "mlp", "runtime": "keras (jax)"}


def test_model_info(client, run):
    info = client.get("/v1/model").json()
    assert info["name"] == "mlp"
    assert info["architecture"].startswith("mlp: Flatten")
    assert info["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    assert info["parameters"] == run.metrics["parameters"]
    assert info["input"]["shape"] == [28, 28]
    assert info["version"] and info["api_version"] == "v1" and info["threshold"] == 0.5


def test_upload_answers_exactly_what_predict_answers(client, predictor, mnist, tmp_path):
    """The same file through the API and through load_image + recognize (digits predict's path)."""
    images, labels = mnist
    right = 0
    for i, (x, y) in enumerate(zip(images[:12], labels[:12])):
        data = png(x)
        path = tmp_path / f"{i}.png"
        path.write_bytes(data)
        (expected,) = recognize(predictor, [load_image(path)], threshold=TINY_THRESHOLD)
        r = client.post("/v1/predict", files={"file": (path.name, data, "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body == {**expected.to_dict(), "model": "mlp"}
        assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-3
        right += body["label"] == y
    assert right >= 10


def test_pixels_json(client, predictor, mnist):
    images, labels = mnist
    right = 0
    for x, y in zip(images[:12], labels[:12]):
        r = client.post("/v1/predict", json={"pixels": x.tolist()})
        assert r.status_code == 200, r.text
        (expected,) = recognize(predictor, [x / np.float32(255)], threshold=TINY_THRESHOLD)
        assert r.json() == {**expected.to_dict(), "model": "mlp"}
        right += r.json()["label"] == y
    assert right >= 10
    # Floats are fine too.
    r = client.post("/v1/predict", json={"pixels": (images[0] * 1.0).tolist()})
    assert r.json()["label"] == int(labels[0])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"])
def test_every_format_predict_reads(client, mnist, fmt):
    images, labels = mnist
    r = client.post("/v1/predict", files={"file": ("digit", png(images[0], fmt))})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == int(labels[0])


def test_content_is_decoded_not_trusted(client, mnist):
    """A PNG declared as text, or sent as raw bytes of any type, is still a PNG."""
    images, labels = mnist
    data = png(images[1])
    for response in (
        client.post("/v1/predict", files={"file": ("notes.txt", data, "text/plain")}),
        client.post("/v1/predict", content=data, headers={"content-type": "application/octet-stream"}),
        client.post("/v1/predict", content=data, headers={"content-type": "text/plain"}),
        client.post("/v1/predict", content=data),
    ):
        assert response.status_code == 200, response.text
        assert response.json()["label"] == int(labels[1])


def test_image_the_model_saw(client, mnist):
    images, _ = mnist
    r = client.post("/v1/predict?image=true", files={"file": ("d.png", png(images[2]))})
    body = r.json()
    seen = np.array(body["image"])
    assert seen.shape == (28, 28) and seen.min() >= 0 and seen.max() == 255
    # Close to the MNIST original: the page shows what the model really got.
    assert np.abs(seen.astype(float) - images[2]).mean() < 8
    # Sending it back as pixels gives the same answer.
    again = client.post("/v1/predict", json={"pixels": body["image"]}).json()
    assert again["label"] == body["label"]
    assert "image" not in client.post("/v1/predict", files={"file": ("d.png", png(images[2]))}).json()


def test_blank_picture_is_null_with_a_reason(client):
    blank = io.BytesIO()
    Image.new("L", (64, 64), 255).save(blank, "PNG")
    r = client.post("/v1/predict?image=true", files={"file": ("blank.png", blank.getvalue())})
    assert r.status_code == 200
    body = r.json()
    assert body["label"] is None and body["confidence"] == 0 and body["reason"] == "no ink found"
    assert "image" not in body
    r = client.post("/v1/predict", json={"pixels": [[0] * 28] * 28})
    assert r.json()["label"] is None and r.json()["reason"] == "no ink found"


def test_unsure_is_null_with_a_reason(predictor, mnist):
    images, _ = mnist
    with TestClient(create_app(predictor, threshold=1.0)) as c:
        body = c.post("/v1/predict", json={"pixels": images[0].tolist()}).json()
    assert body["label"] is None and body["reason"].startswith("unsure") and body["confidence"] > 0


def test_batch_multipart_answers_in_order(client, mnist):
    images, labels = mnist
    order = [3, 0, 2, 1]
    files = [("files", (f"{i}.png", png(images[i]))) for i in order]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mlp" and len(body["predictions"]) == 4
    singles = [client.post("/v1/predict", files={"file": ("x.png", png(images[i]))}).json() for i in order]
    assert body["predictions"] == singles
    # `file` works as the field name too, and a blank one gets null in its place.
    blank = io.BytesIO()
    Image.new("L", (30, 30), 0).save(blank, "PNG")
    r = client.post("/v1/predict/batch?image=true",
                    files=[("file", ("a.png", png(images[0]))), ("file", ("b.png", blank.getvalue()))])
    first, second = r.json()["predictions"]
    assert first["label"] == int(labels[0]) and len(first["image"]) == 28
    assert second["label"] is None and second["reason"] == "no ink found"


def test_batch_json(client, mnist):
    images, labels = mnist
    r = client.post("/v1/predict/batch", json={"images": [{"pixels": x.tolist()} for x in images[:4]]})
    assert r.status_code == 200, r.text
    got = [p["label"] for p in r.json()["predictions"]]
    single = [client.post("/v1/predict", json={"pixels": x.tolist()}).json()["label"] for x in images[:4]]
    assert got == single


def number_png(digits: list[np.ndarray]) -> bytes:
    """MNIST digits, three times their size, dark on white paper side by side: a handwritten number."""
    side, step = 84, 100
    sheet = np.full((140, 40 + step * len(digits)), 255, np.uint8)
    for k, digit in enumerate(digits):
        big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
        region = sheet[28: 28 + side, 20 + step * k: 20 + step * k + side]
        np.minimum(region, 255 - big, out=region)
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("picks", [[0, 1, 2], [3, 4, 5, 6]])
def test_read_answers_exactly_what_read_number_answers(client, predictor, mnist, tmp_path, picks):
    """A picture of a number, uploaded or sent raw, gets read_number's own answer and the model's name."""
    images, _ = mnist
    data = number_png([images[i] for i in picks])
    path = tmp_path / "number.png"
    path.write_bytes(data)
    expected = {**read_number(predictor, load_image(path), threshold=TINY_THRESHOLD), "model": "mlp"}
    for response in (client.post("/v1/read", files={"file": ("number.png", data, "image/png")}),
                     client.post("/v1/read", content=data, headers={"content-type": "application/octet-stream"})):
        assert response.status_code == 200, response.text
        assert response.json() == expected
    body = response.json()
    # Digits boxed where they were pasted, left to right, every MNIST image read.  (Not "one digit
    # per image": whether a wide digit is cut in two is the model's call, and this one is tiny.)
    slots = []
    for digit in body["digits"]:
        x0, y0, x1, y1 = digit["box"]
        slot = (x0 - 20) // 100
        assert 20 + 100 * slot <= x0 < x1 <= 20 + 100 * slot + 84 and 28 <= y0 < y1 <= 28 + 84
        slots.append(slot)
    assert slots == sorted(slots) and set(slots) == set(range(len(picks)))
    assert body["number"] == "".join("?" if d["label"] is None else str(d["label"]) for d in body["digits"])
    assert body["complete"] == ("?" not in body["number"])
    (row,) = body["rows"]
    assert row["number"] == body["number"] and row["digits"] == body["digits"]


def test_read_several_rows(client, predictor, mnist):
    """Two lines of digits: one row each, top to bottom, the number's lines joined by a newline."""
    images, _ = mnist
    top, bottom = (np.asarray(Image.open(io.BytesIO(number_png(list(images[i: i + 3]))))) for i in (0, 3))
    buf = io.BytesIO()
    Image.fromarray(np.vstack([top, bottom])).save(buf, "PNG")
    expected = {**read_number(predictor, Image.open(io.BytesIO(buf.getvalue())), threshold=TINY_THRESHOLD),
                "model": "mlp"}
    body = client.post("/v1/read", files={"file": ("rows.png", buf.getvalue())}).json()
    assert body == expected
    assert len(body["rows"]) == 2 and body["rows"][0]["box"][3] <= body["rows"][1]["box"][1]
    assert body["number"] == "\n".join(row["number"] for row in body["rows"])


def test_read_blank_and_unsure(client, predictor, mnist):
    blank = io.BytesIO()
    Image.new("L", (200, 100), 255).save(blank, "PNG")
    body = client.post("/v1/read", files={"file": ("blank.png", blank.getvalue())}).json()
    assert body["number"] is None and body["complete"] is False and body["digits"] == body["rows"] == []
    assert body["reason"] and body["model"] == "mlp"
    images, _ = mnist
    with TestClient(create_app(predictor, threshold=1.0)) as c:  # every digit is unsure
        body = c.post("/v1/read", files={"file": ("n.png", number_png(list(images[:3])))}).json()
    assert set(body["number"]) == {"?"} and body["complete"] is False
    assert all(d["label"] is None and d["reason"].startswith("unsure") for d in body["digits"])


def test_read_refuses_json_and_several_files(client, mnist):
    images, _ = mnist
    assert_error(client.post("/v1/read", json={"pixels": _pixels()}), 415, "unsupported_media_type")
    two = [("file", ("a.png", png(images[0]))), ("file", ("b.png", png(images[1])))]
    assert_error(client.post("/v1/read", files=two), 422, "too_many_files")
    assert_error(client.post("/v1/read", files={"picture": ("a.png", png(images[0]))}), 422, "missing_file")


# ---------------------------------------------------------------------------
# Errors: each a 4xx JSON {"error", "detail"}, never a traceback


def _pixels(rows=28, cols=28, value=0):
    return [[value] * cols for _ in range(rows)]


def _nested(depth: int) -> str:
    return '{"pixels": ' + "[" * depth + "]" * depth + "}"


def _with_nan(text: str) -> str:
    return json.dumps({"pixels": _pixels(value=1)}).replace("1", text, 1)


JSON = {"content-type": "application/json"}

BAD_JSON = {
    "27 rows": (json.dumps({"pixels": _pixels(rows=27)}), 422, "invalid_pixels"),
    "29 columns": (json.dumps({"pixels": _pixels(cols=29)}), 422, "invalid_pixels"),
    "flat 784": (json.dumps({"pixels": [0] * 784}), 422, "invalid_pixels"),
    "3-d": (json.dumps({"pixels": [_pixels()]}), 422, "invalid_pixels"),
    "NaN": (_with_nan("NaN"), 422, "invalid_pixels"),
    "Infinity": (_with_nan("Infinity"), 422, "invalid_pixels"),
    "1e999": (_with_nan("1e999"), 422, "invalid_pixels"),
    "string NaN": (_with_nan('"NaN"'), 422, "invalid_pixels"),
    "negative": (json.dumps({"pixels": _pixels(value=-1)}), 422, "invalid_pixels"),
    "over 255": (json.dumps({"pixels": _pixels(value=256)}), 422, "invalid_pixels"),
    "booleans": (json.dumps({"pixels": _pixels(value=True)}), 422, "invalid_pixels"),
    "nulls": (json.dumps({"pixels": _pixels(value=None)}), 422, "invalid_pixels"),
    "no pixels": (json.dumps({"image": _pixels()}), 422, "invalid_pixels"),
    "extra field": (json.dumps({"pixels": _pixels(), "x": 1}), 422, "invalid_pixels"),
    "a list": (json.dumps([1, 2]), 422, "invalid_pixels"),
    "not JSON": ("{pixels: [", 400, "invalid_json"),
    "deeply nested": (_nested(100_000)[:190_000], 400, "invalid_json"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_bad_json_pixels(client, case):
    body, status, error = BAD_JSON[case]
    assert_error(client.post("/v1/predict", content=body, headers=JSON), status, error)


def test_nan_detail_names_the_place(client):
    body = assert_error(client.post("/v1/predict", content=_with_nan("NaN"), headers=JSON), 422, "invalid_pixels")
    assert body["detail"].startswith("pixels[0][0]: ") and "finite" in body["detail"]


def _truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    return buf.getvalue()[:600]


BAD_UPLOADS = {
    "text": (b"this is not a picture\n" * 10, 415, "not_an_image"),
    "random bytes": (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), 415, "not_an_image"),
    "truncated png": (_truncated_png(), 422, "corrupt_image"),
    "decompression bomb": (png_bomb(100_000, 100_000), 413, "image_too_large"),
    "over the server's pixel limit": (png_bomb(6_000, 6_000), 413, "image_too_large"),
    "empty file": (b"", 400, "empty_body"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
@pytest.mark.parametrize("url", ["/v1/predict", "/v1/read"])
def test_bad_uploads(client, case, url):
    data, status, error = BAD_UPLOADS[case]
    assert_error(client.post(url, files={"file": ("x.png", data, "image/png")}), status, error)
    if data:  # the same bytes as a raw body
        assert_error(client.post(url, content=data, headers={"content-type": "image/png"}), status, error)


def test_bad_upload_in_a_batch_names_it(client, mnist):
    images, _ = mnist
    files = [("files", ("good.png", png(images[0]))), ("files", ("bad.png", b"not an image at all"))]
    body = assert_error(client.post("/v1/predict/batch", files=files), 415, "not_an_image")
    assert body["detail"].startswith("file 2 (bad.png):")


def test_server_pixel_limit(predictor, mnist):
    images, _ = mnist
    with TestClient(create_app(predictor, max_pixels=1000)) as c:
        big = png(np.kron(images[0], np.ones((2, 2), np.uint8)))  # 56×56 = 3136 pixels
        assert_error(c.post("/v1/predict", files={"file": ("big.png", big)}), 413, "image_too_large")
        assert_error(c.post("/v1/read", files={"file": ("big.png", big)}), 413, "image_too_large")
        assert c.post("/v1/predict", files={"file": ("ok.png", png(images[0]))}).status_code == 200


def test_empty_body(client):
    for url in ("/v1/predict", "/v1/predict/batch", "/v1/read"):
        assert_error(client.post(url), 400, "empty_body")
        assert_error(client.post(url, content=b"", headers=JSON), 400, "empty_body")


def test_oversized_request_by_header(client):
    for url in ("/v1/predict", "/v1/read"):
        body = assert_error(client.post(url, content=b"x" * 200_001), 413, "payload_too_large")
        assert "200001 bytes" in body["detail"]
    big = [("files", ("a.png", b"\0" * 120_000)), ("files", ("b.png", b"\0" * 120_000))]
    assert_error(client.post("/v1/predict/batch", files=big), 413, "payload_too_large")


def test_oversized_request_without_length(client):
    """Chunked bodies carry no Content-Length: the bytes actually read are counted."""

    def chunks():
        for _ in range(30):
            yield b"\0" * 10_000

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "image/png"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "payload_too_large")


def test_bad_content_length(client):
    assert_error(client.post("/v1/predict", content=b"abc", headers={"content-length": "lots"}), 400, "bad_request")


def test_batch_limits(client, mnist):
    images, _ = mnist
    five = [{"pixels": x.tolist()} for x in images[:5]]
    assert_error(client.post("/v1/predict/batch", json={"images": five}), 413, "too_many_images")
    files = [("files", (f"{i}.png", png(images[i]))) for i in range(5)]
    assert_error(client.post("/v1/predict/batch", files=files), 413, "too_many_images")
    many = [("files", (f"{i}.png", b"x")) for i in range(40)]
    assert_error(client.post("/v1/predict/batch", files=many), 413, "too_many_images")
    assert_error(client.post("/v1/predict/batch", json={"images": []}), 422, "invalid_pixels")
    assert_error(client.post("/v1/predict/batch", content=png(images[0]), headers={"content-type": "image/png"}),
                 415, "unsupported_media_type")


def test_multipart_mistakes(client, mnist):
    images, _ = mnist
    assert_error(client.post("/v1/predict", files={"picture": ("a.png", png(images[0]))}), 422, "missing_file")
    assert_error(client.post("/v1/predict", data={"file": "not a file"}, files={"other": ("x", b"1")}),
                 422, "not_a_file")
    two = [("file", ("a.png", png(images[0]))), ("file", ("b.png", png(images[1])))]
    assert_error(client.post("/v1/predict", files=two), 422, "too_many_files")
    assert_error(client.post("/v1/predict", content=b"--x\r\nbroken",
                             headers={"content-type": "multipart/form-data"}), 400, "bad_multipart")
    assert_error(client.post("/v1/predict/batch", files={"nothing": ("a.png", b"x")}), 422, "missing_file")


def test_http_errors_are_json(client):
    assert_error(client.get("/v1/nowhere"), 404, "not_found")
    assert_error(client.get("/v1/predict"), 405, "method_not_allowed")
    assert_error(client.post("/v1/predict?image=maybe", json={"pixels": _pixels()}), 422, "validation_error")


class _Broken:
    name, info, runtime, threshold = "broken", {}, "test", 0.8

    def probabilities(self, images):
        raise RuntimeError("secret internal state /etc/passwd")


def test_unexpected_errors_are_500_without_details(caplog, mnist):
    images, _ = mnist
    with TestClient(create_app(_Broken()), raise_server_exceptions=False) as c:
        with caplog.at_level(logging.ERROR, logger="digits.serving"):
            r = c.post("/v1/predict", json={"pixels": images[0].tolist()})
        assert_error(r, 500, "internal_error")
        assert "secret" not in r.text and "RuntimeError" not in r.text
        assert "secret internal state" in caplog.text  # the server's log has it
        assert c.get("/v1/health").status_code == 200  # and the app goes on


# ---------------------------------------------------------------------------
# Concurrency and batching


def test_concurrent_requests_get_their_own_answers(client, mnist):
    images, labels = mnist
    expected = {i: client.post("/v1/predict", json={"pixels": images[i].tolist()}).json() for i in range(16)}

    def ask(i):
        return i, client.post("/v1/predict", json={"pixels": images[i].tolist()}).json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, [i % 16 for i in range(64)]))
    assert all(body == expected[i] for i, body in answers)


class _Slow:
    """A predictor that takes its time, so that concurrent calls queue up."""

    name, info = "slow", {}

    def __init__(self):
        self.sizes = []

    def probabilities(self, images):
        x = np.asarray(images, np.float32)
        if (x < 0).any():  # passes the batching predictor's own checks, fails in the model's call
            raise DigitsError("images contain negative values")
        self.sizes.append(len(x))
        time.sleep(0.02)
        return np.repeat(x.reshape(len(x), -1)[:, :10], 1, axis=0)


def test_batching_predictor_shares_forward_passes():
    slow = _Slow()
    batching = BatchingPredictor(slow, max_batch=64)
    inputs = [np.full((1, 28, 28), i / 100, np.float32) for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        outputs = list(pool.map(batching.probabilities, inputs))
    for i, out in enumerate(outputs):
        np.testing.assert_allclose(out, np.full((1, 10), i / 100, np.float32))
    assert batching.calls == 24 and sum(slow.sizes) == 24
    assert batching.batches < 24 and max(slow.sizes) > 1  # requests went through together


def test_batching_predictor_keeps_errors_to_their_caller():
    batching = BatchingPredictor(_Slow())
    bad = np.full((1, 28, 28), -1, np.float32)
    barrier = threading.Barrier(6)

    def call(x):
        barrier.wait()
        try:
            return batching.probabilities(x)
        except DigitsError as e:
            return e

    inputs = [np.zeros((2, 28, 28), np.float32)] * 5 + [bad]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, inputs))
    assert all(isinstance(r, np.ndarray) and r.shape == (2, 10) for r in results[:5])
    assert isinstance(results[5], DigitsError) and "negative" in str(results[5])


def test_micro_batched_app_answers_the_same(predictor, client, mnist):
    images, _ = mnist
    with TestClient(create_app(predictor, micro_batch=True, threshold=TINY_THRESHOLD)) as c:
        def ask(i):
            return c.post("/v1/predict", json={"pixels": images[i].tolist()}).json()

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(ask, range(16)))
    expected = [client.post("/v1/predict", json={"pixels": images[i].tolist()}).json() for i in range(16)]
    # A batch of 16 and 16 batches of one may differ in the last bit of a float, so not `==` on the floats.
    for g, e in zip(got, expected):
        assert {k: v for k, v in g.items() if k not in ("probabilities", "confidence")} == \
            {k: v for k, v in e.items() if k not in ("probabilities", "confidence")}
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)
        assert g["confidence"] == pytest.approx(e["confidence"], abs=1e-5)


# ---------------------------------------------------------------------------
# Schema, docs, page


def test_openapi_schema_and_docs(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/read", "/v1/health", "/v1/model"} <= set(schema["paths"])
    predict = schema["paths"]["/v1/predict"]["post"]
    content = predict["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
    components = schema["components"]["schemas"]
    pixels = components["PixelsRequest"]["properties"]["pixels"]
    assert pixels["minItems"] == pixels["maxItems"] == 28
    assert pixels["items"]["items"]["maximum"] == 255
    assert components["BatchPixelsRequest"]["properties"]["images"]["items"]["$ref"].endswith("PixelsRequest")
    assert predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictionResponse")
    assert predict["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert set(components["PredictionResponse"]["properties"]) >= {"label", "confidence", "probabilities", "model"}
    read = schema["paths"]["/v1/read"]["post"]
    assert {"multipart/form-data", "image/*"} == set(read["requestBody"]["content"])
    assert read["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("ReadResponse")
    assert set(components["ReadResponse"]["properties"]) >= {"number", "complete", "rows", "digits", "model"}
    assert set(components["ReadRow"]["properties"]) == {"number", "complete", "box", "digits"}
    assert set(components["ReadDigit"]["properties"]) >= {"label", "confidence", "box"}
    for url in ("/docs", "/redoc"):
        r = client.get(url)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]


def test_page_and_its_files(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert '<canvas id="canvas"' in r.text and 'id="upload"' in r.text and 'id="clear"' in r.text
    assert 'id="read"' in r.text and 'id="number-result"' in r.text
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        f = client.get(f"/static/{name}")
        assert f.status_code == 200 and kind in f.headers["content-type"]
    assert_error(client.get("/static/nope.js"), 404, "not_found")


def test_page_loads_nothing_from_elsewhere():
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


# ---------------------------------------------------------------------------
# Settings, factory and the CLI


def test_settings_round_trip_through_the_environment(run):
    settings = ServeSettings(model=str(run.path), max_upload_bytes=1234, max_batch=3, max_pixels=None,
                             threshold=0.7, micro_batch=True)
    assert ServeSettings.from_env(settings.to_env()) == settings
    assert ServeSettings.from_env({}) == ServeSettings()


def test_factory_builds_the_app_from_the_environment(run, monkeypatch, mnist):
    images, labels = mnist
    for key, value in ServeSettings(model=str(run.path), max_batch=2).to_env().items():
        monkeypatch.setenv(key, value)
    with TestClient(factory()) as c:
        assert c.get("/v1/health").json()["model"] == "mlp"
        assert c.post("/v1/predict", json={"pixels": images[0].tolist()}).json()["label"] == int(labels[0])
        three = [{"pixels": x.tolist()} for x in images[:3]]
        assert_error(c.post("/v1/predict/batch", json={"images": three}), 413, "too_many_images")


def test_cli_serve_starts_uvicorn(run, monkeypatch):
    import uvicorn

    from digits.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert main(["serve", "--model", str(run.path), "--port", "8123", "--max-batch", "5"]) == 0
    app, kw = calls[0]
    assert kw.items() >= {"host": "127.0.0.1", "port": 8123, "log_level": "info"}.items()
    assert app.state.service.settings.max_batch == 5
    with TestClient(app, base_url="http://127.0.0.1:8123") as c:  # the Host names the server is bound to
        assert c.get("/v1/health").json()["model"] == "mlp"


def test_serve_checks_the_run_then_starts_uvicorn(run, tmp_path, monkeypatch, capsys):
    """serve() is the library's start-up: the CLI only reads flags into ServeSettings."""
    import uvicorn

    from digits.serving import serve

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    with pytest.raises(DigitsError, match="no such run directory"):
        serve(ServeSettings(model=str(tmp_path / "missing")), host="::1", port=1, workers=1, log_level="info")
    assert not calls
    serve(ServeSettings(model=str(run.path), max_batch=3), host="::1", port=8124, workers=1, log_level="warning")
    app, kw = calls[0]
    assert kw.items() >= {"host": "::1", "port": 8124, "log_level": "warning"}.items()
    assert app.state.service.settings.max_batch == 3
    err = capsys.readouterr().err
    assert "digits serve: model mlp (keras" in err and "on http://[::1]:8124/" in err


def test_cli_serve_several_workers(run, monkeypatch):
    """Each worker loads the model through the factory; their connections keep TCP_NODELAY."""
    import socket

    import uvicorn.supervisors

    from digits.cli import main

    started = []

    class FakeSupervisor:
        def __init__(self, config, sockets):
            started.append((config, sockets[0], sockets[0].proto))

        def run(self):
            pass

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", FakeSupervisor)
    for key in ServeSettings().to_env():  # cmd_serve exports these for the workers; undone after the test
        monkeypatch.setenv(key, "")
    assert main(["serve", "--model", str(run.path), "--workers", "3", "--max-upload-mb", "2",
                 "--port", str(free_port())]) == 0
    config, sock, proto = started[0]
    assert config.app == "digits.serving.app:factory" and config.factory and config.workers == 3
    assert proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then (uvicorn issue #3149)
    assert sock.fileno() == -1  # closed after the supervisor returned
    settings = ServeSettings.from_env()
    assert settings.model == str(run.path) and settings.max_upload_bytes == 2 * 1024 * 1024


def test_cli_serve_errors_are_one_line(tmp_path, capsys):
    from digits.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("digits serve: error: ") and "\n" not in err and "no such run directory" in err
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", "99999"])
    assert exit_.value.code == 2


def test_cli_serve_without_a_model_uses_the_default_or_says_so(monkeypatch, capsys, tmp_path):
    """Without --model: the bundled model where there is one, else one line asking for --model."""
    import uvicorn

    from digits import inference
    from digits.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    if hasattr(inference, "BUNDLED_DIR"):
        monkeypatch.setattr(inference, "BUNDLED_DIR", tmp_path / "no-bundle")
    code = main(["serve", "--port", str(free_port())])  # a free port: the port is checked before the model
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("digits serve: error: ") and "--model" in err and "\n" not in err


# ---------------------------------------------------------------------------
# decode_image: load_image's checks, for bytes


@pytest.mark.parametrize("fmt,mode", [("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "P"),
                                      ("TIFF", "I;16"), ("WEBP", "RGB"), ("BMP", "1")])
def test_decode_image_equals_load_image(tmp_path, mnist, fmt, mode):
    from digits.vision import decode_image

    images, _ = mnist
    img = Image.fromarray(255 - images[5])
    if mode == "I;16":
        img = Image.fromarray((255 - images[5]).astype(np.uint16) * 257)
    elif mode == "RGBA":  # strokes on a transparent background must be ink on white paper
        img = Image.merge("RGBA", [Image.new("L", img.size, 0)] * 3 + [Image.fromarray(images[5])])
    else:
        img = img.convert(mode)
    path = tmp_path / f"d.{fmt.lower()}"
    img.save(path, fmt)
    from_bytes = decode_image(path.read_bytes(), "d")
    from_file = load_image(path)
    assert from_bytes.mode == from_file.mode == "L"
    assert np.array_equal(np.asarray(from_bytes), np.asarray(from_file))


def test_decode_image_applies_exif_orientation(mnist):
    from digits.vision import decode_image

    images, _ = mnist
    img = Image.fromarray(255 - images[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    buf = io.BytesIO()
    img.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    upright = np.asarray(decode_image(buf.getvalue()), dtype=float)
    assert np.abs(upright - (255 - images[0])).mean() < 12


@pytest.mark.parametrize("data,kind,words", [
    (b"", "empty", "is empty (0 bytes)"),
    (b"plain text, no picture", "not_image", "not an image file"),
    (_truncated_png(), "corrupt", "truncated or corrupt"),
    (png_bomb(100_000, 100_000), "too_large", "too large to decode safely"),
])
def test_decode_image_errors_name_the_upload(data, kind, words):
    from digits.vision import ImageDecodeError, decode_image

    with pytest.raises(ImageDecodeError) as err:
        decode_image(data, "photo.jpg")
    assert err.value.kind == kind and isinstance(err.value, DigitsError)
    message = str(err.value)
    assert message.startswith("photo.jpg: ") and words in message and "\n" not in message


def test_decode_image_max_pixels():
    from digits.vision import ImageDecodeError, decode_image

    buf = io.BytesIO()
    Image.new("L", (100, 100), 255).save(buf, "PNG")
    assert decode_image(buf.getvalue(), max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageDecodeError, match="over 9999 pixels") as err:
        decode_image(buf.getvalue(), max_pixels=9_999)
    assert err.value.kind == "too_large"
