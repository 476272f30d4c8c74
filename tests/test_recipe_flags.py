"""The recipe is one value: every TrainConfig field is a `qmedimg train` option (or listed here, with the
reason it is not), and every train option is a field (or says how the command runs, not what it trains)."""

import argparse

from qmedimg.cli.parser import build_parser
from qmedimg.rundir import TrainConfig

SPELLED_OTHERWISE = {"backends_file": "backends"}  # field -> the option's dest
PYTHON_ONLY = {  # recipe fields the command line does not offer (Python API: make_config): reviewed, each for a reason
    "ema_decay": "the moving average's decay: 0.99 by default, 0 in compare's and the studies' short recipe",
    "label_smoothing": "part of the default recipe (0.1), changed only through the Python API",
    "stem": "resnet18's first layers, chosen from the image size (3x3 at 28, imagenet from 64)",
    "warmup_epochs": "the learning-rate warm-up, part of the default schedule (3 epochs)",
}
HOW_IT_RUNS = {"device", "quiet", "resume", "threads", "track"}  # options that are not part of what is trained


def train_options() -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {action.dest for action in commands["train"]._actions if action.dest != "help"}


def test_every_recipe_field_is_a_train_option_or_listed_with_its_reason():
    fields = set(TrainConfig.model_fields)
    offered = {SPELLED_OTHERWISE.get(f, f) for f in fields} & train_options()
    unlisted = {f for f in fields if SPELLED_OTHERWISE.get(f, f) not in offered} - set(PYTHON_ONLY)
    assert unlisted == set(), f"TrainConfig fields with no `qmedimg train` option: {sorted(unlisted)}"
    assert set(PYTHON_ONLY) <= fields, "a listed field no longer exists: drop it from PYTHON_ONLY"
    assert not set(PYTHON_ONLY) & {SPELLED_OTHERWISE.get(f, f) for f in train_options()}, \
        "a listed field has an option now: drop it from PYTHON_ONLY"


def test_every_train_option_is_a_recipe_field_or_says_how_the_command_runs():
    fields = {SPELLED_OTHERWISE.get(f, f) for f in TrainConfig.model_fields}
    assert train_options() - fields - HOW_IT_RUNS == set()
