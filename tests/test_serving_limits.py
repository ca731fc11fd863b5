"""The server under attack and carelessness (issue 12): bounded time, memory and connections, one clear answer each.

Most tests talk to a real ``digits serve`` process on 127.0.0.1 (one for the
module, with short timeouts), through raw sockets where the point is what
arrives on the wire.  Timing assertions are generous bounds that prove
"bounded", never speed.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digits.errors import DigitsError
from digits.serving import ServeSettings, create_app
from digits.serving.limits import PixelBudget
from digits.serving.protect import default_allowed_hosts
from digits.vision import decode_image
from digits.vision.decode import decoded_size
from helpers import free_port

HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 2.0
MAX_CONNECTIONS = 12
SLACK = 4.0  # seconds past a deadline within which the connection must be closed: "bounded", not a speed test


@pytest.fixture(scope="module")
def server(tiny_mlp_run, tmp_path_factory):
    """A real `digits serve` process on loopback with short timeouts; yields (url, pid, log path)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    out = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "digits.cli", "serve", "--model", str(tiny_mlp_run.path), "--port", str(port),
         "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
         "--max-connections", str(MAX_CONNECTIONS), "--max-upload-mb", "11", "--log-level", "info"],
        stdout=out, stderr=subprocess.STDOUT)
    out.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start within 120 s:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url, proc.pid, log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(HEADER_TIMEOUT + BODY_TIMEOUT + SLACK + 5)
    return s


def _until_closed(s: socket.socket) -> tuple[float, bytes]:
    """(seconds until the server closed `s`, everything it sent)."""
    started, data = time.monotonic(), b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - started, data
        data += chunk


def _answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _json_error(raw: bytes, status: int, error: str) -> dict:
    code, headers, body = _answer(raw)
    assert code == status, raw[:500]
    assert headers["content-type"].startswith("application/json") and headers["x-content-type-options"] == "nosniff"
    answer = json.loads(body)
    assert set(answer) == {"error", "detail"} and answer["error"] == error, answer
    return answer


def _server_log(log: Path) -> str:
    return log.read_text(errors="replace")


# ---------------------------------------------------------------------------
# 7. Timeouts and the connection limit


def test_a_silent_connection_is_closed_quietly(server):
    url, _, _ = server
    with _connect(url) as s:
        seconds, data = _until_closed(s)
    assert data == b""  # nothing was asked, nothing is answered: closed like an idle keep-alive connection
    assert HEADER_TIMEOUT - 0.5 < seconds < HEADER_TIMEOUT + SLACK


def test_headers_sent_a_byte_at_a_time_are_cut_off_with_408(server):
    url, _, _ = server
    request = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
    received, sent = b"", 0
    with _connect(url) as s:
        started = time.monotonic()
        s.setblocking(False)
        try:
            for byte in request:  # one byte every 0.2 s: the whole head would take 14 s
                s.send(bytes([byte]))
                sent += 1
                time.sleep(0.2)
                try:
                    if chunk := s.recv(65536):
                        received += chunk
                        break  # the server answered, and is closing
                except BlockingIOError:
                    pass
        except OSError:  # it closed while we were sending
            pass
        s.setblocking(True)
        received += _until_closed(s)[1]
    assert sent < len(request) and time.monotonic() - started < HEADER_TIMEOUT + SLACK
    if received:  # the 408 can be lost to a reset when the client sends after the close
        detail = _json_error(received, 408, "request_timeout")["detail"]
        assert "headers did not arrive within 1 s" in detail


