"""The one exception type a user is meant to see.

Everything that goes wrong because of what the user asked for (a missing
file, a bad flag, a corrupt download) raises :class:`DigitsError` with one
line that names the thing and what is wrong.  The CLI prints that line and
exits with status 2; the HTTP API turns it into a 4xx JSON body.  Any other
exception is a bug and keeps its traceback.
"""


class DigitsError(Exception):
    """An expected, user-facing error with a one-line message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
