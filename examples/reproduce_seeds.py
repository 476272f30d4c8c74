"""The seed papers' experiment list on MedMNIST v2 as one grid: hybrid vs classical baselines on every
2D and 3D dataset (ChestMNIST's multi-label findings included), 3 seeds, one `qmedimg compare` call
(its Python function) over all of them.

    python examples/reproduce_seeds.py breastmnist --data-root ../shared/data          # the one set that is here
    python examples/reproduce_seeds.py --dry-run                                         # cells, time on N workers
    python examples/reproduce_seeds.py --executor ray --ray-address auto                 # all of it, on a Ray cluster
    python examples/reproduce_seeds.py --list

Each dataset gets OUT/<experiment>/comparison.md (the hybrid, the same backbone with a same-size
classical head and with a linear head, and ResNet-18), and OUT/summary.md puts them side by side.
Interrupted or partly failed, the same command continues: finished runs are reused. The large
datasets use a seeded subset per split (``limit``) so that ResNet-18 on 2 CPU cores finishes in tens
of minutes per dataset; give ``--full`` on a cluster or a GPU machine. Datasets other than
BreastMNIST are downloaded by medmnist on first use (into --data-root, default ~/.medmnist); on a
cluster, put --data-root and --out on a file system every node shares.
"""

from __future__ import annotations

import argparse

from qmedimg.executor import get_executor
from qmedimg.workflows.compare import compare

EXPERIMENTS = {
    # 2D, 28×28 (MedMNIST v2)
    "breastmnist": {"dataset": "breastmnist"},                          # binary, 780 ultrasound images
    "pneumoniamnist": {"dataset": "pneumoniamnist", "limit": 2000},     # binary chest X-ray
    "pathmnist-binary": {"dataset": "pathmnist", "classes": [6, 8], "limit": 2000},  # normal mucosa vs tumour
    "pathmnist": {"dataset": "pathmnist", "limit": 4000},               # 9 tissue classes
    "organamnist": {"dataset": "organamnist", "limit": 4000},           # 11 organs, axial CT
    "dermamnist": {"dataset": "dermamnist", "limit": 4000},             # 7 skin-lesion classes
    "bloodmnist": {"dataset": "bloodmnist", "limit": 4000},             # 8 blood-cell classes
    "chestmnist": {"dataset": "chestmnist", "limit": 4000},             # 14 findings, multi-label
    # 3D, 28³ (MedMNIST v2 3D): Conv3d backbones, ResNet-18 3D (torchvision's r3d_18) as the baseline
    "organmnist3d": {"dataset": "organmnist3d"},                        # 11 organs, 1,742 CT volumes
    "nodulemnist3d": {"dataset": "nodulemnist3d"},                      # binary lung nodules, 1,633
    "adrenalmnist3d": {"dataset": "adrenalmnist3d"},                    # binary adrenal masses, 1,584
    "fracturemnist3d": {"dataset": "fracturemnist3d"},                  # 3 rib-fracture types, 1,370
    "vesselmnist3d": {"dataset": "vesselmnist3d"},                      # binary aneurysm vessels, 1,908
    "synapsemnist3d": {"dataset": "synapsemnist3d"},                    # binary synapse types, 1,759
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", choices=[[], *EXPERIMENTS], metavar="EXPERIMENT",
                        help=f"default: all of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--data-root", default=None, help="folder with the MedMNIST .npz files (default ~/.medmnist)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="hybrid,classical,linear,resnet18")
    parser.add_argument("--full", action="store_true", help="every image (no per-split limit)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", default=None, help="default: a local Ray; auto or HOST:PORT joins a cluster")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per cell")
    parser.add_argument("--dry-run", action="store_true", help="print the cells and the estimated wall time")
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--list", action="store_true", help="list the experiments")
    args = parser.parse_args()
    if args.list:
        for name, data in EXPERIMENTS.items():
            print(f"{name:<18} {data}")
        return
    chosen = args.experiments or list(EXPERIMENTS)
    data = [{**{k: v for k, v in EXPERIMENTS[name].items() if not (args.full and k == "limit")},
             "name": name, "data_root": args.data_root} for name in chosen]
    result = compare(data if len(data) > 1 else data[0], seeds=[int(s) for s in args.seeds.split(",")],
                     models=args.models.split(","), out=args.out if len(data) > 1 else f"{args.out}/{chosen[0]}",
                     executor=get_executor(args.executor, args.ray_address), threads=args.threads,
                     dry_run=args.dry_run)
    if args.dry_run:
        print(result)
        return
    report = result / ("summary.md" if len(data) > 1 else "comparison.md")
    print(report.read_text())
    print(f"report: {report}")


if __name__ == "__main__":
    main()
