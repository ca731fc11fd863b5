"""What operations watch: /metrics, readiness apart from liveness, the access log, graceful shutdown.

In-process tests use FastAPI's test client; the readiness route, the access
log, SIGTERM and several workers are tested against real uvicorn processes
on 127.0.0.1 (a free port each), with bounded waits and request counts.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from digits.errors import DigitsError
from digits.serving import ServeSettings, create_app
from digits.serving.connections import DeadlineProtocol
from digits.serving.logs import FORMATTERS, JsonFormatter, TextFormatter, request_id
from helpers import exit_code, free_port

HOST = "127.0.0.1"
WAIT = 90  # seconds: a generous bound for a server to start, get ready or stop


class Fake:
    """A predictor that answers 3 at 0.91 for every image."""

    name, info, runtime, threshold = "fake", {}, "fake", 0.5

    def probabilities(self, images):
        out = np.full((len(images), 10), 0.01, np.float32)
        out[:, 3] = 0.91
        return out


class Broken(Fake):
    """A predictor whose every call fails."""

    def probabilities(self, images):
        raise RuntimeError("no such kernel")


def digit() -> list:
    """28×28 JSON pixels holding a bar of ink: something to recognize."""
    x = np.zeros((28, 28), np.uint8)
    x[6:22, 12:16] = 255
    return x.tolist()


BLANK = np.zeros((28, 28), np.uint8).tolist()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """A /metrics answer as {(sample name, sorted labels): value}, read with prometheus-client's parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `condition` (None or False: not yet) every 50 ms, up to WAIT seconds; its value."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode} before {what}:\n"
                        f"{log.read_text()[-3000:] if log else ''}")
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"no {what} within {WAIT} s:\n{log.read_text()[-3000:] if log else ''}")


def status_of(url: str, client=httpx) -> int | None:
    try:
        return client.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM, then the exit status (killed, and the test failed, past WAIT seconds)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the server did not exit within {WAIT} s of SIGTERM")


@pytest.fixture(scope="module")
def run(tiny_mlp_run):
    return tiny_mlp_run


@pytest.fixture
def client():
    with TestClient(create_app(Fake())) as c:
        wait_for(lambda: c.get("/v1/ready").status_code == 200, "readiness")
        yield c


# ---------------------------------------------------------------------------
# /metrics


