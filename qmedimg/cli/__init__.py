"""The ``qmedimg`` command: ``qmedimg COMMAND --help`` for each command's options and examples.

Example::

    from qmedimg.cli import main
    main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", "runs/demo"])   # 0 = success

Before anything heavy loads, ``main`` sets ``OMP_WAIT_POLICY=PASSIVE`` for its own process when the variable
is unset (idle torch threads then sleep instead of spinning beside other busy processes; same metrics:
:mod:`qmedimg.cli.threads`). It is the one environment variable qmedimg sets; ``import qmedimg`` sets none.
Each command that computes runs on ``--threads`` cores (default: every core this process may run on).
"""

from __future__ import annotations

import sys

from qmedimg.cli.commands import (cmd_backends, cmd_circuits, cmd_compare, cmd_evaluate, cmd_explain, cmd_export,
                                  cmd_noise_study, cmd_predict, cmd_train, cmd_transpile, cmd_width_study,
                                  interrupted)
from qmedimg.cli.messages import one_line_warnings
from qmedimg.cli.parser import build_parser
from qmedimg.cli.threads import command_cores, sleep_when_idle
from qmedimg.errors import GridIncomplete, QmedimgError

COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "backends": cmd_backends, "transpile": cmd_transpile,
            "noise-study": cmd_noise_study, "compare": cmd_compare, "predict": cmd_predict, "explain": cmd_explain,
            "circuits": cmd_circuits, "width-study": cmd_width_study, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    sleep_when_idle()  # before torch loads the OpenMP runtime that reads it
    args = build_parser().parse_args(argv)
    try:
        with command_cores(args), one_line_warnings():
            COMMANDS[args.command](args)
    except GridIncomplete as exc:  # some cells failed, the others finished
        print(f"qmedimg: error: {exc}", file=sys.stderr)
        return 2 if exc.user_error else 1
    except QmedimgError as exc:
        print(f"qmedimg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write the files module did not wrap (mkdir, an appended CSV): still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"qmedimg: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qmedimg: interrupted; {interrupted(args)}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