def test_a_body_that_never_comes_is_cut_off_with_408(server):
    url, _, log = server
    with _connect(url) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"X-Request-ID: slow-body-1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)
        seconds, raw = _until_closed(s)
    assert BODY_TIMEOUT - 0.5 < seconds < BODY_TIMEOUT + SLACK
    assert "body did not arrive within 2 s" in _json_error(raw, 408, "request_timeout")["detail"]
    # The app was reading the body: its access line says 408, what the client got (docs/serving.md, "Logs").
    deadline = time.monotonic() + SLACK
    while "request_id=slow-body-1" not in _server_log(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = [line for line in _server_log(log).splitlines() if "request_id=slow-body-1" in line
               and " digits.access: request " in line]
    assert " route=/v1/predict status=408 " in line
    assert "Traceback" not in _server_log(log)


def test_past_the_connection_limit_uvicorn_answers_503(server):
    url, _, _ = server
    held = [_connect(url) for _ in range(MAX_CONNECTIONS)]
    try:
        r = httpx.get(f"{url}/v1/health", timeout=10)
        assert r.status_code == 503  # uvicorn's own plain-text answer (docs/serving.md)
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/v1/health", timeout=10).status_code != 200:  # the held ones are gone
        assert time.monotonic() < deadline
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# 8. JSON is parsed off the event loop


def test_big_json_bodies_do_not_stall_health(server, mnist_data):
    url, _, _ = server
    batch = json.dumps({"images": [{"pixels": mnist_data.x_test[0].tolist()}] * 4000}).encode()
    rows = json.dumps({"pixels": [[0] * 28] * 120_000}).encode()
    # About 10 MiB each: a second or more each for pydantic to validate, on the event loop before.
    assert all(9 * 2**20 < len(body) < 11 * 2**20 for body in (batch, rows))
    answers, worst = [], [0.0]

    def post(path, body):
        r = httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=120)
        answers.append((r.status_code, r.json()["error"]))

    posts = [threading.Thread(target=post, args=args)
             for args in [("/v1/predict/batch", batch), ("/v1/predict", rows)] * 2]
    for t in posts:
        t.start()
    with httpx.Client(timeout=30) as client:
        while any(t.is_alive() for t in posts):
            started = time.perf_counter()
            assert client.get(f"{url}/v1/health").status_code == 200
            worst[0] = max(worst[0], time.perf_counter() - started)
            time.sleep(0.05)
    for t in posts:
        t.join()
    assert sorted(answers) == [(413, "too_many_images")] * 2 + [(422, "invalid_pixels")] * 2
    assert worst[0] < 1.0, f"/v1/health took {worst[0]:.2f} s while the bodies were read"


def test_json_within_the_limits_is_parsed_as_before(tiny_mlp_run, mnist_data):
    from digits.inference import Predictor
    from digits.serving.body import more_numbers_than

    images = [{"pixels": x.tolist()} for x in mnist_data.x_test[:3]]
    one = json.dumps(images[0]).encode()
    assert not more_numbers_than(one, 1) and more_numbers_than(json.dumps({"images": images}).encode(), 2)
    with TestClient(create_app(Predictor.from_run(tiny_mlp_run), max_batch=3)) as c:
        assert c.post("/v1/predict", content=one, headers={"content-type": "application/json"}).status_code == 200
        assert len(c.post("/v1/predict/batch", json={"images": images}).json()["predictions"]) == 3
        r = c.post("/v1/predict/batch", json={"images": images * 2})
        assert r.status_code == 413 and r.json()["error"] == "too_many_images"


# ---------------------------------------------------------------------------
# 9. A client that disconnects mid-body is not an error


def test_a_disconnect_mid_body_is_not_an_error(server):
    url, _, log = server
    before = len(_server_log(log).splitlines())
    for _ in range(5):
        with _connect(url) as s:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 300\r\n\r\n" + b"x" * 100)
            time.sleep(0.1)
    time.sleep(0.5)
    assert httpx.get(f"{url}/v1/health", timeout=10).status_code == 200
    new = _server_log(log).splitlines()[before:]
    assert not [line for line in new if "Traceback" in line or "unexpected error" in line or "Exception" in line]
    access = [line for line in new if " digits.access: request " in line]  # one per request, the health check's too
    others = [line for line in new if line not in access]
    assert len(access) <= 5 + 1 and len(others) <= 5, new  # at most one short line per disconnect besides


# ---------------------------------------------------------------------------
# 14. Protocol errors


def test_protocol_errors(server, mnist_data):
    url, _, _ = server
    # What the app sees answers JSON: an unterminated multipart body is 400, not 422 "missing_file".
    png = io.BytesIO()
    Image.fromarray(255 - mnist_data.x_test[0]).save(png, "PNG")
    cut = (b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
           b"Content-Type: image/png\r\n\r\n" + png.getvalue()[:200])
    r = httpx.post(f"{url}/v1/predict", content=cut, headers={"content-type": "multipart/form-data; boundary=XYZ"})
    assert r.status_code == 400 and r.json()["error"] == "bad_multipart" and "closing boundary" in r.json()["detail"]
    # What uvicorn answers before the app sees anything: 400 in plain text (documented in docs/serving.md).
    for raw in (b"GARBAGE\r\n\r\n",
                b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n"):
        with _connect(url) as s:
            s.sendall(raw)
            seconds, answer = _until_closed(s)
        assert _answer(answer)[0] == 400 and seconds < SLACK
    with _connect(url) as s:  # headers still incomplete past --max-header-bytes (16 KiB)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 20_000)
        assert _answer(_until_closed(s)[1])[0] == 400


def test_a_port_in_use_is_one_line_before_the_model_loads(tiny_mlp_run, monkeypatch, capsys):
    from digits.cli import main
    from digits.serving import app

    def no_loading(settings):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr(app, "load_serving_predictor", no_loading)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tiny_mlp_run.path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"digits serve: error: cannot listen on 127.0.0.1:{port}: Address already in use; "
                   "another program is listening there: stop it or choose another --port")
    assert main(["serve", "--host", "no-such-host.invalid", "--port", str(free_port())]) == 2
    assert "does not resolve" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# 13. nosniff, trusted hosts, self-hosted docs


