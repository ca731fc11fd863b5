"""The ``digits`` command: each subcommand parses its flags, calls one library function, prints.

One module per command holds its flags (``add_parser``) beside its handler;
:mod:`digits.cli.common` holds what several share.  Expected errors
(:class:`DigitsError`, bad flags) print one line on stderr and exit with
status 2.  Keras is imported only by the subcommands that need it, after the
backend is chosen.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from digits import interrupts
from digits.cli import ensemble, evaluate, export, models, predict, read, report, serve, train, tune
from digits.cli.common import Progress as _Progress  # noqa: F401  (tests/test_predict_files.py tunes its defaults)
from digits.errors import DigitsError

EXIT_USAGE = 2

COMMANDS = (train, evaluate, predict, read, ensemble, models, report, serve, export, tune)
"""The command modules, in the order ``digits --help`` lists them."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help), not a usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from digits import __version__

    parser = _Parser(prog="digits", description="Handwritten digit recognition with Keras.")
    parser.add_argument("--version", action="version", version=f"digits {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command.  Ctrl-C and SIGTERM stop it (exit 130 and 143), even one that Python
    dropped mid-way (see :mod:`digits.interrupts`): it is raised again before the command ends."""
    args = build_parser().parse_args(argv)
    try:
        with interrupts.stop_on_signals():
            args.func(args)
            interrupts.check()
    except DigitsError as e:
        print(f"digits {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        terminated = isinstance(e, interrupts.Terminated)
        print(f"digits {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return 0


def run() -> None:
    """The `digits` command: :func:`main`, then exit with its code.

    After Ctrl-C or SIGTERM the run folder is already cleaned up, so the
    process ends at once: tearing down the interpreter while TensorFlow's
    threads are mid-step can crash (a segfault instead of the exit code).
    """
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    # Tearing down the interpreter runs full garbage collections over the hundreds of
    # thousands of objects Keras and JAX made (1.9-4.6 s on a busy machine, 0.3-1.4 s
    # frozen); frozen, they are only freed.  Everything Digits writes is closed by now.
    gc.freeze()
    sys.exit(code)
