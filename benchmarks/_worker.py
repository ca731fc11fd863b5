"""Run one measurement in a fresh Python process and read back its ``RESULT`` line.

The benchmarks time each variant in its own process, so that one variant's
imports, compiled graphs and thread pools never colour the next one's times.
A worker script prints ``RESULT <json>`` as its last word; everything else it
prints (TensorFlow's logging included) is ignored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_worker(code: str, args: list, label: str, env: dict | None = None, keep_going: bool = False):
    """`code` run as ``python -c code *args``; returns its RESULT's JSON value.

    On failure (a non-zero exit, or no RESULT line) this exits with `label`,
    the exit status and the end of the worker's stderr, or, with `keep_going`,
    prints that in one line and returns None.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if proc.returncode == 0 and line is not None:
        return json.loads(line[len("RESULT "):])
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if keep_going:
        print(f"{label} failed (exit {proc.returncode}): {last}", flush=True)
        return None
    sys.exit(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
