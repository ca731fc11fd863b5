"""``digits serve``: the HTTP API and the drawing page (:func:`digits.serving.serve`)."""

from __future__ import annotations

from digits.cli.common import add_backend, add_model, port, positive_float, positive_int, probability

_MIB = 1024 * 1024


def add_parser(subparsers) -> None:
    from digits.serving.settings import ServeSettings

    defaults = ServeSettings()
    p = subparsers.add_parser("serve", help="serve the HTTP API and the drawing page (FastAPI under uvicorn)")
    add_model(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=port, default=8000, help="default: %(default)s")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes, each loading the model once (default: %(default)s)")
    p.add_argument("--runtime", choices=("keras", "onnx"), default=defaults.runtime,
                   help="keras (on JAX unless --backend says otherwise) or onnx "
                        "(ONNX Runtime on RUN_DIR/export/model.onnx, exported first if missing) "
                        "(default: %(default)s)")
    p.add_argument("--max-upload-mb", type=positive_float, default=defaults.max_upload_bytes / _MIB, metavar="MB",
                   help="largest request body, in MiB (default: %(default)g)")
    p.add_argument("--max-batch", type=positive_int, default=defaults.max_batch, metavar="N",
                   help="most images in one /v1/predict/batch request (default: %(default)s)")
    p.add_argument("--max-pixels", type=positive_int, default=defaults.max_pixels, metavar="N",
                   help="most pixels in one uploaded image (default: %(default)s)")
    p.add_argument("--threshold", type=probability, metavar="P", default=defaults.threshold,
                   help="below this confidence the label is null, \"unsure\" (default: the model's own)")
    p.add_argument("--threads", type=positive_int, metavar="N", default=defaults.threads,
                   help="requests decoded and classified at once per worker (default: the CPU count)")
    p.add_argument("--micro-batch", action="store_true", default=defaults.micro_batch,
                   help="run the model calls of requests that arrive together as one batch "
                        "(no faster on a CPU, where the model call is 2%% of a request)")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info",
                   help="uvicorn's log level; warning and above hide the access log (default: %(default)s)")
    p.add_argument("--log-format", choices=ServeSettings.LOG_FORMATS, default=defaults.log_format,
                   help="text, or json: one JSON object a line for log collectors (default: %(default)s)")
    p.add_argument("--no-access-log", dest="access_log", action="store_false", default=defaults.access_log,
                   help="no log line per request")
    p.add_argument("--no-metrics", dest="metrics", action="store_false", default=defaults.metrics,
                   help="no GET /metrics (Prometheus) and no counting")
    p.add_argument("--graceful-timeout", type=positive_float, metavar="SECONDS",
                   default=defaults.graceful_timeout,
                   help="on SIGTERM, how long requests in flight may take to finish before they are "
                        "cancelled and the server exits (default: %(default)g)")
    _add_hardening_flags(p, defaults)
    add_backend(p)
    p.set_defaults(func=cmd_serve)


_LIMIT_HELP = {  # a flag for each of ServeSettings' LIMITS: the work a request may cost, its connection's limits
    "predict_pixels": "/v1/predict decodes bigger uploads reduced to at most N pixels",
    "max_request_pixels": "most pixels the decoders fill for one request",
    "max_pixels_in_flight": "most pixels decoded at once per worker, over all requests",
    "big_picture_threads": "threads per worker, of lower CPU priority, for requests with a picture of a "
                           "megapixel or more",
    "header_timeout": "seconds for a request's headers to arrive",
    "body_timeout": "seconds for a request's body to arrive after its headers",
    "keep_alive_timeout": "seconds an idle keep-alive connection stays open",
    "max_connections": "connections and requests at once per worker; past it: 503",
    "max_header_bytes": "largest request line and headers; past it: 400",
}


def _add_hardening_flags(p, defaults) -> None:
    g = p.add_argument_group("limits on work, memory and connections (docs/serving.md, \"Limits and settings\")")
    from digits.serving.settings import LIMITS

    for name in LIMITS:  # seconds are floats, counts whole numbers
        seconds = isinstance(getattr(defaults, name), float)
        g.add_argument("--" + name.replace("_", "-"), type=positive_float if seconds else positive_int,
                       metavar="S" if seconds else "N", default=getattr(defaults, name),
                       help=_LIMIT_HELP[name] + " (default: %(default)s)")
    g.add_argument("--allowed-hosts", metavar="NAMES", default=defaults.allowed_hosts,
                   help="comma-separated names the Host header may carry, or '*' for any (default: the --host "
                        "name, and localhost, 127.0.0.1 and ::1 when it is a loopback address; any for 0.0.0.0)")


def cmd_serve(args) -> None:
    from digits.serving import ServeSettings, serve
    from digits.serving.settings import LIMITS

    settings = ServeSettings(
        model=args.run, runtime=args.runtime, backend=args.backend,
        max_upload_bytes=int(args.max_upload_mb * _MIB), max_batch=args.max_batch,
        max_pixels=args.max_pixels, threshold=args.threshold,
        threads=args.threads, micro_batch=args.micro_batch, metrics=args.metrics, access_log=args.access_log,
        log_format=args.log_format, graceful_timeout=args.graceful_timeout,
        allowed_hosts=args.allowed_hosts, **{name: getattr(args, name) for name in LIMITS})
    serve(settings, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)
