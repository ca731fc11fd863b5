"""Load test of `digits serve`: concurrent single-image predictions against the real server, on loopback.

A bounded run: the server starts in its own process on 127.0.0.1 (a free
port), answers `--warmup` requests that are not counted, then `--requests`
single-image POST /v1/predict requests from `--concurrency` client threads
(each with its own keep-alive connection), stopping early only at
`--time-cap` seconds.  Prints, per configuration: throughput, latency
p50/p95/p99/max, the CPU time the server used per request, the error count
(any non-200 answer or failed request; must be 0), how many answers were
the true digit, how many requests the server's own GET /metrics counted
meanwhile (must be every one), and the server's memory (RSS of the server
and its worker processes) before and after the load, and its peak.

    python benchmarks/serve_load.py [--model RUN_DIR] [--runtime keras onnx] [--requests 2000]
                                    [--concurrency 8] [--payload png|photo|pixels] [--workers 1]
                                    [--micro-batch] [--time-cap 300] [--data-dir DIR] [--json]
                                    [--observability [--repeat 2]]
    python benchmarks/serve_load.py --forward [--model RUN_DIR]   # model call alone, Keras vs ONNX Runtime
    python benchmarks/serve_load.py --overhead   # the request-id, metrics and access-log middleware alone
    python benchmarks/serve_load.py --adversarial [--runtime keras] [--requests 1000] [--rounds 3]

`--observability` serves each runtime twice, alternately (`--repeat`
times): with the metrics and the access log on, the access log written to
a file at `--log-level info` (what a deployment pays), and with
`--no-metrics --no-access-log`: their cost in requests/s.  Other runs keep
the defaults (metrics on) at `--log-level warning`, which hides the access log.
`--overhead` times the middleware that does that work
(digits.serving.access) in this process, around an app that answers at
once: microseconds per request, the best of several rounds, so that other
load on the machine counts less than it does over HTTP.

`--adversarial` measures the normal requests twice on one server: quiet,
then beside an attack (issue 12): a client sending, one after the other,
the batch of 64 PNGs of 4999×5000 pixels (2.3 MB, within the body and batch
limits; refused from the images' headers) and a batch of 4 of them (100
megapixels, the most one request may decode), `--slow-clients` connections
sending their request line a byte a second and as many that send nothing
(each reopened when the server closes it).  Quiet and attacked phases
alternate `--rounds` times, since a shared machine's load drifts.  It
reports the median p99 of each (target: under attack below 3x quiet), the
server's peak RSS over the whole run (target: below 1 GB) and its RSS
after it, and what the attackers got.

Without --model it trains a small model first (mlp on 3,000 images, 2
epochs: the answers' accuracy does not matter for the timing); `--model
bundled` serves the model bundled with Digits.  Payloads: `png`, the MNIST
test digits as 28×28 PNG files, dark on white; `photo`, the same digits
rendered as phone photos (JPEG, about 200×170, see
digits.testing.render_like_user); `pixels`, JSON 28×28 arrays.  The client
runs on the same machine, so it competes with the server for the CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # loopback only


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def _tree_rss(pid: int) -> tuple[int, int]:
    """(RSS, peak RSS) in bytes of a process and all its descendants, from /proc."""
    rss = peak = 0
    for p in _tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        peak += int(fields.get("VmHWM", "0 kB").split()[0]) * 1024
    return rss, peak


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process and all its descendants have used, from /proc.

    Unlike requests/s, this counts only the server's own work, so it varies less when
    other programs share the cores.
    """
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _payloads(kind: str, data_dir: str | None, n: int = 500):
    """(httpx request kwargs, true label) for the first n MNIST test digits."""
    from PIL import Image

    from digits.datasets import load_dataset

    data = load_dataset("mnist", data_dir=data_dir, progress=False)
    rng = np.random.default_rng(0)
    out = []
    for x, y in zip(data.x_test[:n], data.y_test[:n]):
        if kind == "pixels":
            out.append(({"json": {"pixels": x.tolist()}}, int(y)))
            continue
        buf = io.BytesIO()
        if kind == "png":
            Image.fromarray(255 - x).save(buf, "PNG")
            name = "digit.png"
        else:
            from digits.testing import render_like_user

            render_like_user(x, rng).save(buf, "JPEG", quality=90)
            name = "photo.jpg"
        out.append(({"files": {"file": (name, buf.getvalue())}}, int(y)))
    return out


