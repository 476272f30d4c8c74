"""The one exception type for errors a user can cause (bad input, missing files)."""


class QmedimgError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits with status 2."""
