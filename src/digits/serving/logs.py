"""The server's log lines: plain text or one JSON object a line (``digits serve --log-format``).

:func:`log_config` is the ``logging.config.dictConfig`` dictionary handed to
uvicorn (its ``log_config``), so uvicorn's own lines, Digits' (``digits.*``)
and the access log (``digits.access``, one line per request, written by
:mod:`digits.serving.access`) share one format, on stderr, in every worker
process.  Both formats carry the same fields:

- text: ``2026-01-02T03:04:05.678Z INFO digits.access: request method=POST path=/v1/predict ...``,
  the fields as ``key=value`` (logfmt), quoted where they hold a space;
- json: ``{"time", "level", "logger", "message", "pid", ...fields}``, plus
  ``exception`` with the traceback when there is one.

A line logged while a request is answered carries its ``request_id``
(:data:`request_id`, set by the access middleware), so an error's traceback
can be matched to the request, and to the ``X-Request-ID`` its client got.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("digits_request_id", default=None)
"""The id of the request being answered in this context (None outside one)."""


def _fields(record: logging.LogRecord) -> dict:
    """The record's structured fields (``extra={"fields": {...}}``) and the request id, if any."""
    fields = dict(getattr(record, "fields", None) or {})
    rid = request_id.get()
    if rid is not None:
        fields.setdefault("request_id", rid)
    return fields


_second: tuple[int, str] = (-1, "")
"""The last second formatted, and its text: the lines of one second share it."""


def _time(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC to the millisecond: ``2026-01-02T03:04:05.678Z``."""
    global _second
    second = int(record.created)
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{int(record.msecs):03d}Z"


_PLAIN = re.compile(r'[^\s"=\\]+')


def _logfmt(value) -> str:
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE key=value ...``, then the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        line += "".join(f" {key}={_logfmt(value)}" for key, value in _fields(record).items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log collectors (the traceback is a field, not more lines)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": _time(record), "level": record.levelname, "logger": record.name,
               "message": record.getMessage(), "pid": record.process, **_fields(record)}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}
"""By ``ServeSettings.log_format`` (one of ``ServeSettings.LOG_FORMATS``)."""


def log_config(log_format: str, log_level: str) -> dict:
    """uvicorn's ``log_config``: uvicorn's and Digits' loggers in `log_format`, on stderr, at `log_level`.

    uvicorn's own access log is switched off (:mod:`digits.serving.access`
    writes the one line per request); ``--log-level warning`` and above hide
    the access log, as they hide uvicorn's.
    """
    level = log_level.upper()
    formatter = f"{FORMATTERS[log_format].__module__}.{FORMATTERS[log_format].__qualname__}"
    handler = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"digits": {"()": formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "digits",
                                "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": handler, "digits": handler,
                    "uvicorn.access": {"handlers": [], "propagate": False}},
    }


def announce(message: str, log_format: str) -> None:
    """Print the start-up line on stderr in `log_format` (before uvicorn has set up logging)."""
    record = logging.makeLogRecord({"name": "digits.serving", "levelname": "INFO", "levelno": logging.INFO,
                                    "msg": message})
    text = message if log_format == "text" else FORMATTERS[log_format]().format(record)
    print(text, file=sys.stderr, flush=True)
