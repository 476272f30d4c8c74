"""The ``qmedimg`` command: parsing only; each command calls one function of the package."""

from __future__ import annotations

import argparse
import sys

from qmedimg.errors import QmedimgError

EPILOG_TRAIN = """examples:
  qmedimg train --dataset breastmnist --out runs/breast
  qmedimg train --dataset pathmnist --classes 3,7 --limit 2000 --circuit ring --out runs/path37
  qmedimg train --data-file hospital.npz --head classical --out runs/ablation
  qmedimg train --resume runs/breast          # continue an interrupted run
"""


def _positive(kind: type):
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


_positive_int, _positive_float = _positive(int), _positive(float)


def _classes(text: str) -> list[int]:
    from qmedimg.data import parse_classes

    try:
        return parse_classes(text)
    except QmedimgError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qmedimg",
        description="Hybrid quantum-classical medical image classification on Qiskit.",
        epilog="example:\n  qmedimg train --dataset breastmnist --out runs/breast\n\n"
        "run `qmedimg COMMAND --help` for each command's options and examples",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    t = sub.add_parser("train", help="train a hybrid (or classical-head) model on MedMNIST",
                       description="Train a CNN whose head is a variational quantum circuit and write "
                       "a run directory. The checkpoint kept is the last epoch's moving-average "
                       "weights (or, with --select best-val, the best validation epoch's); the test "
                       "split never chooses anything.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = t.add_argument_group("data")
    src.add_argument("--dataset", metavar="FLAG", help="MedMNIST 2D flag (breastmnist, pathmnist, …) or 'synthetic'")
    src.add_argument("--data-file", metavar="PATH.npz", help="your own data in MedMNIST's npz layout")
    src.add_argument("--data-root", metavar="DIR", help="where MedMNIST files are/go (default ~/.medmnist)")
    src.add_argument("--size", type=int, default=28, choices=[28, 64, 128, 224], help="image size (default 28)")
    src.add_argument("--classes", type=_classes, metavar="A,B", help="train on these labels only, relabelled 0..k-1")
    src.add_argument("--limit", type=_positive_int, metavar="N", help="at most N samples per split (seeded)")
    m = t.add_argument_group("model")
    m.add_argument("--circuit", default="sel", metavar="NAME|PATH", help="circuit from circuits/ or a .qasm file (default sel)")
    m.add_argument("--qubits", type=_positive_int, help="circuit width (template default: 4)")
    m.add_argument("--layers", type=_positive_int, help="circuit layers (template default)")
    m.add_argument("--head", default="quantum", choices=["quantum", "classical"], help="classical = same-size ablation")
    m.add_argument("--backbone", choices=["compact", "hqcnn"], help="CNN feature extractor (default hqcnn)")
    m.add_argument("--dropout", type=float, default=None, help="dropout before the classifier")
    o = t.add_argument_group("optimisation")
    o.add_argument("--epochs", type=_positive_int, help="default 60")
    o.add_argument("--batch-size", type=_positive_int, help="default 32")
    o.add_argument("--lr", type=_positive_float, help="AdamW peak learning rate (default 1e-3)")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-2)")
    o.add_argument("--select", choices=["last", "best-val"],
                   help="checkpoint kept: last epoch (default) or best validation AUC")
    o.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    o.add_argument("--augment", action="store_true", help="random flips, small rotations and shifts")
    o.add_argument("--seed", type=int, default=0, help="seed for data subsets, weights, order (default 0)")
    t.add_argument("--out", metavar="DIR", help="run directory to create")
    t.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="re-compute a run's test metrics from its checkpoint",
                       description="Re-compute the test metrics of a trained run from its checkpoint "
                       "and write eval-exact.json next to it.",
                       epilog="example:\n  qmedimg evaluate runs/breast",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("run_dir", metavar="RUN_DIR")

    c = sub.add_parser("circuits", help="list the circuit templates, or draw one",
                       description="List circuits/ templates (qubits, inputs, weights, depth) or draw one.",
                       epilog="examples:\n  qmedimg circuits\n  qmedimg circuits show fqa --qubits 3",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("action", nargs="?", choices=["show"], help="show NAME: draw one circuit")
    c.add_argument("name", nargs="?", metavar="NAME|PATH")
    c.add_argument("--qubits", type=_positive_int)
    c.add_argument("--layers", type=_positive_int)
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    from qmedimg.train import make_config, resume, train

    if args.resume:
        metrics = resume(args.resume, progress=not args.quiet)
        out = args.resume
    else:
        if not args.out:
            raise QmedimgError("train needs --out DIR (or --resume DIR)")
        fields = {k: v for k, v in {
            "dataset": args.dataset, "data_file": args.data_file, "data_root": args.data_root,
            "size": args.size, "classes": args.classes, "limit": args.limit, "circuit": args.circuit,
            "qubits": args.qubits, "layers": args.layers, "head": args.head, "backbone": args.backbone,
            "dropout": args.dropout, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "weight_decay": args.weight_decay, "select": args.select, "class_weights": args.class_weights,
            "augment": args.augment, "seed": args.seed, "out": args.out,
        }.items() if v is not None}
        metrics = train(make_config(**fields), progress=not args.quiet)
        out = args.out
    test, p = metrics["test"], metrics["parameters"]
    print(f"test ACC {test['acc']:.4f}  AUC {test['auc']:.4f}  F1 {test['f1']:.4f}  "
          f"(epoch {metrics['selected_epoch']} kept: {metrics['selection']})")
    print(f"parameters: {p['quantum']} quantum + {p['classical']} classical = {p['total']}; "
          f"{metrics['train_samples_per_s']:.0f} train samples/s; wall {metrics['wall_time_s']:.1f} s")
    print(f"run written to {out}/ (metrics.json, history.csv, learning_curves.png, confusion.png)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from qmedimg.evaluate import evaluate_run

    result = evaluate_run(args.run_dir)
    test, before = result["test"], result.get("trained_test") or {}
    print(f"test ACC {test['acc']:.4f}  AUC {test['auc']:.4f}  F1 {test['f1']:.4f}  (n={test['n']})")
    if before:
        print(f"at training time: ACC {before['acc']:.4f}  AUC {before['auc']:.4f}")
    print(f"written to {args.run_dir}/eval-exact.json")


def cmd_circuits(args: argparse.Namespace) -> None:
    from qmedimg.circuits import circuit_table, draw_circuit, load_circuit

    if args.action == "show":
        if not args.name:
            raise QmedimgError("circuits show needs a NAME or PATH (see `qmedimg circuits`)")
        spec = load_circuit(args.name, qubits=args.qubits, layers=args.layers)
        print(f"{spec.name}: {spec.description}")
        print(f"{spec.num_qubits} qubits, {len(spec.inputs)} inputs, {len(spec.weights)} weights, "
              f"depth {spec.depth}, file {spec.path}")
        print(draw_circuit(spec))
        return
    rows = circuit_table()
    print(f"{'name':<8}{'qubits':>7}{'layers':>7}{'inputs':>7}{'weights':>8}{'depth':>6}  description")
    for r in rows:
        print(f"{r['name']:<8}{r['qubits']:>7}{r['layers'] or '-':>7}{r['inputs']:>7}"
              f"{r['weights']:>8}{r['depth']:>6}  {r['description']}")
    print("draw one: qmedimg circuits show NAME [--qubits N --layers L]; add your own: circuits/README.md")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "circuits": cmd_circuits}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except QmedimgError as exc:
        print(f"qmedimg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qmedimg: interrupted; the last finished epoch is saved — continue with "
              "`qmedimg train --resume DIR`", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
