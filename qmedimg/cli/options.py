"""The command line's value types (positive numbers, shots, thresholds, qubit lists, classes) and the option
groups several commands share (data, test limit, decision, cross-check, executor, torch device, backend)."""

from __future__ import annotations

import argparse

from qmedimg.cli.threads import threads_help
from qmedimg.errors import QmedimgError


def positive(kind: type):
    """An argparse type: a number of ``kind`` that must be > 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{value} must be > 0")
        return value

    return parse


positive_int, positive_float = positive(int), positive(float)


def shots(text: str):
    """A shot count > 0, or 'none' (exact expectation values)."""
    return "none" if text.strip().lower() == "none" else positive_int(text)


def threshold(text: str):
    """A decision threshold: a number in (0, 1), or a rule that picks it on the validation split."""
    if text in ("val", "youden"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number in (0, 1), 'val' or 'youden'")
    return value


def qubit_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of physical qubits like 0,1,2,3") from None


def classes(text: str) -> list[int]:
    from qmedimg.data import parse_classes

    try:
        return parse_classes(text)
    except QmedimgError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def data_options(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("data")
    src.add_argument("--dataset", metavar="FLAG", help="MedMNIST 2D flag (breastmnist, pathmnist, …) or 'synthetic'")
    src.add_argument("--data-file", metavar="PATH.npz", help="your own data in MedMNIST's npz layout")
    src.add_argument("--data-root", metavar="DIR", help="where MedMNIST files are/go (default ~/.medmnist)")
    src.add_argument("--size", type=int, default=28, choices=[28, 64, 128, 224], help="image size (default 28)")
    src.add_argument("--classes", type=classes, metavar="A,B", help="train on these labels only, relabelled 0..k-1")
    src.add_argument("--limit", type=positive_int, metavar="N", help="at most N samples per split (seeded)")


def test_limit_option(group) -> None:
    group.add_argument("--test-limit", type=positive_int, metavar="N", help="evaluate only the first N test images")


def decision_options(group) -> None:
    group.add_argument("--balanced-sampling", action="store_true",
                       help="draw training images with every class equally likely (seeded; not with --class-weights)")
    group.add_argument("--threshold", type=threshold, default=None, metavar="P|val|youden",
                       help="binary tasks: P(class 1) above which the run says class 1, or chosen on the validation "
                       "split at the end of training: val = best accuracy, youden = best sensitivity + specificity "
                       "(not given: 0.5; multi-label: per label; any value, 0.5 too, is refused on multi-class tasks)")


def cross_check_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cross-check", type=int, default=0, metavar="N",
                        help="run N of the points whose backend samples noise trajectories (simulator: auto or "
                        "trajectories) again on Aer (simulator: aer; noisy exact points and the widest heads first), "
                        "and compare them in summary.md (default 0)")


def executor_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("where the grid's cells run")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: one cell after another here (default); ray: cells as Ray tasks side by side")
    g.add_argument("--ray-address", metavar="ADDRESS", help="default: start a local Ray on this machine; auto: the "
                   "Ray cluster running here (`ray start --head`); HOST:PORT or ray://HOST:10001: a remote cluster")
    g.add_argument("--threads", type=positive_int, metavar="N", help=threads_help(grid=True))


def device_options(parser: argparse.ArgumentParser, amp: bool = False) -> None:
    g = parser.add_argument_group("torch device (the CNN's; the quantum device is the --backend entry, and a quantum "
                                  "head's estimator runs on the CPU)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="torch device the network runs on: auto = cuda if torch sees a GPU, else cpu (default auto)")
    if amp:
        g.add_argument("--amp", action="store_true",
                       help="train the CNN under float16 autocast (CUDA only; the head stays float32)")


def backend_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    g = parser.add_argument_group("backend (entries of backends.yaml; options override the entry)")
    g.add_argument("--backend", required=required, metavar="NAME",
                   help="registry entry: the quantum device or simulator (default exact)")
    g.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    g.add_argument("--shots", type=shots, metavar="S|none",
                   help="shots per image, or none for exact expectation values (default: the entry's)")
    g.add_argument("--noise-scale", type=float, metavar="S", help="fake: error rates × S (0 = ideal)")
    g.add_argument("--optimization-level", type=int, choices=[0, 1, 2, 3])
    g.add_argument("--layout-method", choices=["default", "trivial", "dense", "sabre"])
    g.add_argument("--routing-method", choices=["default", "basic", "lookahead", "sabre", "none"])
    g.add_argument("--initial-layout", type=qubit_list, metavar="Q0,Q1,..", help="physical qubit per circuit qubit")
    g.add_argument("--seed-transpiler", type=int)
    g.add_argument("--approximation-degree", type=float)
    g.add_argument("--dd", choices=["XX", "XY4"], help="dynamical decoupling sequence (ALAP scheduled)")


def track_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--track", choices=["mlflow"], help="once the command has finished, also log its parameters, "
                        "metrics (per epoch too) and files to MLflow: MLflow's default local store, or "
                        "$MLFLOW_TRACKING_URI; a grid as a parent run with a child per cell; a tracker that fails "
                        "is one warning, the files stay (needs pip install \"qmedimg[track]\")")
