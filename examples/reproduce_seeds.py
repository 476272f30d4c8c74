"""The seed papers' experiment list on MedMNIST v2, one command each: hybrid vs classical baselines.

    python examples/reproduce_seeds.py breastmnist --data-root ../shared/data     # runs here (file present)
    python examples/reproduce_seeds.py pneumoniamnist                              # downloads via medmnist
    python examples/reproduce_seeds.py --list

Each experiment is one `qmedimg compare` call (3 seeds; the hybrid, the same backbone with an
same-size classical head and with a linear head, and ResNet-18) and prints where its report went.
The large datasets use a seeded subset per split (``limit``) so that ResNet-18 on 2 CPU cores
finishes in tens of minutes; drop it on a GPU machine.
"""

from __future__ import annotations

import argparse

from qmedimg.workflows.compare import compare

EXPERIMENTS = {
    "breastmnist": {"dataset": "breastmnist"},                          # binary, 780 ultrasound images
    "pneumoniamnist": {"dataset": "pneumoniamnist", "limit": 2000},     # binary chest X-ray
    "pathmnist-binary": {"dataset": "pathmnist", "classes": [6, 8], "limit": 2000},  # normal mucosa vs tumour
    "pathmnist": {"dataset": "pathmnist", "limit": 4000},               # 9 tissue classes
    "organamnist": {"dataset": "organamnist", "limit": 4000},           # 11 organs, axial CT
    "dermamnist": {"dataset": "dermamnist", "limit": 4000},             # 7 skin-lesion classes
    "bloodmnist": {"dataset": "bloodmnist", "limit": 4000},             # 8 blood-cell classes
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", choices=list(EXPERIMENTS))
    parser.add_argument("--data-root", default=None, help="folder with the MedMNIST .npz files (default ~/.medmnist)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--list", action="store_true", help="list the experiments")
    args = parser.parse_args()
    if args.list or not args.experiment:
        for name, data in EXPERIMENTS.items():
            print(f"{name:<18} {data}")
        return
    data = {**EXPERIMENTS[args.experiment], "data_root": args.data_root}
    out = compare(data, seeds=[int(s) for s in args.seeds.split(",")],
                  models=["hybrid", "classical", "linear", "resnet18"], out=f"{args.out}/{args.experiment}")
    print((out / "comparison.md").read_text())
    print(f"report: {out / 'comparison.md'} (plus comparison.csv, learning_curves.png, confusion-*.png)")


if __name__ == "__main__":
    main()