def _train_small(data_dir: str | None, folder: Path) -> str:
    code = ("from digits.training import train; import sys; "
            "train(model='mlp', limit=3000, epochs=2, seed=1, out=sys.argv[1], "
            "data_dir=sys.argv[2] or None, verbose=0)")
    subprocess.run([sys.executable, "-c", code, str(folder / "mlp"), data_dir or ""], check=True)
    return str(folder / "mlp")


OBSERVABILITY = {"on": ["--log-level", "info"], "off": ["--no-metrics", "--no-access-log"]}
"""`digits serve` flags with the metrics and the access log on (logged to the log file) and off."""


def _start_server(model: str | None, runtime: str, workers: int, micro_batch: bool, log: Path,
                  flags: list[str]):
    port = _free_port()
    args = [sys.executable, "-m", "digits.cli", "serve", "--host", HOST, "--port", str(port),
            "--runtime", runtime, "--workers", str(workers), *flags]
    if model is not None:
        args += ["--model", model]
    if micro_batch:
        args.append("--micro-batch")
    out = open(log, "wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    import httpx

    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 180
    healthy = 0
    while healthy < workers:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not start within 180 s:\n{log.read_text()[-2000:]}")
        try:
            healthy += httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            time.sleep(0.2)
    if workers > 1:
        time.sleep(5)  # every worker answering: health only proves one
    return proc, url


def _counted(url: str) -> float | None:
    """How many POST /v1/predict the server's GET /metrics has counted as answered (None: no metrics)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(f"{url}/metrics", timeout=30)
    if r.status_code == 404:
        return None
    wanted = {"method": "POST", "route": "/v1/predict", "status": "200"}
    return sum(s.value for family in text_string_to_metric_families(r.text) for s in family.samples
               if s.name == "digits_http_requests_total" and s.labels == wanted)


def _load(url: str, payloads, requests: int, concurrency: int, time_cap: float) -> dict:
    import httpx

    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    errors: list[str] = []
    right = [0]
    deadline = time.monotonic() + time_cap

    def worker():
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= requests or time.monotonic() > deadline:
                        return
                    next_index[0] += 1
                kwargs, truth = payloads[i % len(payloads)]
                started = time.perf_counter()
                try:
                    r = client.post("/v1/predict", **kwargs)
                    elapsed = time.perf_counter() - started
                    ok = r.status_code == 200
                    label = r.json().get("label") if ok else None
                except Exception as e:  # a failed request is an error, not a crash of the benchmark
                    elapsed, ok, label = time.perf_counter() - started, False, None
                    r = e
                with lock:
                    latencies.append(elapsed)
                    if ok:
                        right[0] += label == truth
                    else:
                        errors.append(str(getattr(r, "status_code", r)))

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "correct": right[0],
        "capped": len(latencies) < requests,
    }


def _reset_peak(pid: int) -> None:
    """Start the peak RSS (VmHWM) of a process and its descendants again from their current RSS."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    for p in [pid, *children]:
        Path(f"/proc/{p}/clear_refs").write_text("5")


def _big_png(data_dir: str | None) -> bytes:
    """A 4999×5000 greyscale PNG of an MNIST digit on white paper: 25 megapixels in about 36 KB."""
    from PIL import Image

    from digits.datasets import load_dataset

    digit = load_dataset("mnist", data_dir=data_dir, progress=False).x_test[0]
    canvas = Image.new("L", (4999, 5000), 255)
    canvas.paste(Image.fromarray(255 - digit).resize((2800, 2800), Image.Resampling.NEAREST), (1100, 1100))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return buf.getvalue()


def _attack(url: str, big: bytes, slow_clients: int, stop: threading.Event) -> tuple[list[threading.Thread], dict]:
    """Start the attackers (see the module docstring); they run until `stop` is set."""
    import httpx

    seen: dict = {"batch_64": [], "batch_4": [], "slow_closed": 0, "silent_closed": 0}
    lock = threading.Lock()
    host, port = url.removeprefix("http://").split(":")

    def batches():
        with httpx.Client(base_url=url, timeout=300) as client:
            while not stop.is_set():
                for key, n in (("batch_64", 64), ("batch_4", 4)):
                    started = time.perf_counter()
                    r = client.post("/v1/predict/batch", files=[("files", (f"{i}.png", big)) for i in range(n)])
                    with lock:
                        seen[key].append((r.status_code, time.perf_counter() - started))

    def connection(kind: str):
        request = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n" * 10
        while not stop.is_set():
            with socket.create_connection((host, int(port))) as s:
                s.settimeout(1.0)
                for byte in request:
                    if stop.is_set():
                        return
                    try:
                        if kind == "slow":
                            s.send(bytes([byte]))
                        if s.recv(65536) == b"":
                            break  # closed by the server
                    except TimeoutError:
                        continue
                    except OSError:
                        break
            with lock:
                seen[f"{kind}_closed"] += 1

    threads = [threading.Thread(target=batches, daemon=True)]
    threads += [threading.Thread(target=connection, args=(kind,), daemon=True)
                for kind in ("slow", "silent") for _ in range(slow_clients)]
    for t in threads:
        t.start()
    return threads, seen


def adversarial(url: str, pid: int, payloads, args) -> dict:
    """The normal load quiet, then beside the attack, `args.rounds` times in turn (a shared machine's
    load drifts): the median p99 of each, the peak RSS under attack, and what the attackers got."""
    big = _big_png(args.data_dir)
    before, _ = _tree_rss(pid)
    _reset_peak(pid)
    quiet, attacked, seen = [], [], []
    for _ in range(args.rounds):
        quiet.append(_load(url, payloads, args.requests, args.concurrency, args.time_cap))
        stop = threading.Event()
        threads, got = _attack(url, big, args.slow_clients, stop)
        time.sleep(3)  # the attack under way before the normal requests are timed
        attacked.append(_load(url, payloads, args.requests, args.concurrency, args.time_cap))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        seen.append(got)
    _, peak = _tree_rss(pid)
    time.sleep(1)
    after, _ = _tree_rss(pid)

    def median(rows, key):
        return round(float(np.median([r[key] for r in rows])), 1)

    def batches(key):
        done = [answer for got in seen for answer in got[key]]
        codes = "/".join(str(c) for c in sorted({code for code, _ in done}))
        return f"{len(done)}x {codes} in {np.median([t for _, t in done]):.2f} s" if done else "none"

    runs = quiet + attacked
    return {
        "quiet_p99_ms": median(quiet, "p99_ms"), "attacked_p99_ms": median(attacked, "p99_ms"),
        "p99_ratio": round(median(attacked, "p99_ms") / median(quiet, "p99_ms"), 2),
        "quiet_rps": median(quiet, "throughput_rps"), "attacked_rps": median(attacked, "throughput_rps"),
        "errors": sum(r["errors"] for r in runs), "error_kinds": sorted({k for r in runs for k in r["error_kinds"]}),
        "capped": any(r["capped"] for r in runs), "requests": sum(r["requests"] for r in attacked),
        "rss_before_mb": round(before / 2**20, 1), "rss_peak_mb": round(peak / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "batch_64": batches("batch_64"), "batch_4": batches("batch_4"),
        "slow_closed": sum(got["slow_closed"] for got in seen),
        "silent_closed": sum(got["silent_closed"] for got in seen),
    }


def forward_latency(model: str, data_dir: str | None, calls: int = 5000) -> list[dict]:
    """Single-image latency in this process: the model call alone, and recognize() on a 28×28 PNG.

    Keras runs on JAX (what `digits serve` uses); ONNX Runtime on the export
    (made first if missing, as `digits serve --runtime onnx` does).
    """
    from PIL import Image

    from digits.backend import use_backend

    use_backend("jax")
    from digits.datasets import load_dataset
    from digits.export import OnnxPredictor, ensure_onnx
    from digits.vision import decode_image
    from digits.inference import Predictor, recognize

    data = load_dataset("mnist", data_dir=data_dir, progress=False)
    x = data.x_test[:1].astype(np.float32) / 255
    buf = io.BytesIO()
    Image.fromarray(255 - data.x_test[0]).save(buf, "PNG")
    png = buf.getvalue()
    predictors = {"keras (jax)": Predictor.from_run(model),
                  "onnxruntime": OnnxPredictor.from_run(model, ensure_onnx(model))}
    rows = []
    for name, p in predictors.items():
        def timed(fn, n):
            for _ in range(min(200, n)):
                fn()
            t = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                t.append(time.perf_counter() - t0)
            return np.array(t) * 1e6

        forward = timed(lambda p=p: p.probabilities(x), calls)
        whole = timed(lambda p=p: recognize(p, [decode_image(png)]), calls // 5)
        rows.append({"runtime": name,
                     "forward_p50_us": round(float(np.median(forward)), 1),
                     "forward_p99_us": round(float(np.percentile(forward, 99)), 1),
                     "decode_recognize_p50_us": round(float(np.median(whole)), 1)})
    return rows


def _observed(row: dict) -> str:
    return row.get("observability") or "metrics on, log hidden"


def middleware_overhead(calls: int = 20000, rounds: int = 7) -> list[dict]:
    """Microseconds per request of digits.serving.access around an ASGI app that answers at once."""
    import asyncio
    import logging.config

    from digits.serving import logs
    from digits.serving.access import AccessMiddleware

    config = logs.log_config("json", "info")
    config["handlers"]["stderr"] = {"class": "logging.FileHandler", "filename": os.devnull, "formatter": "digits"}
    logging.config.dictConfig(config)  # the access log formatted as JSON and written (to /dev/null)

    async def answer(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/v1/predict",
             "raw_path": b"/v1/predict", "query_string": b"", "headers": [(b"host", b"bench")],
             "client": (HOST, 50000), "server": (HOST, 8000)}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    async def per_request(app) -> float:
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                await app(dict(scope), receive, send)
            best = min(best, (time.perf_counter() - started) / calls)
        return best * 1e6

    apps = {"no middleware": answer,
            "request id only (--no-metrics --no-access-log)": AccessMiddleware(answer, access_log=False, count=False),
            "+ metrics (--no-access-log)": AccessMiddleware(answer, access_log=False, count=True),
            "+ metrics and the access log (the default)": AccessMiddleware(answer, access_log=True, count=True)}
    return [{"middleware": name, "us_per_request": round(asyncio.run(per_request(app)), 1)}
            for name, app in apps.items()]


def _print_adversarial(rows: list[dict], args) -> None:
    if args.json:
        for r in rows:
            print(json.dumps(r), flush=True)
        return
    print(f"\n{args.requests} normal requests ({args.payload}, {args.concurrency} concurrent) quiet, then beside "
          f"the attack: the 64 x 4999x5000 PNG batch and a 4-PNG one in turn, {args.slow_clients} trickling "
          f"and {args.slow_clients} silent connections; {args.rounds} rounds of each, p99 and req/s their median; "
          f"{os.cpu_count()} CPUs shared by client and server\n")
    print("| runtime | p99 quiet ms | p99 attacked ms | ratio (target < 3) | req/s quiet, attacked | "
          "peak RSS MB (target < 1000) | RSS before, after MB | 64-PNG batches | 4-PNG batches | "
          "trickling, silent connections closed | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['quiet_p99_ms']} | {r['attacked_p99_ms']} | {r['p99_ratio']} | "
              f"{r['quiet_rps']}, {r['attacked_rps']} | {r['rss_peak_mb']} | {r['rss_before_mb']}, "
              f"{r['rss_after_mb']} | {r['batch_64']} | {r['batch_4']} | {r['slow_closed']}, "
              f"{r['silent_closed']} | {r['errors']} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="RUN_DIR, or 'bundled' (default: train a small model first)")
    parser.add_argument("--runtime", nargs="+", choices=("keras", "onnx"), default=["keras", "onnx"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--payload", choices=("png", "photo", "pixels"), default="png")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--micro-batch", action="store_true")
    parser.add_argument("--time-cap", type=float, default=300, help="seconds; stop early past this")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR"))
    parser.add_argument("--json", action="store_true", help="print one JSON object per configuration")
    parser.add_argument("--observability", action="store_true",
                        help="each runtime with the metrics and the access log on and off: their cost")
    parser.add_argument("--repeat", type=int, default=1, help="with --observability: the on/off pairs per runtime")
    parser.add_argument("--overhead", action="store_true",
                        help="instead: microseconds per request of the request-id, metrics and access-log middleware")
    parser.add_argument("--forward", action="store_true",
                        help="instead: single-image latency of the model call, Keras (JAX) vs ONNX Runtime")
    parser.add_argument("--adversarial", action="store_true",
                        help="instead: the normal load quiet, then beside big batches and slow clients")
    parser.add_argument("--slow-clients", type=int, default=20,
                        help="with --adversarial: connections trickling their request, and as many silent ones")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --adversarial: quiet and attacked phases in turn; each p99 is their median")
    args = parser.parse_args()
    if args.adversarial and args.observability:
        parser.error("--adversarial runs on the default settings: leave out --observability")

    if args.overhead:
        rows = middleware_overhead()
        print("| middleware around an app that answers at once | µs per request (best of 7 × 20,000) |")
        print("|---|---|")
        for r in rows:
            print(f"| {r['middleware']} | {r['us_per_request']} |")
        return 0

    if args.forward:
        with tempfile.TemporaryDirectory(prefix="digits-serve-load-") as tmp:
            model = args.model or _train_small(args.data_dir, Path(tmp))
            rows = forward_latency(model, args.data_dir)
        print("| runtime | model call p50 µs | model call p99 µs | decode + recognize() p50 µs |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['runtime']} | {r['forward_p50_us']} | {r['forward_p99_us']} | "
                  f"{r['decode_recognize_p50_us']} |")
        return 0

    with tempfile.TemporaryDirectory(prefix="digits-serve-load-") as tmp:
        tmp = Path(tmp)
        model = None if args.model == "bundled" else args.model or _train_small(args.data_dir, tmp)
        payloads = _payloads(args.payload, args.data_dir)
        rows = []
        configs = [(runtime, None) for runtime in args.runtime]
        if args.observability:
            configs = [(runtime, state) for _ in range(args.repeat) for runtime in args.runtime
                       for state in ("on", "off")]
        for n, (runtime, observed) in enumerate(configs):
            flags = OBSERVABILITY[observed] if observed else ["--log-level", "warning"]
            proc, url = _start_server(model, runtime, args.workers, args.micro_batch, tmp / f"{n}-{runtime}.log",
                                      flags)
            try:
                _load(url, payloads, args.warmup, args.concurrency, 60)
                if args.adversarial:
                    rows.append(dict(adversarial(url, proc.pid, payloads, args), runtime=runtime,
                                     payload=args.payload, concurrency=args.concurrency))
                    continue
                before, _ = _tree_rss(proc.pid)
                counted = _counted(url)
                cpu = _tree_cpu(proc.pid)
                result = _load(url, payloads, args.requests, args.concurrency, args.time_cap)
                result["server_cpu_ms"] = round((_tree_cpu(proc.pid) - cpu) * 1000 / result["requests"], 2)
                after, peak = _tree_rss(proc.pid)
                if counted is not None:
                    result["counted"] = _counted(url) - counted
                    if result["counted"] != result["requests"] - result["errors"]:
                        result["errors"] += 1
                        result["error_kinds"].append(f"/metrics counted {result['counted']:g}")
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if observed == "on":  # the access log has a line for every request, the warm-up's too
                logged = (tmp / f"{n}-{runtime}.log").read_text().count(" digits.access: request ")
                if logged < result["requests"]:
                    result["errors"] += 1
                    result["error_kinds"].append(f"{logged} access-log lines")
            result.update(runtime=runtime, observability=observed, payload=args.payload, concurrency=args.concurrency,
                          workers=args.workers, micro_batch=args.micro_batch,
                          rss_before_mb=round(before / 2**20, 1), rss_after_mb=round(after / 2**20, 1),
                          rss_peak_mb=round(peak / 2**20, 1))
            rows.append(result)
            if args.json:
                print(json.dumps(result), flush=True)

    if args.adversarial:
        _print_adversarial(rows, args)
    elif not args.json:
        print(f"\n{args.requests} requests, {args.concurrency} concurrent, payload {args.payload}, "
              f"{args.workers} worker(s){', micro-batching' if args.micro_batch else ''}, "
              f"{os.cpu_count()} CPUs (client and server share them)\n")
        print("| runtime | metrics + access log | req/s | server CPU ms per request | p50 ms | p95 ms | p99 ms | "
              "max ms | errors | correct | counted by /metrics | RSS before MB | RSS after MB | peak MB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            counted = f"{r['counted']:g}" if "counted" in r else "-"
            print(f"| {r['runtime']} | {_observed(r)} | {r['throughput_rps']} | {r['server_cpu_ms']} | "
                  f"{r['p50_ms']} | {r['p95_ms']} | "
                  f"{r['p99_ms']} | {r['max_ms']} | {r['errors']} | {r['correct']}/{r['requests']} | {counted} | "
                  f"{r['rss_before_mb']} | {r['rss_after_mb']} | {r['rss_peak_mb']} |")
    bad = [r for r in rows if r["errors"] or r["capped"]]
    for r in bad:
        print(f"{r['runtime']} ({_observed(r)}): {r['errors']} errors {r['error_kinds']}"
              f"{', stopped at the time cap' if r['capped'] else ''}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
