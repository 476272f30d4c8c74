"""How long the commands that only list or explain take to start: ``qmedimg --help``, ``qmedimg backends`` and
``qmedimg circuits`` (issue 23's target: at most 1.5 s wall each on a quiet machine).

Each command runs in fresh processes (the best of ``--repeats``: noise only ever slows a run), then once more
under ``python -X importtime`` to say where its time goes: the packages whose modules took longest to import
(the import time of every module of the package, summed) and qmedimg's own costliest imports (cumulative)::

    python benchmarks/startup.py
    python benchmarks/startup.py --repeats 5 --top 12

Wall times count the interpreter's own start (``python -c pass`` is printed for reference) and are noisy on a
shared machine: the first line says the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"qmedimg --help": ["--help"], "qmedimg backends": ["backends"], "qmedimg circuits": ["circuits"]}
CODE = "import sys; from qmedimg.cli import main; sys.exit(main(sys.argv[1:]))"


def wall(argv: list[str], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` fresh runs of ``python -c CODE argv``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CODE, *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def import_times(argv: list[str]) -> dict[str, tuple[int, int]]:
    """{module: (self µs, cumulative µs)} of one run under ``-X importtime``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", CODE, *argv], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    found = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            found.setdefault(match[4], (int(match[1]), int(match[2])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs per command, the fastest kept (default 3)")
    parser.add_argument("--top", type=int, default=6, help="imports listed per command (default 6)")
    args = parser.parse_args()
    print(f"{len(os.sched_getaffinity(0))} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"best of {args.repeats} fresh processes")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(f"{'python -c pass':<20}{time.perf_counter() - start:>6.2f} s   (the interpreter alone)")
    for name, argv in COMMANDS.items():
        seconds = wall(argv, args.repeats)
        found = import_times(argv)
        packages: dict[str, int] = {}
        for module, (own_time, _) in found.items():
            packages[module.split(".")[0]] = packages.get(module.split(".")[0], 0) + own_time
        top = sorted(((t, p) for p, t in packages.items()), reverse=True)[:args.top]
        print(f"{name:<20}{seconds:>6.2f} s   {'target met' if seconds <= 1.5 else 'over 1.5 s'}; torch loaded: "
              f"{'torch' in found}, qiskit loaded: {'qiskit' in found}")
        print(f"{'':<20}packages (s, all their modules): {', '.join(f'{p} {t / 1e6:.2f}' for t, p in top)}")
        own = sorted(((t, m) for m, (_, t) in found.items() if m.startswith("qmedimg")), reverse=True)[:args.top]
        print(f"{'':<20}qmedimg imports (cumulative s): {', '.join(f'{m} {t / 1e6:.2f}' for t, m in own)}")


if __name__ == "__main__":
    main()
