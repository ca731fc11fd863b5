"""How long the bundled models take to load and answer in a fresh process (Keras already imported).

Each try is a new Python process: import Keras, then time loading the
bundled classifier and its first answer, and loading the group reader and
its first reading; the best of `--tries` is printed (the model card promises
the classifier loads in under 0.5 s on a quiet machine).

    python benchmarks/bundled_load.py [--tries 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CODE = """
import time, numpy as np
from digits.backend import use_backend; use_backend(None); import keras
from digits.inference import load_predictor
from digits.sequence import load_group_reader
t0 = time.perf_counter(); p = load_predictor(None); t1 = time.perf_counter()
p.probabilities(np.zeros((1, 28, 28), np.float32)); t2 = time.perf_counter()
r = load_group_reader(); t3 = time.perf_counter()
r.read([np.ones((28, 56), np.float32)]); t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [tuple(map(float, subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                                            check=True, timeout=300).stdout.split())) for _ in range(args.tries)]
    names = ("classifier: load", "classifier: first answer", "group reader: load", "group reader: first reading")
    for i, name in enumerate(names):
        print(f"{name}: best {min(r[i] for r in runs) * 1000:.0f} ms of {args.tries}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
