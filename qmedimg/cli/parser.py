"""The ``qmedimg`` command line: arguments, help texts and examples; parsing only."""

from __future__ import annotations

import argparse

from qmedimg.cli.deprecated import add_deprecated
from qmedimg.cli.options import (
    backend_options, classes, cross_check_option, data_options, decision_options, device_options, executor_options,
    positive_float, positive_int, shots, test_limit_option, track_option,
)
from qmedimg.cli.threads import COMPUTING, threads_help

EPILOG_TRAIN = """examples:
  qmedimg train --dataset breastmnist --out runs/breast
  qmedimg train --dataset pathmnist --classes 3,7 --limit 2000 --circuit ring --out runs/path37
  qmedimg train --data-file hospital.npz --head classical --out runs/ablation
  qmedimg train --resume runs/breast          # continue an interrupted run
  qmedimg train --dataset breastmnist --backend fake_brisbane --epochs 5 --out runs/noisy   # noise-aware
"""


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
    data_options(t)
    t.add_argument("--class-names", type=lambda text: [part.strip() for part in text.split(",")], metavar="A,B",
                   help="name a --data-file run's classes (labels), in order (default: the npz's label_names, or 0, 1, ...)")
    m = t.add_argument_group("model")
    m.add_argument("--circuit", default="sel", metavar="NAME|PATH", help="circuit from circuits/ or a .qasm file (default sel)")
    m.add_argument("--qubits", type=positive_int, help="circuit width (template default: 4)")
    m.add_argument("--layers", type=positive_int, help="circuit layers (template default)")
    m.add_argument("--head", default="quantum", choices=["quantum", "classical", "linear"],
                   help="classical = same-size ablation; linear = plain linear head")
    m.add_argument("--model", choices=["hybrid", "resnet18", "vgg16"], help="a classical baseline instead (default hybrid)")
    m.add_argument("--backbone", choices=["compact", "hqcnn"], help="CNN feature extractor (default hqcnn)")
    m.add_argument("--angle-map", choices=["tanh", "batchnorm", "batchnorm-half"],
                   help="features -> head angles: π·tanh, or batch-normalised then π·tanh or (π/2)·tanh "
                   "(default tanh)")
    m.add_argument("--readout", choices=["circuit", "z+zz", "z+zz-all"],
                   help="head outputs: the circuit's observables, or Z on every qubit plus ZZ on ring "
                   "neighbours / all pairs (default circuit)")
    m.add_argument("--dropout", type=float, default=None, help="dropout before the classifier")
    q = t.add_argument_group("noise-aware training (the head runs on a registry backend; slow: see README)")
    q.add_argument("--backend", metavar="NAME", help="backends.yaml entry the head trains on (default exact)")
    q.add_argument("--noise-scale", type=float, metavar="S", help="fake backends: error rates × S")
    q.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    o = t.add_argument_group("optimisation")
    o.add_argument("--epochs", type=positive_int, help="default 60")
    o.add_argument("--batch-size", type=positive_int, help="default 32")
    o.add_argument("--lr", type=positive_float, help="AdamW peak learning rate (default 1e-3)")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-2)")
    o.add_argument("--select", choices=["last", "best-val"],
                   help="checkpoint kept: last epoch (default) or best validation AUC")
    o.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    decision_options(o)
    o.add_argument("--augment", action="store_true", help="random flips, small rotations and shifts")
    o.add_argument("--seed", type=int, default=0, help="seed for data subsets, weights, order (default 0)")
    t.add_argument("--out", metavar="DIR", help="run directory to create")
    t.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    device_options(t, amp=True)
    track_option(t)

    e = sub.add_parser("evaluate", help="test metrics of a trained run on any backend (exact, noisy, QPU)",
                       description="Re-compute the test metrics of a trained run on a backend from the "
                       "registry (default: exact) and write eval-<backend>.json next to it, with the "
                       "ideal metrics on the same images for comparison. On ibm backends, job ids go to "
                       "ledger-<backend>.json before waiting: re-running the same command collects them "
                       "instead of submitting again.",
                       epilog="examples:\n  qmedimg evaluate runs/breast\n"
                       "  qmedimg evaluate runs/breast --backend fake_brisbane --shots 4096\n"
                       "  qmedimg evaluate runs/breast --backend fake_brisbane --noise-scale 2 --test-limit 50\n"
                       "  qmedimg evaluate runs/breast --backend ibm_brisbane --dry-run\n"
                       "  qmedimg evaluate runs/breast --backend ibm_brisbane --collect-jobs\n"
                       "  qmedimg evaluate runs/breast --data-file hospital-test.npz   # the run's data file is gone")
    e.add_argument("run_dir", metavar="RUN_DIR")
    backend_options(e)
    test_limit_option(e)
    e.add_argument("--data-file", metavar="PATH.npz", help="evaluate on this npz's test split (MedMNIST's layout; "
                   "test_images and test_labels suffice) instead of the run's own data, e.g. when that file is gone; "
                   "-> eval-<backend>-on-<name>.json")
    e.add_argument("--dry-run", action="store_true", help="ibm: print what would be sent and a QPU-time estimate")
    e.add_argument("--collect-jobs", action="store_true", help="ibm: collect the jobs an earlier, interrupted call "
                   "submitted (ledger-<backend>.json); refused where nothing was submitted, never a new request")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    device_options(e)
    track_option(e)

    b = sub.add_parser("backends", help="list the backend registry, check one entry, or snapshot its calibration",
                       description="List backends.yaml (kind, device, qubits, 2-qubit gate, options), check "
                       "that one entry works here (for ibm: credentials and reachability, with a timeout), or save "
                       "an entry's device calibration as it is now (snapshot; a fake entry's calibration: FILE "
                       "then simulates it).",
                       epilog="examples:\n  qmedimg backends\n  qmedimg backends check fake_brisbane\n"
                       "  qmedimg backends --backends my_backends.yaml check ibm_brisbane\n"
                       "  qmedimg backends snapshot ibm_brisbane --out calibrations/brisbane_1105.json")
    b.add_argument("action", nargs="?", choices=["list", "check", "snapshot"], default="list")
    b.add_argument("name", nargs="?", metavar="NAME")
    b.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    b.add_argument("--out", metavar="FILE", help="snapshot: where to write it (default "
                   "calibrations/<device>-<YYYYMMDD-HHMM>.json, UTC)")

    tr = sub.add_parser("transpile", help="transpile a run's (or a template's) circuit for a backend and report",
                        description="Transpile a circuit for a backend and report physical qubits, depth, "
                        "2-qubit gate count and the calibration's estimated circuit fidelity.",
                        epilog="examples:\n  qmedimg transpile runs/breast --backend fake_brisbane\n"
                        "  qmedimg transpile sel --backend fake_torino --optimization-level 3\n"
                        "  qmedimg transpile fqa --qubits 3 --backend fake_manila")
    tr.add_argument("source", metavar="RUN_DIR|CIRCUIT")
    tr.add_argument("--qubits", type=positive_int, help="circuit width (templates only)")
    tr.add_argument("--layers", type=positive_int, help="circuit layers (templates only)")
    backend_options(tr, required=True)

    n = sub.add_parser("noise-study", help="metrics of trained runs over devices × noise scales × mitigation × shots",
                       description="Evaluate trained runs' test split on every combination of backends, noise "
                       "scales, mitigation, shots and transpiler optimization levels. Writes noise-study/ in the "
                       "first run (results.csv row by row, accuracy_vs_noise.png, expectation_error.png, "
                       "circuits.png for several runs, summary.md). Re-running the same command continues "
                       "where it stopped.",
                       epilog="examples:\n  qmedimg noise-study runs/breast --backend fake_brisbane,fake_torino "
                       "--mitigation none,readout+zne\n"
                       "  qmedimg noise-study runs/breast --scales 0,1,2,4,8 --shots none,1024 --repeats 3\n"
                       "  qmedimg noise-study runs/sel runs/ring runs/fqa --backend fake_brisbane   # circuits\n"
                       "  qmedimg noise-study runs/ideal --compare-run runs/noisy-trained")
    n.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one or more trained runs (e.g. one per circuit)")
    n.add_argument("--compare-run", action="append", default=[], metavar="RUN_DIR",
                   help="another run on the same plots (e.g. trained with noise)")
    n.add_argument("--backend", default="fake_brisbane", metavar="A,B",
                   help="registry entries, comma-separated (default fake_brisbane)")
    n.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    n.add_argument("--scales", default="0,0.25,0.5,1,2,4", help="noise scales for fake backends (default 0,0.25,0.5,1,2,4)")
    n.add_argument("--mitigation", default="none,readout+zne",
                   help="from none, readout, zne, readout+zne (default none,readout+zne)")
    n.add_argument("--shots", default="none", help="'none' = exact values, or shot counts (default none)")
    n.add_argument("--optimization-levels", default="1", help="transpiler levels (default 1)")
    n.add_argument("--repeats", type=positive_int, default=1, help="repetitions of sampled points (shot noise)")
    test_limit_option(n)
    n.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/noise-study)")
    n.add_argument("--dry-run", action="store_true", help="print the grid's points, their resource requests and the "
                   "estimated wall time on 1..16 workers (a point of each kind timed on a few images), the memory of "
                   "the largest simulated state, and the QPU time of real-QPU points (dry-run.json); evaluate nothing")
    cross_check_option(n)
    executor_options(n)
    n.add_argument("--allow-qpu", action="store_true", help="allow ibm (real QPU) entries, after a --dry-run")
    n.add_argument("--quiet", action="store_true", help="no progress bar")
    device_options(n)
    track_option(n)

    w = sub.add_parser("width-study", help="at what head size does noise cost accuracy: qubits × layers × devices × scales",
                       description="Train (or reuse) a hybrid run per head size (qubits × layers × seeds), run the noise "
                       "study of each on every fake device it fits, and write OUT/: results.csv (every point, with "
                       "qubits/layers/seed), accuracy_vs_circuit.png (test ACC/AUC against estimated circuit fidelity "
                       "and two-qubit gates, a line per device), accuracy_lost.png (heat map qubits × layers of the ACC "
                       "lost at calibrated noise, per device) and summary.md (per device: the largest head within 1 "
                       "point of its ideal accuracy at scale 1, and how far each mitigation extends it). Runs go in "
                       "OUT/runs/q{n}-l{L}-s{seed}/; re-running the same command continues where it stopped. A head "
                       "wider than a device is skipped for that device (noted in summary.md); a grid that would not fit "
                       "in memory is refused before anything is written.",
                       epilog="examples:\n  qmedimg width-study --data-file breastmnist.npz --qubits 4,8,12 --layers 1,2 "
                       "--backend fake_brisbane,fake_torino,fake_fez --scales 0,0.5,1,2 --out runs/width\n"
                       "  qmedimg width-study --dataset synthetic --limit 48 --qubits 4,5 --layers 1 --backend fake_manila "
                       "--scales 0,1 --mitigation none,readout --epochs 1 --test-limit 16 --out runs/width-demo\n"
                       "  qmedimg width-study --data-file breastmnist.npz --qubits 4,8 --layers 1,2 --seeds 0,1,2 "
                       "--backend fake_brisbane --scales 0,1 --noise-aware --out runs/noise-aware\n"
                       "  qmedimg width-study --data-file breastmnist.npz --qubits 4,8,12 --layers 1,2 --seeds 0,1,2 "
                       "--out runs/width --dry-run   # the time and memory first")
    data_options(w)
    g = w.add_argument_group("grid")
    g.add_argument("--qubits", default="4,8,12", metavar="N,N", help="head widths (default 4,8,12)")
    g.add_argument("--layers", default="1,2", metavar="L,L", help="circuit layers (default 1,2)")
    g.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0)")
    g.add_argument("--circuit", default="sel", metavar="NAME|PATH", help="circuit template taking qubits and layers "
                   "(default sel)")
    g.add_argument("--backend", default="fake_brisbane,fake_torino,fake_fez", metavar="A,B",
                   help="registry entries, comma-separated (default fake_brisbane,fake_torino,fake_fez)")
    g.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    g.add_argument("--scales", default="0,0.5,1,2", help="noise scales, must include 1 (default 0,0.5,1,2)")
    g.add_argument("--mitigation", default="none,readout+zne",
                   help="from none, readout, zne, readout+zne; must include none (default none,readout+zne)")
    g.add_argument("--shots", default="none", help="'none' = exact values, or shot counts (default none)")
    g.add_argument("--optimization-level", type=int, default=1, choices=[0, 1, 2, 3], help="transpiler level (default 1)")
    test_limit_option(g)
    g.add_argument("--max-memory", type=positive_float, metavar="GB",
                   help="refuse a grid whose largest simulated state needs more (default: memory available now)")
    o = w.add_argument_group("training (each head; compare's short recipe)")
    o.add_argument("--noise-aware", action="store_true",
                   help="also train every head under the noise of each fake device in --backend it fits (same seed, "
                   "recipe and data; noise scale 1) into runs/q{n}-l{L}-s{seed}-aware-{device}-{digest}/, evaluate it "
                   "there at scale 1 without mitigation, and compare in summary.md, with paired 95%% bootstrap "
                   "intervals, the ACC lost by the ideally trained head, by the noise-aware one and with readout+zne "
                   "(plot: accuracy_lost_by_strategy.png)")
    o.add_argument("--epochs", type=positive_int, help="default 10")
    o.add_argument("--batch-size", type=positive_int, help="default 32")
    o.add_argument("--lr", type=positive_float, help="default 1e-3")
    w.add_argument("--out", required=True, metavar="DIR", help="study folder (runs/, results.csv, plots, summary.md)")
    w.add_argument("--dry-run", action="store_true", help="print every cell (head size, seed, training) with its state "
                   "and the time left to train it and run its points (measured where the grid already ran the same, "
                   "else timed now), the memory of the largest simulated state and the estimated wall time on 1..16 "
                   "workers; train, evaluate and write nothing")
    cross_check_option(w)
    executor_options(w)
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    device_options(w)
    track_option(w)

    k = sub.add_parser("compare", help="train the hybrid and classical baselines over seeds; the papers' table",
                       description="Train, for each seed, the hybrid model (per circuit), the same backbone with an "
                       "same-size classical head (parameter counts reported), a plain linear head, ResNet-18 (28×28 as in MedMNIST v2) "
                       "and optionally VGG-16, with one recipe on this machine; write comparison.md/.csv, runs.csv, "
                       "learning_curves.png and confusion-<model>.png. Finished runs are reused on a re-run.",
                       epilog="examples:\n  qmedimg compare --dataset breastmnist --seeds 0,1,2 --out runs/compare\n"
                       "  qmedimg compare --dataset pathmnist --classes 3,7 --limit 2000 --circuits sel,ring "
                       "--models hybrid,classical --out runs/path37-compare\n"
                   "  qmedimg compare --datasets breastmnist,pneumoniamnist --seeds 0,1,2 --executor ray --out runs/seeds\n"
                   "  qmedimg compare --dataset breastmnist --seeds 0,1,2 --executor ray --ray-address auto --dry-run "
                   "--out runs/compare")
    data_options(k)
    k.add_argument("--models", default="hybrid,classical,linear,resnet18",
                   help="from hybrid, classical, linear, resnet18, vgg16 (default: all but vgg16)")
    k.add_argument("--circuits", default="sel", help="circuit(s) of the hybrid model (default sel)")
    k.add_argument("--qubits", type=positive_int, help="circuit width, e.g. 8 for 8 head outputs (template default: 4)")
    k.add_argument("--layers", type=positive_int, help="circuit layers (template default)")
    k.add_argument("--seeds", default="0,1,2", help="default 0,1,2")
    k.add_argument("--epochs", type=positive_int, help="default 10")
    decision_options(k)
    k.add_argument("--batch-size", type=positive_int)
    k.add_argument("--lr", type=positive_float)
    k.add_argument("--datasets", metavar="FLAG,FLAG", help="several MedMNIST flags, each with the data options "
                   "above: OUT/<flag>/comparison.md per dataset and OUT/summary.md across them")
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--dry-run", action="store_true", help="print the cells, their resource requests and the "
                   "estimated wall time on 1..16 workers (from timed steps); train nothing, write nothing")
    executor_options(k)
    k.add_argument("--quiet", action="store_true", help="no progress bars")
    device_options(k, amp=True)
    track_option(k)

    pr = sub.add_parser("predict", help="classify PNG/JPEG/DICOM images (or .npy/.npz/NIfTI volumes) with a "
                        "trained run, on any backend",
                        description="Classify image files (or every file in folders) with a trained run: the run's "
                        "preprocessing, then per image the class name, probabilities and the quantum head's "
                        "expectation values. A folder gives a CSV. Unreadable files are reported and skipped. "
                        "On ibm backends only the head's input angles and the circuit weights are sent.",
                        epilog="examples:\n  qmedimg predict runs/breast scan.png\n"
                        "  qmedimg predict runs/breast dicoms/ --out predictions.csv\n"
                        "  qmedimg predict runs/breast images/ --backend fake_brisbane\n"
                        "  qmedimg predict breast.zip scan.png       # a run `qmedimg export` wrote")
    pr.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a run exported with `qmedimg export`")
    pr.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    pr.add_argument("--backend", metavar="NAME", help="registry entry for the quantum head (default exact)")
    pr.add_argument("--backends", metavar="FILE", help="registry file (default: $QMEDIMG_BACKENDS or backends.yaml)")
    pr.add_argument("--out", metavar="CSV", help="write predictions here (default for folders: "
                    "RUN_DIR/predictions.csv; for FILE.zip: FILE-predictions.csv beside it)")
    pr.add_argument("--dry-run", action="store_true", help="ibm: what would be sent, nothing submitted")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    device_options(pr)

    x = sub.add_parser("explain", help="Grad-CAM overlays through the quantum head, and the head's feature space",
                       description="For each image, a Grad-CAM saliency map of the predicted class (captum's "
                       "LayerGradCam on the backbone's last convolution, gradients through the quantum head) "
                       "saved as <name>-gradcam.png; plus head_space.png: the run's test-set head values "
                       "pairwise, coloured by true class.",
                       epilog="examples:\n  qmedimg explain runs/breast scan.png --out explain/\n"
                       "  qmedimg explain breast.zip scan.png      # -> breast-explain/ (an exported run)")
    x.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a run exported with `qmedimg export`")
    x.add_argument("images", nargs="*", metavar="IMAGE")
    x.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/explain; for FILE.zip: FILE-explain/)")
    device_options(x)

    ex = sub.add_parser("export", help="a trained run as one file to hand over (predict and explain read it)",
                        description="Write FILE, a zip archive of exactly the run's config.json, checkpoint.pt and "
                        "metrics.json: what predict and explain need, without the training data. The run is loaded "
                        "first; an existing FILE is never replaced. `unzip FILE -d DIR` gives the run directory back.",
                        epilog="examples:\n  qmedimg export runs/breast breast.zip\n"
                        "  qmedimg predict breast.zip scan.png      # where it is received")
    ex.add_argument("run_dir", metavar="RUN_DIR")
    ex.add_argument("file", metavar="FILE", help="the archive to write (e.g. breast.zip)")

    c = sub.add_parser("circuits", help="list the circuit templates, or draw one",
                       description="List circuits/ templates (qubits, inputs, weights, depth) or draw one.",
                       epilog="examples:\n  qmedimg circuits\n  qmedimg circuits show fqa --qubits 3")
    c.add_argument("action", nargs="?", choices=["show"], help="show NAME: draw one circuit")
    c.add_argument("name", nargs="?", metavar="NAME|PATH")
    c.add_argument("--qubits", type=positive_int)
    c.add_argument("--layers", type=positive_int)

    rp = sub.add_parser("report", help="QPU vs simulator: a run's ibm evaluations beside their prediction",
                        description="Write RUN_DIR/qpu_vs_simulator.md and qpu_vs_simulator.png from the run's ibm "
                        "eval files: ACC/AUC of the exact head, of the prediction on the calibration snapshot taken "
                        "at submission and of the measured values, with bootstrap intervals; the agreement test's "
                        "verdict; measured against predicted values per image and observable.",
                        epilog="examples:\n  qmedimg evaluate runs/breast --backend ibm_local\n"
                        "  qmedimg report runs/breast")
    rp.add_argument("run_dir", metavar="RUN_DIR")
    for name in COMPUTING:  # the grids have it among the options of where their cells run
        sub.choices[name].add_argument_group("CPU").add_argument("--threads", type=positive_int, metavar="N",
                                                                 help=threads_help())
    for name, command in sub.choices.items():
        add_deprecated(command, name)  # old spellings of renamed options, for one release
    return parser
