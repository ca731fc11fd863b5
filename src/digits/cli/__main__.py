"""``python -m digits.cli``: the ``digits`` command, as the tests and the load benchmark start it."""

from digits.cli import run

run()
