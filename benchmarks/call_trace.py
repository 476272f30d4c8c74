"""How one ``qmedimg evaluate`` call travels through qmedimg's modules: modules entered, climbs back up the
layers, and returns to a module already left (issue 22's target: ≤ 5, from 21).

    python benchmarks/call_trace.py RUN_DIR [--backend fake_manila] [--test-limit 8] [--source DIR]

It traces ``main(["evaluate", RUN_DIR, ...])`` with ``sys.setprofile`` and keeps every call from one qmedimg
module into another (the quantum simulators' own inner calls, below the backends layer, are left out: they
are the simulation, not the route through the code). Two figures:

* **the route** (the issue's measure): the modules the command and its workflow call, in order, a package's
  modules counted as one (``qmedimg.backends.fake`` is ``backends``), repeats in a row counted once. A
  **return** is an entry into a module the route has already left: the workflow bouncing between modules
  (to ask the run for its threshold, then the metrics, then the run again ...).
* **every call** (for reference): along all cross-module calls, a **climb** is a call into a module of a
  higher layer than its caller's (pyproject.toml's import-linter layers: code below calling back up), and a
  return is a call into a module that an earlier call entered, left since, and not on the call stack now.

``--source DIR`` traces another checkout (e.g. a worktree of an older commit) for the before/after figures.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

BELOW_THE_ROUTE = ("qmedimg.quantum",)  # the simulators' inner calls


def layers(pyproject: Path) -> dict[str, int]:
    """{module or package name: height} from the layers contract (cli highest)."""
    config = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    heights = {}
    for height, layer in enumerate(reversed(contract["layers"])):
        for name in layer.split("|"):
            heights[f"qmedimg.{name.strip()}"] = height
    return heights


def height_of(module: str, heights: dict[str, int]) -> int:
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in heights:
            return heights[".".join(parts[:end])]
    return len(heights)


def trace(argv: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(caller module, callee module, modules on the stack) for every cross-module qmedimg call."""
    from qmedimg.cli import main

    calls, stack = [], []

    def profile(frame, event, arg):
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            inside = module.startswith("qmedimg") and not module.startswith(BELOW_THE_ROUTE)
            caller = stack[-1] if stack else None
            if inside and caller is not None and caller[1] and caller[0] != module:
                calls.append((caller[0], module, tuple(m for m, ok in stack if ok)))
            stack.append((module, inside))
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        code = main(argv)
    finally:
        sys.setprofile(None)
    if code != 0:
        raise SystemExit(f"evaluate failed (exit {code})")
    return calls


def measure(calls, heights) -> dict:
    entered, left, returns, climbs = [], set(), 0, 0
    previous_stack: tuple[str, ...] = ()
    for caller, callee, on_stack in calls:
        left |= set(previous_stack) - set(on_stack)  # modules the route has returned out of
        if callee in left and callee not in on_stack:
            returns += 1
        climbs += height_of(callee, heights) > height_of(caller, heights)
        if callee not in entered:
            entered.append(callee)
        previous_stack = (*on_stack, callee)
    return {"modules": len(entered), "climbs": climbs, "returns": returns, "calls": len(calls)}


ROUTE_FROM = ("qmedimg.cli.commands", "qmedimg.workflows.")  # the command and its workflow


def route(calls) -> dict:
    """The modules the command and workflow call, in order (packages as one, repeats in a row once), and how
    often the route enters a module it has already left."""
    def unit(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 and parts[1] in ("backends", "data", "quantum", "cli") else ".".join(parts[1:])

    sequence = []
    for caller, callee, _ in calls:
        if caller.startswith(ROUTE_FROM) and (not sequence or sequence[-1] != unit(callee)):
            sequence.append(unit(callee))
    returns = sum(module in sequence[:i] for i, module in enumerate(sequence))
    return {"sequence": sequence, "modules": len(set(sequence)), "returns": returns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--backend", default="fake_manila")
    parser.add_argument("--test-limit", type=int, default=8)
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    sys.path.insert(0, str(args.source))
    calls = trace(["evaluate", args.run, "--backend", args.backend, "--test-limit", str(args.test_limit), "--quiet"])
    figures = measure(calls, layers(args.source / "pyproject.toml"))
    path = route(calls)
    print(f"route ({args.source}): {' -> '.join(path['sequence'])}")
    print(f"route: {path['modules']} modules, {path['returns']} returns to a module already left")
    print(f"evaluate {args.run} --backend {args.backend} ({args.source}): {figures['modules']} modules entered, "
          f"{figures['climbs']} climbs back up the layers, {figures['returns']} re-entries of a module already left "
          f"({figures['calls']} cross-module calls, every depth)")


if __name__ == "__main__":
    main()
