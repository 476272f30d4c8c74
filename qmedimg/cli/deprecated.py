"""Old spellings of renamed options: each still works for one release, exactly as the new one does,
after one line on stderr that names the new spelling.

An option means one thing in every command. Where one name meant two things, the command that used
it the other way got a name of its own, and the old spelling stays there, hidden from ``--help``::

    qmedimg evaluate RUN --limit 8       ->  qmedimg evaluate RUN --test-limit 8
    qmedimg noise-study RUN --limit 8    ->  qmedimg noise-study RUN --test-limit 8
    qmedimg evaluate RUN --resume        ->  qmedimg evaluate RUN --collect-jobs

(``--limit N`` is the data option, N samples per split, in train, compare and width-study; ``--resume
DIR`` is the run ``train`` continues.) Removing them in the next release is deleting ``RENAMED``'s
entries.
"""

from __future__ import annotations

import argparse
import sys

# (command, old spelling): the new spelling, an option of the same command with the same meaning.
RENAMED = {
    ("evaluate", "--limit"): "--test-limit",
    ("noise-study", "--limit"): "--test-limit",
    ("evaluate", "--resume"): "--collect-jobs",
}


def notice(command: str, old: str, new: str) -> str:
    """The line an old spelling prints on stderr."""
    return (f"qmedimg: {old} in {command} is deprecated, use {new} (same meaning); it will be removed in the "
            "next release")


class DeprecatedOption(argparse.Action):
    """An old spelling of ``new`` (an action of the same parser): says :func:`notice` once per parse,
    then does what ``new`` does with the same values."""

    def __init__(self, option_strings, dest, *, command: str, new: argparse.Action, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.command, self.new, self.said = command, new, False

    def __call__(self, parser, namespace, values, option_string=None):
        if not self.said:
            print(notice(self.command, option_string, self.new.option_strings[0]), file=sys.stderr)
            self.said = True
        self.new(parser, namespace, values, option_string)


def add_deprecated(parser: argparse.ArgumentParser, command: str) -> None:
    """Give ``command``'s parser the old spellings of its renamed options (after the new ones exist)."""
    for (name, old), new in RENAMED.items():
        if name != command:
            continue
        action = parser._option_string_actions[new]
        # same dest, nargs, type and choices: argparse converts and checks the value as for the new spelling
        parser.add_argument(old, action=DeprecatedOption, command=command, new=action, dest=action.dest,
                            nargs=action.nargs, type=action.type, choices=action.choices, metavar=action.metavar,
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)
