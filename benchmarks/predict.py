"""`qmedimg predict` on a folder of 1,000 PNGs, end to end (read, preprocess, model, CSV).

    python benchmarks/predict.py --run RUN_DIR [--images 1000]

The PNGs are the run's own dataset images (train, then val and test, repeated if needed) written to a
temporary folder first (not timed). Prints images/s of the exact backend, best of 3.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from qmedimg.rundir import load_run
from qmedimg.workflows.predict import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    dataset = load_run(args.run).dataset
    pool = np.concatenate([dataset.train.images, dataset.val.images, dataset.test.images])
    folder = Path(tempfile.mkdtemp(prefix="qmedimg-png-"))
    for i in range(args.images):
        image = pool[i % len(pool)]
        Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(folder / f"{i:05d}.png")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = predict(args.run, [folder], out=folder / "predictions.csv")
        times.append(time.perf_counter() - start)
    shutil.rmtree(folder)
    print(f"predict {len(result['rows'])} PNGs ({dataset.name}, {pool.shape[2]}×{pool.shape[3]}) "
          f"with the exact backend: {len(result['rows']) / min(times):.0f} images/s end to end (best of 3, "
          f"{min(times):.2f} s incl. loading the run)")


if __name__ == "__main__":
    main()