def test_every_answer_says_nosniff_and_strange_hosts_are_refused(server):
    url, _, _ = server
    port = url.rsplit(":", 1)[1]
    for path in ("/v1/health", "/", "/static/app.js", "/nope", "/docs", "/apidocs/swagger-ui.css"):
        assert httpx.get(url + path).headers["x-content-type-options"] == "nosniff", path
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx.get(f"{url}/v1/health", headers={"host": host}).status_code == 200, host
    r = httpx.get(f"{url}/v1/health", headers={"host": f"evil.example:{port}"})  # a DNS-rebinding page's Host
    assert r.status_code == 400 and r.json()["error"] == "invalid_host" and "--allowed-hosts" in r.json()["detail"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_default_allowed_hosts():
    assert default_allowed_hosts("127.0.0.1") == "127.0.0.1,localhost,::1"
    assert default_allowed_hosts("localhost") == "localhost,127.0.0.1,::1"
    assert default_allowed_hosts("::1") == "::1,localhost,127.0.0.1"
    assert default_allowed_hosts("0.0.0.0") == default_allowed_hosts("::") == "*"
    assert default_allowed_hosts("192.168.1.20") == "192.168.1.20"


def test_errors_and_500s_say_nosniff_too():
    class Broken:
        name, info, runtime, threshold = "broken", {}, "none", 0.5

        def probabilities(self, x):
            raise RuntimeError("boom")

    client = TestClient(create_app(Broken(), allowed_hosts="testserver"), raise_server_exceptions=False)
    pixels = {"pixels": [[255] * 14 + [0] * 14] * 28}
    for r in (client.post("/v1/predict", json=pixels), client.post("/v1/predict", content=b""),
              client.get("/v1/health", headers={"host": "elsewhere"})):
        assert r.status_code in (400, 500) and r.headers["x-content-type-options"] == "nosniff", r.text
        assert len(r.headers["x-request-id"]) == 32, r.headers  # the 500 too: answered inside the middleware


def test_docs_load_nothing_from_elsewhere(server):
    url, _, _ = server
    for page in ("/docs", "/redoc"):
        r = httpx.get(url + page)
        assert "default-src 'self'" in r.headers["content-security-policy"]
        html = r.text
        assert "http://" not in html and "https://" not in html and '"//' not in html, page
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/apidocs/") for a in assets), assets
        for asset in assets:
            r = httpx.get(url + asset)
            assert r.status_code == 200 and len(r.content) > 500, asset
        assert "/openapi.json" in html


# ---------------------------------------------------------------------------
# 6. Bounded work and memory


def _big_png(side: tuple[int, int], digit: np.ndarray) -> bytes:
    canvas = Image.new("L", side, 255)
    canvas.paste(Image.fromarray(255 - digit).resize((side[0] // 2,) * 2, Image.Resampling.NEAREST),
                 (side[0] // 4, side[1] // 4))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return buf.getvalue()


def _rss_mb(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS since the last reset) of process `pid`, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def test_a_cheap_batch_of_huge_pictures_is_refused_from_headers(server, mnist_data):
    url, _, _ = server
    big = _big_png((4999, 5000), mnist_data.x_test[0])
    assert len(big) < 60_000  # 25 megapixels in a small file
    started = time.monotonic()
    r = httpx.post(f"{url}/v1/predict/batch", files=[("files", (f"{i}.png", big)) for i in range(64)], timeout=60)
    assert r.status_code == 413 and r.json()["error"] == "too_many_pixels", r.text
    assert "1,599,680,000 pixels" in r.json()["detail"] and time.monotonic() - started < 10


def test_big_pictures_cost_bounded_memory_which_is_given_back(server, mnist_data):
    url, pid, _ = server
    big = _big_png((4999, 5000), mnist_data.x_test[0])
    files = [("files", (f"{i}.png", big)) for i in range(4)]  # 100 MP: the most one request may decode
    before, _ = _rss_mb(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak
    r = httpx.post(f"{url}/v1/predict/batch", files=files, timeout=120)
    assert r.status_code == 200 and [p["label"] for p in r.json()["predictions"]] == [int(mnist_data.y_test[0])] * 4
    after, peak = _rss_mb(pid)
    # One 25 MB picture decoded at a time, then reduced to 4 MP for normalizing: far from 4 x 25 MP x 20 bytes.
    assert peak - before < 400, (before, peak)
    assert after - before < 100, (before, after)


def test_decoding_reduced():
    y, x = np.mgrid[0:1800, 0:2400]
    picture = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, fmt)
        data = buf.getvalue()
        assert decode_image(data).size == (2400, 1800)
        reduced = decode_image(data, reduce_to=300_000)  # the smallest whole factor that fits: 4
        assert reduced.size == (600, 450) and reduced.mode == "L"
        # A JPEG's decoder fills 1/2, 1/4 or 1/8 of the pixels (draft); a PNG's fills them all.
        assert decoded_size(data, 300_000) == ((600, 450) if fmt == "JPEG" else (2400, 1800))
        assert decoded_size(data) == (2400, 1800)
    assert decoded_size(b"not an image") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_big_pictures_run_in_their_own_threads_at_a_lower_priority(mnist_data):
    import os

    seen = []

    class Recording:
        name, info, runtime, threshold = "recording", {}, "none", 0.5

        def probabilities(self, x):
            seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            return np.full((len(x), 10), 0.1, np.float32)

    digit = mnist_data.x_test[0]
    small = io.BytesIO()
    Image.fromarray(255 - digit).save(small, "PNG")
    with TestClient(create_app(Recording(), big_picture_threads=1)) as c:
        deadline = time.monotonic() + 60
        while c.get("/v1/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # the warm-up's model calls, in their own thread, are not the requests'
        seen.clear()
        for data in (small.getvalue(), _big_png((1200, 1000), digit)):  # 784 pixels, then 1.2 megapixels
            assert c.post("/v1/predict", files={"file": ("d.png", data)}).status_code == 200
    (small_thread, small_nice), (big_thread, big_nice) = seen
    assert not small_thread.startswith("digits-big-picture") and small_nice == os.getpriority(os.PRIO_PROCESS, 0)
    assert big_thread.startswith("digits-big-picture") and big_nice == min(19, small_nice + 10)


def test_the_pixel_budget_lets_small_requests_pass_a_big_one_that_waits():
    budget = PixelBudget(100)
    order = []

    async def hold(name, pixels, seconds):
        async with budget.hold(pixels):
            order.append(f"{name} in")
            assert budget.used <= budget.capacity
            await anyio.sleep(seconds)
        order.append(f"{name} out")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, "big", 80, 0.2)
            await anyio.sleep(0.01)
            tg.start_soon(hold, "second big", 80, 0.01)  # waits for the first
            await anyio.sleep(0.01)
            tg.start_soon(hold, "small", 10, 0.01)  # fits beside the first: not queued behind the second
            await anyio.sleep(0.01)
            tg.start_soon(hold, "huge", 500, 0.01)  # more than the whole budget: waits to be alone

    anyio.run(main)
    assert order.index("small out") < order.index("big out") < order.index("second big in")
    assert order.index("huge in") > order.index("big out") and budget.used == 0


def test_settings_refuse_nonsense_and_travel_to_workers():
    with pytest.raises(DigitsError, match="body_timeout must be positive"):
        ServeSettings(body_timeout=0).check()
    settings = ServeSettings(header_timeout=2.5, max_connections=7, allowed_hosts="a.example,b.example",
                             max_request_pixels=1234)
    assert ServeSettings.from_env(settings.to_env()) == settings


def test_the_flags_reach_the_settings_and_uvicorn(tiny_mlp_run, monkeypatch):
    import uvicorn

    from digits.cli import main
    from digits.serving.connections import DeadlineProtocol

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert main(["serve", "--model", str(tiny_mlp_run.path), "--port", str(free_port()), "--header-timeout", "3",
                 "--body-timeout", "7", "--keep-alive-timeout", "2", "--max-connections", "9",
                 "--max-header-bytes", "4096", "--max-request-pixels", "5000000", "--allowed-hosts", "a.example"]) == 0
    app, kw = calls[0]
    settings = app.state.service.settings
    assert (settings.header_timeout, settings.max_request_pixels, settings.allowed_hosts) == (3, 5_000_000, "a.example")
    assert (kw["timeout_keep_alive"], kw["limit_concurrency"], kw["h11_max_incomplete_event_size"]) == (2, 9, 4096)
    assert kw["http"].func is DeadlineProtocol and kw["http"].keywords == {"header_timeout": 3, "body_timeout": 7}
