"""Errors poxi raises on purpose.

Every error carries a Chinese message that names the fix and an exit code. The CLI prints the message
on one line and exits with the code; nothing here formats tracebacks or logs.
"""


class PoxiError(Exception):
    """Base for expected failures. `exit_code` 2 means unusable input or setup."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(PoxiError):
    """A file or argument the user gave cannot be used (missing, empty, binary, broken)."""


class IndexError_(PoxiError):
    """The on-disk index is missing or was built differently (another embedder)."""


class ModelError(PoxiError):
    """A chat model could not be reached, refused the request, or kept returning unusable output."""


class Cancelled(PoxiError):
    """The caller cancelled a running model call or run (the workbench's 取消); not a failure of poxi's."""

    exit_code = 130
