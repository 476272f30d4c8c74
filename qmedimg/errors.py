"""The exception types for errors a user can cause (bad input, missing files) or should hear of by name."""


class QmedimgError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits with status 2."""


class GridIncomplete(QmedimgError):
    """Some cells of a grid failed (named in the message) while the others finished. The CLI exits
    with status 2 when every failure was the user's to fix (bad input, an unwritable folder), else 1."""

    def __init__(self, message: str, *, user_error: bool = False):
        super().__init__(message)
        self.user_error = user_error
