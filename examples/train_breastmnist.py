"""Train the hybrid model on BreastMNIST through the Python API, then its classical-head twin.

    python examples/train_breastmnist.py [--data-root DIR] [--out runs/example]

Same as `qmedimg train --dataset breastmnist --out runs/example/hybrid` followed by
`... --head classical --out runs/example/classical`; prints both test results side by side.
"""

import argparse

from qmedimg.rundir import make_config
from qmedimg.workflows.train import train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-root", default=None, help="folder holding breastmnist.npz (default ~/.medmnist)")
parser.add_argument("--out", default="runs/example")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

for head in ("quantum", "classical"):
    config = make_config(dataset="breastmnist", data_root=args.data_root, head=head, seed=args.seed,
                         out=f"{args.out}/{head}")
    m = train(config)
    p = m["parameters"]
    print(f"{head:>9} head: test ACC {m['test']['acc']:.4f}  AUC {m['test']['auc']:.4f}  "
          f"({p['total']} parameters, {p['quantum']} quantum; {m['wall_time_s']:.0f} s) -> {config.out}")
