"""The ``qmedimg`` command: ``qmedimg COMMAND --help`` for each command's options and examples.

Example::

    from qmedimg.cli import main
    main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", "runs/demo"])   # 0 = success

Before anything heavy loads, ``main`` sets ``OMP_WAIT_POLICY=PASSIVE`` for its own process when the variable
is unset (idle torch threads then sleep instead of spinning beside other busy processes; same metrics:
:mod:`qmedimg.cli.threads`). It is the one environment variable qmedimg sets; ``import qmedimg`` sets none.
Each command that computes runs on ``--threads`` cores (default: every core this process may run on).
With ``--track mlflow``, MLflow is checked importable before the command runs, and the finished command's
output directory is logged to MLflow after it (:mod:`qmedimg.tracking`); a tracking failure is one warning
line on stderr and changes neither the exit code nor the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qmedimg.cli.commands import (cmd_backends, cmd_circuits, cmd_compare, cmd_evaluate, cmd_explain, cmd_export,
                                  cmd_noise_study, cmd_predict, cmd_report, cmd_train, cmd_transpile, cmd_width_study,
                                  interrupted)
from qmedimg.cli.messages import one_line_warnings
from qmedimg.cli.parser import build_parser
from qmedimg.cli.threads import command_cores, sleep_when_idle
from qmedimg.errors import GridIncomplete, QmedimgError

COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "backends": cmd_backends, "transpile": cmd_transpile,
            "noise-study": cmd_noise_study, "compare": cmd_compare, "predict": cmd_predict, "explain": cmd_explain,
            "circuits": cmd_circuits, "width-study": cmd_width_study, "export": cmd_export, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    sleep_when_idle()  # before torch loads the OpenMP runtime that reads it
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "track", None):
            from qmedimg.tracking import require_mlflow

            require_mlflow()  # now, not after an hour of training
        with command_cores(args), one_line_warnings():
            written = COMMANDS[args.command](args)
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
    if getattr(args, "track", None) and not getattr(args, "dry_run", False):
        track(args, written)
    return 0


def track(args: argparse.Namespace, written: Path | None = None) -> None:
    """Log what the finished command wrote to MLflow; a failure is one warning line on stderr, nothing more."""
    from qmedimg import tracking

    options = {k: v for k, v in vars(args).items() if k not in ("command", "track")}
    if args.command == "evaluate":
        folder = Path(args.run_dir)
    elif args.command == "train":
        folder = Path(args.resume or args.out)
    else:  # the studies and grids; noise-study's default folder is in its first run
        folder = Path(args.out or Path(args.run_dirs[0]) / "noise-study")
    evaluation = written.name if args.command == "evaluate" else None
    uri = "MLflow"
    try:
        uri = tracking.tracking_uri()
        run_id = tracking.track_directory(folder, args.command, options, evaluation=evaluation)
    except (Exception, KeyboardInterrupt) as exc:  # a server down, a refused write, Ctrl-C: the files are the record
        reason = " ".join(str(exc).split()) or type(exc).__name__
        reason = reason if len(reason) <= 240 else reason[:239] + "…"
        print(f"qmedimg: warning: tracking to {uri} failed: {reason}; the run's files are in {folder}", file=sys.stderr)
        return
    print(f"tracked in MLflow ({uri}): run {run_id}")


if __name__ == "__main__":
    sys.exit(main())
