"""The ``qmedimg`` command: parsing only; each command calls one function of the package."""

from __future__ import annotations

import argparse
import json
import sys

from qmedimg.errors import QmedimgError

EPILOG_TRAIN = """examples:
  qmedimg train --dataset breastmnist --out runs/breast
  qmedimg train --dataset pathmnist --classes 3,7 --limit 2000 --circuit ring --out runs/path37
  qmedimg train --data-file hospital.npz --head classical --out runs/ablation
  qmedimg train --resume runs/breast          # continue an interrupted run
  qmedimg train --dataset breastmnist --backend fake_brisbane --epochs 5 --out runs/noisy   # noise-aware
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


def _qubit_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of physical qubits like 0,1,2,3") from None


def _classes(text: str) -> list[int]:
    from qmedimg.data import parse_classes

    try:
        return parse_classes(text)
    except QmedimgError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one --help away), and
    descriptions and example epilogs keep their line breaks."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qmedimg",
        description="Hybrid quantum-classical medical image classification on Qiskit.",
        epilog="example:\n  qmedimg train --dataset breastmnist --out runs/breast\n\n"
        "run `qmedimg COMMAND --help` for each command's options and examples",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    t = sub.add_parser("train", help="train a hybrid (or classical-head) model on MedMNIST",
                       description="Train a CNN whose head is a variational quantum circuit and write "
                       "a run directory. The checkpoint kept is the last epoch's moving-average "
                       "weights (or, with --select best-val, the best validation epoch's); the test "
                       "split never chooses anything.",
                       epilog=EPILOG_TRAIN)
    _data_options(t)
    m = t.add_argument_group("model")
    m.add_argument("--circuit", default="sel", metavar="NAME|PATH", help="circuit from circuits/ or a .qasm file (default sel)")
    m.add_argument("--qubits", type=_positive_int, help="circuit width (template default: 4)")
    m.add_argument("--layers", type=_positive_int, help="circuit layers (template default)")
    m.add_argument("--head", default="quantum", choices=["quantum", "classical", "linear"],
                   help="classical = same-size ablation; linear = plain linear head")
    m.add_argument("--model", choices=["hybrid", "resnet18", "vgg16"], help="a classical baseline instead (default hybrid)")
    m.add_argument("--backbone", choices=["compact", "hqcnn"], help="CNN feature extractor (default hqcnn)")
    m.add_argument("--dropout", type=float, default=None, help="dropout before the classifier")
    q = t.add_argument_group("noise-aware training (the head runs on a registry backend; slow: see README)")
    q.add_argument("--backend", metavar="NAME", help="backends.yaml entry the head trains on (default exact)")
    q.add_argument("--noise-scale", type=float, metavar="S", help="fake backends: error rates × S")
    q.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
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

    e = sub.add_parser("evaluate", help="test metrics of a trained run on any backend (exact, noisy, QPU)",
                       description="Re-compute the test metrics of a trained run on a backend from the "
                       "registry (default: exact) and write eval-<backend>.json next to it, with the "
                       "ideal metrics on the same images for comparison. On ibm backends, job ids go to "
                       "ledger-<backend>.json before waiting: re-running the same command collects them "
                       "instead of submitting again.",
                       epilog="examples:\n  qmedimg evaluate runs/breast\n"
                       "  qmedimg evaluate runs/breast --backend fake_brisbane --shots 4096\n"
                       "  qmedimg evaluate runs/breast --backend fake_brisbane --noise-scale 2 --limit 50\n"
                       "  qmedimg evaluate runs/breast --backend ibm_brisbane --dry-run\n"
                       "  qmedimg evaluate runs/breast --backend ibm_brisbane --resume")
    e.add_argument("run_dir", metavar="RUN_DIR")
    _backend_options(e)
    e.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N test images")
    e.add_argument("--dry-run", action="store_true", help="ibm: print what would be sent and a QPU-time estimate")
    e.add_argument("--resume", action="store_true", help="ibm: collect the jobs of an earlier, interrupted call")
    e.add_argument("--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("backends", help="list the backend registry, or check one entry",
                       description="List backends.yaml (kind, device, qubits, 2-qubit gate, options) or check "
                       "that one entry works here (for ibm: credentials and reachability, with a timeout).",
                       epilog="examples:\n  qmedimg backends\n  qmedimg backends check fake_brisbane\n"
                       "  qmedimg backends --backends my_backends.yaml check ibm_brisbane")
    b.add_argument("action", nargs="?", choices=["list", "check"], default="list")
    b.add_argument("name", nargs="?", metavar="NAME")
    b.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")

    tr = sub.add_parser("transpile", help="transpile a run's (or a template's) circuit for a backend and report",
                        description="Transpile a circuit for a backend and report physical qubits, depth, "
                        "2-qubit gate count and the calibration's estimated circuit fidelity.",
                        epilog="examples:\n  qmedimg transpile runs/breast --backend fake_brisbane\n"
                        "  qmedimg transpile sel --backend fake_torino --optimization-level 3\n"
                        "  qmedimg transpile fqa --qubits 3 --backend fake_manila")
    tr.add_argument("source", metavar="RUN_DIR|CIRCUIT")
    tr.add_argument("--qubits", type=_positive_int, help="circuit width (templates only)")
    tr.add_argument("--layers", type=_positive_int, help="circuit layers (templates only)")
    _backend_options(tr, required=True)

    n = sub.add_parser("noise-study", help="metrics of trained runs over devices × noise scales × mitigation × shots",
                       description="Evaluate trained runs' test split on every combination of backends, noise "
                       "scales, mitigation, shots and transpiler optimization levels. Writes noise-study/ in the "
                       "first run (results.csv row by row, accuracy_vs_noise.png, expectation_error.png, "
                       "circuits.png for several runs, summary.md). Re-running the same command continues "
                       "where it stopped.",
                       epilog="examples:\n  qmedimg noise-study runs/breast --backends fake_brisbane,fake_torino "
                       "--mitigation none,readout+zne\n"
                       "  qmedimg noise-study runs/breast --scales 0,1,2,4,8 --shots none,1024 --repeats 3\n"
                       "  qmedimg noise-study runs/sel runs/ring runs/fqa --backends fake_brisbane   # circuits\n"
                       "  qmedimg noise-study runs/ideal --compare-run runs/noisy-trained")
    n.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one or more trained runs (e.g. one per circuit)")
    n.add_argument("--compare-run", action="append", default=[], metavar="RUN_DIR",
                   help="another run on the same plots (e.g. trained with noise)")
    n.add_argument("--backends", dest="grid_backends", default="fake_brisbane", metavar="A,B",
                   help="registry entries (default fake_brisbane)")
    n.add_argument("--backends-file", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    n.add_argument("--scales", default="0,0.25,0.5,1,2,4", help="noise scales for fake backends (default 0,0.25,0.5,1,2,4)")
    n.add_argument("--mitigation", default="none,readout+zne", help="from none, readout, zne, readout+zne")
    n.add_argument("--shots", default="none", help="'none' = exact values, or shot counts (default none)")
    n.add_argument("--optimization-levels", default="1", help="transpiler levels (default 1)")
    n.add_argument("--repeats", type=_positive_int, default=1, help="repetitions of sampled points (shot noise)")
    n.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N test images")
    n.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/noise-study)")
    n.add_argument("--circuits", metavar="RUN_A,RUN_B", help="more runs (trained with other circuits) on the same plots")
    n.add_argument("--dry-run", action="store_true", help="list the grid and estimate QPU time; evaluate nothing")
    n.add_argument("--allow-qpu", action="store_true", help="allow ibm (real QPU) entries, after a --dry-run")
    n.add_argument("--quiet", action="store_true", help="no progress bar")

    k = sub.add_parser("compare", help="train the hybrid and classical baselines over seeds; the papers' table",
                       description="Train, for each seed, the hybrid model (per circuit), the same backbone with an "
                       "equal-size classical head, with a plain linear head, ResNet-18 (28×28 as in MedMNIST v2) "
                       "and optionally VGG-16, with one recipe on this machine; write comparison.md/.csv, runs.csv, "
                       "learning_curves.png and confusion-<model>.png. Finished runs are reused on a re-run.",
                       epilog="examples:\n  qmedimg compare --dataset breastmnist --seeds 0,1,2 --out runs/compare\n"
                       "  qmedimg compare --dataset pathmnist --classes 3,7 --limit 2000 --circuits sel,ring "
                       "--models hybrid,classical --out runs/path37-compare")
    _data_options(k)
    k.add_argument("--models", default="hybrid,classical,linear,resnet18",
                   help="from hybrid, classical, linear, resnet18, vgg16 (default: all but vgg16)")
    k.add_argument("--circuits", default="sel", help="circuit(s) of the hybrid model (default sel)")
    k.add_argument("--seeds", default="0,1,2", help="default 0,1,2")
    k.add_argument("--epochs", type=_positive_int, help="default 10")
    k.add_argument("--batch-size", type=_positive_int)
    k.add_argument("--lr", type=_positive_float)
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--quiet", action="store_true", help="no progress bars")

    pr = sub.add_parser("predict", help="classify PNG/JPEG/DICOM images with a trained run, on any backend",
                        description="Classify image files (or every file in folders) with a trained run: the run's "
                        "preprocessing, then per image the class name, probabilities and the quantum head's "
                        "expectation values. A folder gives a CSV. Unreadable files are reported and skipped. "
                        "On ibm backends only the head's input angles and the circuit weights are sent.",
                        epilog="examples:\n  qmedimg predict runs/breast scan.png\n"
                        "  qmedimg predict runs/breast dicoms/ --out predictions.csv\n"
                        "  qmedimg predict runs/breast images/ --backend fake_brisbane")
    pr.add_argument("run_dir", metavar="RUN_DIR")
    pr.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    pr.add_argument("--backend", metavar="NAME", help="registry entry for the quantum head (default exact)")
    pr.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    pr.add_argument("--out", metavar="CSV", help="write predictions here (default for folders: predictions.csv)")
    pr.add_argument("--dry-run", action="store_true", help="ibm: what would be sent, nothing submitted")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    x = sub.add_parser("explain", help="Grad-CAM overlays through the quantum head, and the head's feature space",
                       description="For each image, a Grad-CAM saliency map of the predicted class (captum's "
                       "LayerGradCam on the backbone's last convolution, gradients through the quantum head) "
                       "saved as <name>-gradcam.png; plus head_space.png: the run's test-set head values "
                       "pairwise, coloured by true class.",
                       epilog="example:\n  qmedimg explain runs/breast scan.png --out explain/")
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("images", nargs="*", metavar="IMAGE")
    x.add_argument("--out", default="explain", metavar="DIR", help="output folder (default ./explain)")

    c = sub.add_parser("circuits", help="list the circuit templates, or draw one",
                       description="List circuits/ templates (qubits, inputs, weights, depth) or draw one.",
                       epilog="examples:\n  qmedimg circuits\n  qmedimg circuits show fqa --qubits 3")
    c.add_argument("action", nargs="?", choices=["show"], help="show NAME: draw one circuit")
    c.add_argument("name", nargs="?", metavar="NAME|PATH")
    c.add_argument("--qubits", type=_positive_int)
    c.add_argument("--layers", type=_positive_int)
    return parser


def _data_options(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("data")
    src.add_argument("--dataset", metavar="FLAG", help="MedMNIST 2D flag (breastmnist, pathmnist, …) or 'synthetic'")
    src.add_argument("--data-file", metavar="PATH.npz", help="your own data in MedMNIST's npz layout")
    src.add_argument("--data-root", metavar="DIR", help="where MedMNIST files are/go (default ~/.medmnist)")
    src.add_argument("--size", type=int, default=28, choices=[28, 64, 128, 224], help="image size (default 28)")
    src.add_argument("--classes", type=_classes, metavar="A,B", help="train on these labels only, relabelled 0..k-1")
    src.add_argument("--limit", type=_positive_int, metavar="N", help="at most N samples per split (seeded)")


def _backend_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    g = parser.add_argument_group("backend (entries of backends.yaml; options override the entry)")
    g.add_argument("--backend", required=required, metavar="NAME", help="registry entry (default exact)")
    g.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    g.add_argument("--shots", type=_positive_int, help="shots per image (default: the entry's; none = exact)")
    g.add_argument("--noise-scale", type=float, metavar="S", help="fake: error rates × S (0 = ideal)")
    g.add_argument("--optimization-level", type=int, choices=[0, 1, 2, 3])
    g.add_argument("--layout-method", choices=["default", "trivial", "dense", "sabre"])
    g.add_argument("--routing-method", choices=["default", "basic", "lookahead", "sabre", "none"])
    g.add_argument("--initial-layout", type=_qubit_list, metavar="Q0,Q1,..", help="physical qubit per circuit qubit")
    g.add_argument("--seed-transpiler", type=int)
    g.add_argument("--approximation-degree", type=float)
    g.add_argument("--dd", choices=["XX", "XY4"], help="dynamical decoupling sequence (ALAP scheduled)")


def _overrides(args: argparse.Namespace) -> dict:
    """Entry keys replaced from the command line (only those given)."""
    transpile = {k: getattr(args, k) for k in ("optimization_level", "layout_method", "routing_method",
                                                "initial_layout", "seed_transpiler", "approximation_degree")
                 if getattr(args, k) is not None}
    if args.dd:
        transpile["dynamical_decoupling"] = {"sequence": args.dd}
    out = {"shots": args.shots, "noise_scale": args.noise_scale}
    if transpile:
        out["transpile"] = transpile
    return {k: v for k, v in out.items() if v is not None}


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
            "model": args.model,
            "dropout": args.dropout, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "weight_decay": args.weight_decay, "select": args.select, "class_weights": args.class_weights,
            "augment": args.augment, "seed": args.seed, "out": args.out, "backend": args.backend,
            "noise_scale": args.noise_scale, "backends_file": args.backends,
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

    result = evaluate_run(args.run_dir, args.backend, backends_file=args.backends, limit=args.limit,
                          dry_run=args.dry_run, resume=args.resume, progress=not args.quiet, **_overrides(args))
    if args.dry_run:
        if "dry_run" not in result:
            raise QmedimgError(f"--dry-run is for ibm backends; {args.backend or 'exact'} runs locally and costs nothing")
        d, t = result["dry_run"], result["transpile"]
        print(f"dry run on {result['backend']} ({result['device']}): nothing submitted")
        print(f"  {d['jobs']} job(s) of at most {d['rows_per_job']} images (IBM job limits), {d['pubs_per_job']} PUB "
              f"each, {d['parameter_rows']} parameter rows "
              f"(one per image), {d['observables']} observables, {d['shots_per_row']} shots per row")
        print(f"  twirling randomizations {d['twirling_randomizations']}, ZNE factors {d['zne_noise_factors']}, "
              f"measurement mitigation {d['measure_mitigation']}")
        print(f"  circuit: physical qubits {t['physical_qubits']}, depth {t['depth']}, "
              f"{t['two_qubit_gates']} two-qubit gates, estimated fidelity {t['estimated_fidelity']}")
        print(f"  estimated QPU time ~{d['estimated_qpu_seconds']} s ({d['estimate_note']})")
        print("  sent per image: the head's input angles only (no pixels, names or labels)")
        return
    test, ideal = result["test"], result["ideal_test"]
    print(f"{result['backend']} ({result['device']}), {result['images']} test images: "
          f"ACC {test['acc']:.4f}  AUC {test['auc']:.4f}  F1 {test['f1']:.4f}")
    print(f"ideal (exact) on the same images:  ACC {ideal['acc']:.4f}  AUC {ideal['auc']:.4f}  "
          f"F1 {ideal['f1']:.4f}   Δ ACC {test['acc'] - ideal['acc']:+.4f}  Δ AUC {test['auc'] - ideal['auc']:+.4f}")
    tr = result.get("transpile")
    if tr:
        print(f"circuit: physical qubits {tr['physical_qubits']}, depth {tr['depth']}, {tr['two_qubit_gates']} "
              f"two-qubit gates, estimated fidelity {tr['estimated_fidelity']}; "
              f"mean |Δ expectation| {result['mean_abs_expectation_error']:.4f}")
    if result.get("jobs"):
        print(f"jobs: {', '.join(str(j['job_id']) for j in result['jobs'])}; QPU seconds {result['qpu_seconds']}")
    print(f"{result['images_per_s']:.0f} images/s (after {result['setup_s']:.1f} s set-up); written to {result['path']}")


def cmd_backends(args: argparse.Namespace) -> None:
    from qmedimg.backends import check_backend, get_backend, load_backends, registry_path

    if args.action == "check":
        if not args.name:
            raise QmedimgError("backends check needs a NAME (see `qmedimg backends`)")
        for line in check_backend(get_backend(args.name, args.backends)):
            print(line)
        return
    entries = load_backends(args.backends)
    rows = [get_backend(name, args.backends).describe() for name in entries]
    print(f"{'name':<26}{'kind':<7}{'device':<16}{'qubits':>7}  {'2q gate':<8}options")
    for r in rows:
        print(f"{r['name']:<26}{r['kind']:<7}{r['device']:<16}{r['qubits']!s:>7}  {r['2q gate']:<8}{r['options']}")
    print(f"registry: {registry_path(args.backends)}; check one: qmedimg backends check NAME")


def cmd_transpile(args: argparse.Namespace) -> None:
    from pathlib import Path

    from qmedimg.backends import get_backend, transpile_report
    from qmedimg.circuits import load_circuit

    backend = get_backend(args.backend, args.backends, **_overrides(args))
    if (Path(args.source) / "config.json").is_file():
        from qmedimg.train import load_run

        spec = load_run(args.source).model.spec
    else:
        spec = load_circuit(args.source, qubits=args.qubits, layers=args.layers)
    if backend.device is None:
        raise QmedimgError(f"backend '{backend.name}' is {backend.kind}: nothing to transpile for (pick a fake or ibm entry)")
    r = transpile_report(backend, spec)
    print(f"{r['circuit']} on {r['backend']} ({r['device']}):")
    print(f"  physical qubits {r['physical_qubits']}")
    print(f"  depth {r['depth']}, two-qubit gates {r['two_qubit_gates']}, ops {r['ops']}")
    print(f"  estimated circuit fidelity {r['estimated_fidelity']} (product of 1 - error over gates and readout)")


def cmd_noise_study(args: argparse.Namespace) -> None:
    from qmedimg.study import noise_study, parse_list

    more = parse_list(args.circuits, str, "circuits") if args.circuits else []
    out = noise_study(
        args.run_dirs + more + args.compare_run, backends=parse_list(args.grid_backends, str, "backends"),
        scales=parse_list(args.scales, float, "scales"), mitigations=parse_list(args.mitigation, str, "mitigation"),
        shots=parse_list(args.shots, int, "shots"),
        optimization_levels=parse_list(args.optimization_levels, int, "optimization-levels", valid=[0, 1, 2, 3]),
        repeats=args.repeats, backends_file=args.backends_file, limit=args.limit, out=args.out,
        allow_qpu=args.allow_qpu, dry_run=args.dry_run, progress=not args.quiet)
    if args.dry_run:
        plan = json.loads(out.read_text())
        print(f"dry run: {plan['points']} grid points, estimated QPU time {plan['estimated_qpu_seconds']:.0f} s "
              f"(real-QPU points only; nothing evaluated); written to {out}")
        return
    print((out / "summary.md").read_text())
    print(f"written to {out}/ (results.csv, accuracy_vs_noise.png, expectation_error.png, summary.md)")


def cmd_compare(args: argparse.Namespace) -> None:
    from qmedimg.compare import compare, parse_seeds

    data = {k: v for k, v in {"dataset": args.dataset, "data_file": args.data_file, "data_root": args.data_root,
                              "size": args.size, "classes": args.classes, "limit": args.limit}.items()
            if v is not None}
    out = compare(data, seeds=parse_seeds(args.seeds), models=[m for m in args.models.split(",") if m],
                  circuits=args.circuits.split(","), out=args.out, progress=not args.quiet,
                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    print((out / "comparison.md").read_text())
    print(f"written to {out}/ (comparison.md, comparison.csv, runs.csv, learning_curves.png, confusion-*.png)")


def cmd_predict(args: argparse.Namespace) -> None:
    from pathlib import Path

    from qmedimg.predict import predict

    folder = any(Path(p).is_dir() for p in args.inputs)
    out = args.out or ("predictions.csv" if folder else None)
    result = predict(args.run_dir, args.inputs, backend=args.backend, backends_file=args.backends, out=out,
                     progress=not args.quiet, dry_run=args.dry_run)
    for line in result["errors"]:
        print(f"skipped: {line}", file=sys.stderr)
    if "dry_run" in result:
        d = result["dry_run"]
        print(f"dry run: {d['jobs']} job(s), {d['parameter_rows']} parameter rows, {d['shots_per_row']} shots per "
              f"row, estimated QPU time ~{d['estimated_qpu_seconds']} s; sent: head angles only")
        return
    if not result["rows"]:
        raise QmedimgError(f"nothing could be predicted ({len(result['errors'])} unreadable file(s))")
    if not folder and len(result["rows"]) <= 20:
        for r in result["rows"]:
            probs = "  ".join(f"{n}: {p:.3f}" for n, p in r["probabilities"].items())
            evs = " ".join(f"{v:+.3f}" for v in r["expectations"])
            print(f"{r['file']}: {r['class']}   ({probs})" + (f"   head ⟨O⟩ = [{evs}]" if evs else ""))
    print(f"{len(result['rows'])} predicted, {len(result['errors'])} skipped"
          + (f"; written to {result['path']}" if result["path"] else ""))


def cmd_explain(args: argparse.Namespace) -> None:
    from qmedimg.predict import explain

    for path in explain(args.run_dir, args.images, args.out):
        print(f"written {path}")


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


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "backends": cmd_backends, "transpile": cmd_transpile,
            "noise-study": cmd_noise_study, "compare": cmd_compare, "predict": cmd_predict, "explain": cmd_explain,
            "circuits": cmd_circuits}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except QmedimgError as exc:
        print(f"qmedimg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {"train": "the last finished epoch is saved — continue with `qmedimg train --resume DIR`",
                "evaluate": "submitted job ids are in the run's ledger — re-run the same command to collect them",
                "noise-study": "finished grid points are in results.csv — re-run the same command to continue",
                "compare": "finished runs are kept — re-run the same command to continue"}
        print(f"qmedimg: interrupted; {hint.get(args.command, 'nothing was written half-way')}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
