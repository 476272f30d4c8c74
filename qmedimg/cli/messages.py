"""How the command line shows qmedimg's own warnings while a command runs: one line on stderr,
``qmedimg: warning: …``, like its errors; other packages' warnings as Python shows them."""

from __future__ import annotations

import contextlib
import sys
import warnings


@contextlib.contextmanager
def one_line_warnings():
    """For the duration of a command, print warnings of qmedimg's own categories (e.g.
    :class:`qmedimg.data.datasets.UnpublishedDataWarning`) as one line; Python's filters still decide which are
    shown (the default: once per message and place), and everything is as before afterwards."""
    with warnings.catch_warnings():
        python_shows = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if category.__module__.split(".")[0] == "qmedimg":
                print(f"qmedimg: warning: {message}", file=sys.stderr)
            else:
                python_shows(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