def test_metrics_count_requests_by_route_template_and_status(client):
    before = samples(client.get("/metrics").text)
    for _ in range(3):
        assert client.post("/v1/predict", json={"pixels": digit()}).status_code == 200
    assert client.post("/v1/predict", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    for path in ("/nope", "/v1/nope/1", "/v1/nope/2", "/static/nope.js"):
        assert client.get(path).status_code == 404
    assert client.get("/static/app.js").status_code == 200
    assert client.request("BREW", "/v1/health").status_code == 405
    text = client.get("/metrics").text
    after = samples(text)

    requests = "digits_http_requests_total"
    assert delta(before, after, requests, method="POST", route="/v1/predict", status="200") == 3
    assert delta(before, after, requests, method="POST", route="/v1/predict", status="400") == 1
    assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 3
    assert delta(before, after, requests, method="GET", route="/static", status="404") == 1
    assert delta(before, after, requests, method="GET", route="/static", status="200") == 1
    assert delta(before, after, requests, method="other", route="/v1/health", status="405") == 1
    assert delta(before, after, "digits_http_request_duration_seconds_count",
                 method="POST", route="/v1/predict", status="200") == 3
    assert delta(before, after, "digits_http_request_duration_seconds_bucket",
                 method="POST", route="/v1/predict", status="200", le="+Inf") == 3
    # Templates, never raw paths or methods: the label values stay few.
    assert "/v1/nope" not in text and "/static/app.js" not in text and "BREW" not in text
    assert "_created" not in text


def test_metrics_count_answers_abstentions_and_model_calls(client):
    unsure = TestClient(create_app(Fake(), threshold=0.95))
    before = samples(client.get("/metrics").text)
    client.post("/v1/predict", json={"pixels": digit()})
    client.post("/v1/predict", json={"pixels": BLANK})
    batch = client.post("/v1/predict/batch", json={"images": [{"pixels": digit()}] * 3}).json()
    assert [p["label"] for p in batch["predictions"]] == [3, 3, 3]
    assert unsure.post("/v1/predict", json={"pixels": digit()}).json()["label"] is None
    after = samples(client.get("/metrics").text)

    assert delta(before, after, "digits_predictions_total", label="3") == 4
    assert delta(before, after, "digits_abstentions_total", reason="no_ink") == 1
    assert delta(before, after, "digits_abstentions_total", reason="unsure") == 1
    # Model calls: one image, then three in one call, then one (the blank never reaches the model).
    assert delta(before, after, "digits_model_batch_size_count") == 3
    assert delta(before, after, "digits_model_batch_size_sum") == 5
    assert delta(before, after, "digits_model_inference_seconds_count") == 3
    assert delta(before, after, "digits_model_inference_seconds_sum") > 0


def test_read_counts_each_digit(client):
    from PIL import Image

    page = Image.new("L", (120, 60), 255)
    page.paste(0, (20, 10, 28, 50))
    page.paste(0, (80, 10, 88, 50))
    buf = io.BytesIO()
    page.save(buf, "PNG")
    before = samples(client.get("/metrics").text)
    answer = client.post("/v1/read", files={"file": ("two.png", buf.getvalue())}).json()
    after = samples(client.get("/metrics").text)
    assert answer["number"] == "33"
    assert delta(before, after, "digits_predictions_total", label="3") == 2


def test_metrics_and_access_log_can_be_off(caplog):
    with TestClient(create_app(Fake(), metrics=False, access_log=False)) as c:
        with caplog.at_level(logging.INFO, logger="digits.access"):
            r = c.post("/v1/predict", json={"pixels": digit()})
        assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        assert c.get("/metrics").status_code == 404
    assert not [r for r in caplog.records if r.name == "digits.access"]


# ---------------------------------------------------------------------------
# Request ids, readiness, log lines (in-process)


def test_request_id_is_the_clients_when_sane_else_fresh(client):
    for sane in ("abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "trace:4bf92f35/00f067aa+0b=9.c_d"):
        assert client.get("/v1/health", headers={"X-Request-ID": sane}).headers["x-request-id"] == sane
    seen = set()
    for bad in (None, "", "has space", "x" * 129, "semi;colon", "é", '"quoted"'):
        headers = {} if bad is None else {"X-Request-ID": bad.encode("utf-8")}
        rid = client.get("/v1/health", headers=headers).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
        seen.add(rid)
    assert len(seen) == 7  # a fresh one each time
    # Errors carry it too.
    r = client.get("/nope", headers={"X-Request-ID": "lost-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "lost-1"


def test_one_access_line_per_request_with_its_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="digits.access"):
        ids = [client.post("/v1/predict", json={"pixels": digit()}).headers["x-request-id"],
               client.get("/nope/%0Aforged", headers={"X-Request-ID": "r-2"}).headers["x-request-id"]]
    lines = [r for r in caplog.records if r.name == "digits.access"]
    assert [r.fields["request_id"] for r in lines] == ids
    first, second = (r.fields for r in lines)
    assert first["method"] == "POST" and first["route"] == "/v1/predict" and first["status"] == 200
    assert first["duration_ms"] > 0
    assert second["route"] == "unmatched" and second["status"] == 404
    assert second["path"] == "/nope/%0Aforged"  # as sent: a newline cannot be forged into the log
    assert ids[1] == "r-2"


def test_a_refused_host_is_logged_counted_and_carries_both_headers(caplog):
    # The access middleware wraps protect()'s: a 400 invalid_host has its line, its count and both headers.
    with TestClient(create_app(Fake(), allowed_hosts="digits.example"), base_url="http://digits.example") as c:
        before = samples(c.get("/metrics").text)
        with caplog.at_level(logging.INFO, logger="digits.access"):
            r = c.get("/v1/health", headers={"Host": "evil.example", "X-Request-ID": "rebind-1"})
            ok = c.get("/v1/health", headers={"X-Request-ID": "ok-1"})
        after = samples(c.get("/metrics").text)
    assert r.status_code == 400 and r.json()["error"] == "invalid_host"
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-request-id"] == "rebind-1"
    assert ok.status_code == 200 and ok.headers["x-content-type-options"] == "nosniff"
    assert ok.headers["x-request-id"] == "ok-1"
    (line,) = [r.fields for r in caplog.records if r.name == "digits.access" and r.fields["request_id"] == "rebind-1"]
    assert (line["status"], line["route"], line["path"]) == (400, "unmatched", "/v1/health")
    requests = "digits_http_requests_total"
    assert delta(before, after, requests, method="GET", route="unmatched", status="400") == 1
    assert delta(before, after, requests, method="GET", route="/v1/health", status="200") == 1


def test_an_unexpected_error_carries_the_request_id_too(caplog):
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(TextFormatter())  # formats as the record is logged, in the request's context
    logger = logging.getLogger("digits")
    logger.addHandler(handler)
    try:
        with TestClient(create_app(Broken()), raise_server_exceptions=False) as c:
            with caplog.at_level(logging.INFO, logger="digits"):
                r = c.post("/v1/predict", json={"pixels": digit()}, headers={"X-Request-ID": "boom-1"})
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 500 and r.headers["x-request-id"] == "boom-1"
    (line,) = [r for r in caplog.records if r.name == "digits.access"]
    assert line.fields["status"] == 500 and line.fields["request_id"] == "boom-1"
    # The traceback's line names the request.
    assert re.search(r"ERROR digits.serving: unexpected error answering POST /v1/predict request_id=boom-1\n"
                     r"Traceback", lines.getvalue())


def test_warm_up_failure_leaves_the_server_unready(caplog):
    with caplog.at_level(logging.ERROR, logger="digits.serving"):
        with TestClient(create_app(Broken())) as c:
            wait_for(lambda: "warming up the model failed" in caplog.text, "the warm-up's error line")
            r = c.get("/v1/ready")
            assert r.status_code == 503 and r.json()["error"] == "not_ready"
            assert c.get("/v1/health").status_code == 200  # alive, not ready


def test_log_formats_carry_the_same_fields():
    record = logging.makeLogRecord({"name": "digits.access", "levelname": "INFO", "levelno": logging.INFO,
                                    "msg": "request", "fields": {"method": "GET", "path": "/a b", "status": 200}})
    token = request_id.set("rid-1")
    try:
        doc = json.loads(JsonFormatter().format(record))
        text = TextFormatter().format(record)
    finally:
        request_id.reset(token)
    assert doc["logger"] == "digits.access" and doc["level"] == "INFO" and doc["message"] == "request"
    assert (doc["method"], doc["path"], doc["status"], doc["request_id"]) == ("GET", "/a b", 200, "rid-1")
    assert doc["time"].endswith("Z") and isinstance(doc["pid"], int)
    assert text.endswith(' INFO digits.access: request method=GET path="/a b" status=200 request_id=rid-1')
    assert set(FORMATTERS) == set(ServeSettings.LOG_FORMATS)  # one formatter for each format the flag offers


# ---------------------------------------------------------------------------
# Settings and flags


def test_bad_log_format_is_one_line_exit_2(capsys):
    assert exit_code(["serve", "--log-format", "xml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--log-format" in err and "invalid choice" in err
    with pytest.raises(DigitsError, match="log format"):
        ServeSettings(log_format="xml").check()
    with pytest.raises(DigitsError, match="graceful"):
        ServeSettings(graceful_timeout=0).check()


def test_ops_flags_reach_the_settings_and_uvicorn(run, monkeypatch):
    import uvicorn

    from digits.cli import build_parser, main

    defaults, parsed = ServeSettings(), build_parser().parse_args(["serve"])
    assert (parsed.log_format, parsed.graceful_timeout, parsed.metrics, parsed.access_log) == (
        defaults.log_format, defaults.graceful_timeout, defaults.metrics, defaults.access_log)
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert main(["serve", "--model", str(run.path), "--log-format", "json", "--graceful-timeout", "4",
                 "--no-access-log", "--no-metrics"]) == 0
    app, kw = calls[0]
    settings = app.state.service.settings
    assert (settings.log_format, settings.graceful_timeout, settings.metrics, settings.access_log) == (
        "json", 4, False, False)
    assert kw["timeout_graceful_shutdown"] == 4 and kw["access_log"] is False  # uvicorn's own: ours replaces it
    assert kw["log_config"]["formatters"]["digits"]["()"] == "digits.serving.logs.JsonFormatter"
    # The connection limits apply beside them: the read deadlines' h11 protocol, uvicorn's limits.
    assert kw["http"].func is DeadlineProtocol and kw["limit_concurrency"] == defaults.max_connections


def test_several_workers_count_into_one_fresh_folder(run, monkeypatch):
    import uvicorn.supervisors

    from digits.cli import main

    seen, configs = [], []

    class FakeSupervisor:
        def __init__(self, config, sockets):
            configs.append(config)

        def run(self):
            folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            seen.append((folder, folder.is_dir() and not any(folder.iterdir())))

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", FakeSupervisor)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    for key in ServeSettings().to_env():
        monkeypatch.setenv(key, "")
    assert main(["serve", "--model", str(run.path), "--workers", "2", "--port", str(free_port())]) == 0
    (folder, fresh), = seen
    assert fresh and not folder.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    (config,) = configs  # the workers' uvicorn.Config has both the ops options and the connection limits
    assert config.http.func is DeadlineProtocol and config.access_log is False
    assert config.timeout_graceful_shutdown == ServeSettings().graceful_timeout
    assert config.log_config["formatters"]["digits"]["()"] == "digits.serving.logs.TextFormatter"


# ---------------------------------------------------------------------------
# Real uvicorn processes

FAKE_MODULE = r"""
import os, sys, time
from pathlib import Path

import numpy as np


class Gated:
    # Answers 3 at 0.91, once the file $DIGITS_TEST_GATE exists (at once without it): the warm-up waits.
    name, info, runtime, threshold = "gated", {}, "fake", 0.5

    def probabilities(self, images):
        gate, deadline = os.environ.get("DIGITS_TEST_GATE"), time.monotonic() + 120
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        out = np.full((len(images), 10), 0.01, np.float32)
        out[:, 3] = 0.91
        return out


def factory():
    from digits.serving import create_app

    return create_app(Gated())


if __name__ == "__main__":
    import uvicorn

    import digits.serving.app
    from digits.cli import run
    from digits.serving import logs, metrics

    port, log_format, workers, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    if workers == 1:  # the real `digits serve`, with this predictor for the model it would load
        digits.serving.app.load_serving_predictor = lambda settings: Gated()
        sys.argv = ["digits", "serve", "--host", "127.0.0.1", "--port", port, "--log-format", log_format, *flags]
        run()
    else:  # serve()'s way of sharing the metrics, with this module's factory
        with metrics.shared_between_workers():
            uvicorn.run("fake_server:factory", factory=True, workers=workers, host="127.0.0.1", port=int(port),
                        log_config=logs.log_config(log_format, "info"), access_log=False)
"""


def start_fake(tmp_path: Path, log_format: str, workers: int = 1, gate: Path | None = None, flags=()):
    """`digits serve FLAGS` (or uvicorn's workers) on the fake predictor in its own process: (process, URL, log)."""
    (tmp_path / "fake_server.py").write_text(FAKE_MODULE)
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    if gate is not None:
        env["DIGITS_TEST_GATE"] = str(gate)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(tmp_path / "fake_server.py"), str(port), log_format,
                                 str(workers), *flags], stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://{HOST}:{port}", log


def access_lines(log: str, log_format: str) -> list[dict]:
    """The access log's lines as dicts of their fields."""
    if log_format == "json":
        docs = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is JSON
        return [d for d in docs if d["logger"] == "digits.access"]
    out = []
    for line in log.splitlines():
        if " INFO digits.access: request " in line:
            out.append(dict(pair.split("=", 1) for pair in line.split(" digits.access: request ", 1)[1].split()))
    return out


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_real_server_readiness_access_log_and_metrics(tmp_path, log_format):
    gate = tmp_path / "gate"
    proc, url, log = start_fake(tmp_path, log_format, gate=gate)
    answered: dict[str, tuple] = {}  # request id -> (method, path, status), of every answer we got

    def record(response):
        answered[response.headers["x-request-id"]] = (response.request.method, response.request.url.raw_path
                                                      .decode(), response.status_code)
    try:
        with httpx.Client(base_url=url, timeout=30, event_hooks={"response": [record]}) as c:
            wait_for(lambda: status_of("/v1/health", c) == 200, "liveness", proc, log)
            # Alive but not ready: the warm-up is waiting for the gate.
            r = c.get("/v1/ready")
            assert r.status_code == 503 and r.json()["error"] == "not_ready"
            assert c.get("/v1/health").status_code == 200
            gate.touch()
            wait_for(lambda: c.get("/v1/ready").status_code == 200, "readiness", proc, log)

            before = samples(c.get("/metrics").text)
            for i in range(3):
                r = c.post("/v1/predict", json={"pixels": digit()}, headers={"X-Request-ID": f"req-{i}"})
                assert r.status_code == 200 and r.headers["x-request-id"] == f"req-{i}"
            bad = c.post("/v1/predict", json={"pixels": BLANK}, headers={"X-Request-ID": "not ok"})
            assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-request-id"])
            assert c.get("/nope/1").status_code == 404
            after = samples(c.get("/metrics").text)
    finally:
        code = stop(proc)
    assert code == 0

    requests = "digits_http_requests_total"
    assert delta(before, after, requests, method="POST", route="/v1/predict", status="200") == 4
    assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert delta(before, after, requests, method="GET", route="/metrics", status="200") == 1
    assert delta(before, after, "digits_predictions_total", label="3") == 3
    assert delta(before, after, "digits_abstentions_total", reason="no_ink") == 1

    text = log.read_text()
    lines = access_lines(text, log_format)
    logged = {line["request_id"]: (line["method"], line["path"], int(line["status"])) for line in lines}
    assert len(lines) == len(answered) and logged == answered  # one line per request, with its id
    assert "not ok" not in text
    first = next(line for line in lines if line["request_id"] == "req-0")
    assert first["route"] == "/v1/predict" and float(first["duration_ms"]) > 0 and first["client"].startswith(HOST)


def _expect_continue(port: int, body: bytes) -> socket.socket:
    """A POST /v1/predict whose headers are sent and whose body is not: in flight once 100 Continue comes."""
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        got += chunk
    assert got.startswith(b"HTTP/1.1 100"), got  # the app is reading the body: the request is in flight
    return sock


def _refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(tmp_path):
    proc, url, log = start_fake(tmp_path, "json", flags=["--graceful-timeout", "3"])
    port = int(url.rsplit(":", 1)[1])
    try:
        wait_for(lambda: status_of(f"{url}/v1/ready") == 200, "readiness", proc, log)
        body = json.dumps({"pixels": digit()}).encode()
        finishing = _expect_continue(port, body)
        stalled = _expect_continue(port, body)  # never sends its body: cancelled at the timeout
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: _refused(port), "refusal of new connections", proc, log)
        finishing.sendall(body)
        answer = b""
        while chunk := finishing.recv(65536):
            answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer[:300]
        assert json.loads(payload)["label"] == 3
        code = proc.wait(timeout=WAIT)
        took = time.monotonic() - started
        stalled.close()
        finishing.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, log.read_text()[-3000:]
    assert took < 30  # the 3-second graceful timeout, and a generous margin
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = [e["message"] for e in events]
    assert any("timeout graceful shutdown exceeded" in m for m in messages)
    assert any(m.startswith("Finished server process") for m in messages)
    assert any(e["logger"] == "digits.access" and e.get("status") == 200 and e.get("route") == "/v1/predict"
               for e in events)


def test_several_workers_answer_the_same_sums(tmp_path):
    """prometheus-client's multiprocess mode: whichever worker answers /metrics counts every worker's requests."""
    proc, url, log = start_fake(tmp_path, "json", workers=2)

    def pids(route: str) -> set[int]:
        return {line["pid"] for line in access_lines(log.read_text(), "json") if line["route"] == route}

    try:
        wait_for(lambda: status_of(f"{url}/v1/health") == 200, "a worker answering", proc, log)
        sent = 0
        while len(pids("/v1/predict")) < 2:  # each request on a new connection: either worker may take it
            assert sent < 400, f"one worker took every request: {pids('/v1/predict')}"
            assert httpx.post(f"{url}/v1/predict", json={"pixels": digit()}, timeout=30).status_code == 200
            sent += 1
            time.sleep(0.01)  # the log line follows the answer
        scraped = []
        while len(pids("/metrics")) < 2:
            assert len(scraped) < 400, "one worker answered every scrape"
            scraped.append(samples(httpx.get(f"{url}/metrics", timeout=30).text))
            time.sleep(0.01)
    finally:
        code = stop(proc)
    assert code == 0
    key = ("digits_http_requests_total", (("method", "POST"), ("route", "/v1/predict"), ("status", "200")))
    assert {s[key] for s in scraped} == {sent}
    assert {s[("digits_predictions_total", (("label", "3"),))] for s in scraped} == {sent}
