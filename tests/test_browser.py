"""The drawing page and the API docs as a person uses them: the real server, headless Chromium, mouse strokes on the canvas.

Needs Debian's chromium (``apt-get install chromium``) and the ``playwright``
Python package (its own browser download is not used).  Without them the
tests are skipped locally and fail on CI.  The screenshot goes to
``$DIGITS_SCREENSHOT_DIR`` (default: the test's temporary folder).
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from helpers import CHROMIUM, CHROMIUM_ARGS, free_port, require_browser

START_TIMEOUT = 90  # seconds for the server to answer /v1/health
ANSWER_TIMEOUT = 15_000  # milliseconds for the page to show a prediction


@pytest.fixture(scope="module")
def run(tiny_mlp_run):
    return tiny_mlp_run  # `digits serve` (keras runtime) only reads it


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    """`digits serve` in its own process on a free loopback port; always stopped afterwards."""
    require_browser()
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digits.cli", "serve", "--model", str(run.path), "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"digits serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"digits serve did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    assert "Traceback" not in log.read_text()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 640})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    outside = []
    page.on("request", lambda r: r.url.startswith(server) or r.url.startswith("data:") or r.url.startswith("blob:")
            or outside.append(r.url))
    page.goto(server + "/")
    page.locator("#model").filter(has_text="Model mlp").wait_for()
    yield page
    context.close()
    assert not errors, errors
    assert not outside, f"the page loaded from outside the server: {outside}"


def _draw(page, strokes):
    """Draw strokes given as lists of (x, y) in [0, 1] canvas fractions, with real mouse events."""
    box = page.locator("#canvas").bounding_box()

    def at(fx, fy):
        return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy

    for points in strokes:
        page.mouse.move(*at(*points[0]))
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for i in range(1, 9):
                page.mouse.move(*at(x0 + (x1 - x0) * i / 8, y0 + (y1 - y0) * i / 8))
        page.mouse.up()


def _answer(page) -> tuple[str, str]:
    """Wait until the page has the answer for the finished drawing, and read it."""
    page.locator('#result[data-state="done"], #result[data-state="unsure"]').wait_for(timeout=ANSWER_TIMEOUT)
    return page.locator("#label").inner_text(), page.locator("#confidence").inner_text()


def _screenshot_dir(tmp_path) -> Path:
    folder = Path(os.environ.get("DIGITS_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


ONE = [[(0.50, 0.15), (0.52, 0.85)]]
SEVEN = [[(0.25, 0.20), (0.75, 0.20), (0.45, 0.85)]]
ZERO = [[(0.5 + 0.22 * math.sin(2 * math.pi * t / 24), 0.5 - 0.32 * math.cos(2 * math.pi * t / 24))
         for t in range(25)]]


def test_drawing_a_one(page, tmp_path):
    _draw(page, ONE)
    label, confidence = _answer(page)
    assert label == "1", confidence
    assert confidence.endswith("% sure")
    # The ten bars, the top one for 1, and the 28×28 image beside the canvas.
    bars = page.locator("#bars li")
    assert bars.count() == 10
    assert page.locator("#bars li.top").get_attribute("data-digit") == "1"
    widths = [float(bars.nth(d).locator(".fill").get_attribute("style").split(":")[1].strip(" %;"))
              for d in range(10)]
    assert widths[1] == max(widths) and abs(sum(widths) - 100) < 1
    seen = page.locator("#seen").screenshot()
    assert np.asarray(Image.open(io.BytesIO(seen)).convert("L")).max() > 200  # the digit is there, white
    path = _screenshot_dir(tmp_path) / "digits-page.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")


@pytest.mark.parametrize("name,strokes,digit", [("seven", SEVEN, "7"), ("zero", ZERO, "0")])
def test_drawing_other_digits_then_clearing(page, name, strokes, digit):
    _draw(page, strokes)
    assert _answer(page)[0] == digit
    page.click("#clear")
    assert page.locator("#label").inner_text() == "–"
    assert page.locator("#result").get_attribute("data-state") == "idle"
    _draw(page, ONE)  # a fresh drawing after Clear is not mixed with the old one
    assert _answer(page)[0] == "1"


def test_uploading_a_photo(page, server, mnist_data, tmp_path):
    """The upload button sends the file itself; the page shows the same answer as the API gives."""
    from digits.testing import render_like_user

    photo = render_like_user(mnist_data.x_test[0], np.random.default_rng(0))  # a 7 on paper, as phones take them
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=90)
    expected = httpx.post(f"{server}/v1/predict", files={"file": ("photo.jpg", path.read_bytes())}).json()
    page.set_input_files("#upload", str(path))
    label, _ = _answer(page)
    assert label == ("?" if expected["label"] is None else str(expected["label"]))
    assert expected["label"] == 7
    assert page.locator("#photo").is_visible()
    page.click("#clear")
    assert not page.locator("#photo").is_visible() and page.locator("#label").inner_text() == "–"


def _number(page) -> tuple[str, list[tuple[str, float]]]:
    """Wait for the number Read number asked for, and read it: the number and each digit's (label, percent)."""
    page.locator('#number-result[data-state="done"], #number-result[data-state="incomplete"]').wait_for(
        timeout=ANSWER_TIMEOUT)
    digits = page.locator("#number-digits .digit")
    shown = [(digits.nth(i).locator(".digit-label").inner_text(),
              float(digits.nth(i).locator(".digit-pct").inner_text().rstrip("%"))) for i in range(digits.count())]
    return page.locator("#number").inner_text(), shown


def _assert_shows(page, answer: dict) -> None:
    """The page shows the API's number, and each of its digits with the API's confidence (to 0.1%)."""
    number, shown = _number(page)
    assert number == answer["number"]
    assert [label for label, _ in shown] == ["?" if d["label"] is None else str(d["label"]) for d in answer["digits"]]
    for (_, percent), d in zip(shown, answer["digits"]):
        assert abs(percent - 100 * d["confidence"]) <= 0.051


def test_reading_an_uploaded_number(page, server, mnist_data, tmp_path):
    """Read number sends the uploaded photo to /v1/read; the page shows what the API answers."""
    digits = [mnist_data.x_test[i] for i in (1, 2, 3)]  # 2, 1, 0
    row = np.hstack([np.pad(255 - d, 14, constant_values=255) for d in digits])  # dark on white, paper between
    path = tmp_path / "number.png"
    Image.fromarray(row).resize((row.shape[1] * 4, row.shape[0] * 4), Image.Resampling.BICUBIC).save(path)
    expected = httpx.post(f"{server}/v1/read", files={"file": ("number.png", path.read_bytes())}).json()
    assert len(expected["digits"]) >= 3  # a number, not one digit
    page.set_input_files("#upload", str(path))
    _answer(page)
    page.click("#read")
    _assert_shows(page, expected)
    page.click("#clear")
    assert not page.locator("#number-result").is_visible()


def test_reading_a_drawn_number(page, server, tmp_path):
    """A 1 and a 7 drawn side by side: the page shows the number the API reads in the same drawing."""
    import base64

    one = [[(0.22, 0.25), (0.23, 0.75)]]
    seven = [[(0.50, 0.28), (0.82, 0.28), (0.62, 0.75)]]
    _draw(page, one + seven)
    _answer(page)
    page.click("#read")
    drawing = page.evaluate("() => document.getElementById('canvas').toDataURL('image/png')")
    png = base64.b64decode(drawing.split(",", 1)[1])
    expected = httpx.post(f"{server}/v1/read", files={"file": ("drawing.png", png)}).json()
    assert len(expected["digits"]) >= 2  # a number, not one digit
    _assert_shows(page, expected)
    path = _screenshot_dir(tmp_path) / "digits-page-number.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    _draw(page, ONE)  # drawing more makes the number read stale until Read number is pressed again
    assert page.locator("#number-result").get_attribute("data-state") == "stale"


def test_drawing_with_a_finger(browser, server, tmp_path):
    """A phone: touch events (through Chromium's DevTools protocol) draw a 7 on the small layout."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(server + "/")
        box = page.locator("#canvas").bounding_box()
        cdp = context.new_cdp_session(page)

        def touch(kind, points):
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
                {"x": box["x"] + box["width"] * fx, "y": box["y"] + box["height"] * fy} for fx, fy in points]})

        (stroke,) = SEVEN
        touch("touchStart", stroke[:1])
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            for i in range(1, 9):
                touch("touchMove", [(x0 + (x1 - x0) * i / 8, y0 + (y1 - y0) * i / 8)])
        touch("touchEnd", [])
        assert _answer(page)[0] == "7"
        page.screenshot(path=str(_screenshot_dir(tmp_path) / "digits-page-phone.png"), full_page=True)
    finally:
        context.close()


@pytest.mark.parametrize("path,selector", [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")])
def test_api_docs_render_with_nothing_from_outside(browser, server, path, selector):
    """/docs and /redoc show the API with every request outside the server refused: offline, they are not blank."""
    context = browser.new_context()
    page = context.new_page()
    outside = []

    def only_the_server(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.goto(server + path)
    title = page.locator(selector).filter(has_text="Digits").first
    title.wait_for(timeout=ANSWER_TIMEOUT)
    context.close()
    assert not outside, f"{path} asked for {outside}"
