"""The width × depth × noise study's report: test accuracy against estimated circuit fidelity and
two-qubit gate count per device, a heat map (qubits × layers) of the accuracy lost at calibrated
noise per device, and ``summary.md`` with one verdict sentence per device — all read from the
study's rows (``results.csv``: the noise study's columns plus ``qubits``, ``layers``, ``seed``).

Example::

    from qmedimg.report.width_study import heads, plot_width_study, summary
    heads(rows, "fake_brisbane")[(8, 2)]["lost"]        # points of ACC lost at scale 1, mean over seeds
    plot_width_study(rows, out, skipped)                 # accuracy_vs_circuit.png, accuracy_lost.png
    (out / "summary.md").write_text(summary(rows, skipped, devices={"fake_brisbane": "FakeBrisbane"}))
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from qmedimg.report.plots import save_figure

WITHIN = 1.0  # points of ACC: "stays within 1 point of its ideal accuracy"


def scale_of(row: dict) -> float:
    """A row's noise scale; a backend without noise scales (blank) counts as calibrated (1)."""
    return float(row["scale"]) if row["scale"] != "" else 1.0


def primary_shots(rows: list[dict]) -> str:
    """The shots setting the verdicts are read at: exact values ('') when in the grid."""
    values = [row["shots"] for row in rows]
    return "" if "" in values else (values[0] if values else "")


def _mean(rows: list[dict], column: str) -> float:
    values = [float(r[column]) for r in rows if r.get(column, "") != ""]
    return float(np.mean(values)) if values else float("nan")


def heads(rows: list[dict], backend: str, mitigation: str = "none", scale: float | None = 1.0) -> dict:
    """{(qubits, layers): figures} for one backend and mitigation at one noise scale (None: every
    scale, keyed (qubits, layers, scale)), means over seeds and repeats: ACC/AUC, ideal ACC/AUC, points
    of ACC lost, two-qubit gates, estimated fidelity, seeds."""
    shots = primary_shots(rows)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["backend"] != backend or row["mitigation"] != mitigation or row["shots"] != shots:
            continue
        if scale is not None and scale_of(row) != scale:
            continue
        key = (int(row["qubits"]), int(row["layers"])) + (() if scale is not None else (scale_of(row),))
        groups.setdefault(key, []).append(row)
    table = {}
    for key, group in sorted(groups.items()):
        acc, ideal = _mean(group, "acc"), _mean(group, "ideal_acc")
        table[key] = {"acc": acc, "auc": _mean(group, "auc"), "ideal_acc": ideal, "ideal_auc": _mean(group, "ideal_auc"),
                      "lost": 100 * (ideal - acc), "two_qubit_gates": _mean(group, "two_qubit_gates"),
                      "fidelity": _mean(group, "estimated_fidelity"), "seeds": len({r["seed"] for r in group}),
                      "effective_dimension": _mean(group, "effective_dimension")}
    return table


def _name(head: tuple) -> str:
    return f"{head[0]} qubits × {head[1]} layer{'s' if head[1] != 1 else ''}"


def _figures(f: dict) -> str:
    """'loses 0.6 points, 96 two-qubit gates, estimated fidelity 0.612' (what is known of them)."""
    parts = [f"loses {f['lost'] + 0.0:.1f} points" if f["lost"] >= 0 else f"gains {-f['lost']:.1f} points"]
    if np.isfinite(f["two_qubit_gates"]):
        parts.append(f"{f['two_qubit_gates']:.0f} two-qubit gates")
    if np.isfinite(f["fidelity"]):
        parts.append(f"estimated fidelity {f['fidelity']:.3f}")
    return ", ".join(parts)


def _number(value: float, form: str) -> str:
    return format(value, form) if np.isfinite(value) else "—"


def _largest_within(table: dict) -> tuple | None:
    """The largest head (most qubits, then layers) losing less than 1 point; None if none does."""
    kept = [head for head, f in table.items() if f["lost"] < WITHIN - 1e-9]
    return max(kept) if kept else None


def verdict(rows: list[dict], backend: str, mitigations: list[str]) -> str:
    """The sentence for one device: the largest head within 1 point of its ideal accuracy at
    calibrated noise, and how far each mitigation extends it."""
    plain = heads(rows, backend)
    if not plain:
        return "no head of the grid ran on it"
    best = _largest_within(plain)
    if best is None:
        smallest = min(plain)
        text = (f"no head in the grid stays within {WITHIN:g} point of its ideal accuracy at calibrated noise "
                f"(the smallest, {_name(smallest)}: {_figures(plain[smallest])})")
    else:
        text = (f"the largest head that stays within {WITHIN:g} point of its ideal accuracy at calibrated noise is "
                f"{_name(best)} ({_figures(plain[best])})")
        costly = sorted(head for head, g in plain.items() if g["lost"] >= WITHIN - 1e-9)
        if costly:
            text += f"; noise first costs ≥ {WITHIN:g} point at {_name(costly[0])} ({_figures(plain[costly[0]])})"
    others = [m for m in mitigations if m != "none"]
    if not others:
        return text + "; no mitigation was in the grid (add e.g. --mitigation none,readout+zne)"
    parts = []
    for m in others:
        table = heads(rows, backend, m)
        mitigated = _largest_within(table)
        if not table:
            continue  # not run here (e.g. a noiseless backend)
        if mitigated is None:
            parts.append(f"mitigation {m} keeps none within it either")
        elif best is None or mitigated > best:
            parts.append(f"mitigation {m} extends it to {_name(mitigated)}")
        elif mitigated == best:
            parts.append(f"mitigation {m} leaves it at {_name(best)}")
        else:
            parts.append(f"with mitigation {m} it is only {_name(mitigated)}")
    return text + (", and " + "; ".join(parts) if parts else "")


def summary(rows: list[dict], skipped: list[dict], *, devices: dict[str, str], data: dict | None = None,
            circuit: str = "sel") -> str:
    """summary.md: one verdict per device, the table of accuracy lost at scale 1, the overall answer
    (a head that loses ≥ 1 point, or the largest losses when none does) and the skipped pairs."""
    mitigations = list(dict.fromkeys(r["mitigation"] for r in rows))
    shots = primary_shots(rows)
    source = ", ".join(f"{k} {v}" for k, v in (data or {}).items() if v is not None)
    seeds = sorted({int(r["seed"]) for r in rows})
    lines = ["# Width × depth × noise study", "",
             f"Circuit {circuit}, {source or 'data as configured'}, seeds {', '.join(map(str, seeds))}; "
             f"{'exact expectation values' if shots == '' else shots + ' shots'}. Accuracy lost = ideal (exact) test "
             "ACC − test ACC at noise scale 1 (as calibrated), in points (× 100), mean over seeds; head eff. dim = the "
             "participation ratio of the head's outputs at scale 1 (how many numbers it carries).", "",
             "## Per device", ""]
    for backend, device in devices.items():
        named = backend if device == backend else f"{backend} ({device})"
        lines.append(f"- **{named}**: {verdict(rows, backend, mitigations)}.")
        narrow = sorted({s["qubits"] for s in skipped if s["backend"] == backend})
        if narrow:
            width = next(s["device_qubits"] for s in skipped if s["backend"] == backend)
            lines.append(f"  Skipped {', '.join(map(str, narrow))} qubits: wider than {device} ({width} qubits).")
    lines += ["", "## Accuracy lost at calibrated noise", "",
              "| device | head | 2q gates | est. fidelity | ideal ACC | ACC | lost (points) | ideal AUC | AUC | "
              "head eff. dim |" + "".join(f" lost with {m} |" for m in mitigations if m != "none"),
              "|---|---|---|---|---|---|---|---|---|---|" + "---|" * (len(mitigations) - 1)]
    losses = []
    for backend in devices:
        with_mitigation = {m: heads(rows, backend, m) for m in mitigations if m != "none"}
        for head, f in heads(rows, backend).items():
            losses.append((f["lost"], backend, head))
            extra = "".join(f" {t[head]['lost']:.1f} |" if head in t else " — |" for t in with_mitigation.values())
            lines.append(f"| {backend} | {head[0]}×{head[1]} | {_number(f['two_qubit_gates'], '.0f')} | "
                         f"{_number(f['fidelity'], '.3f')} | "
                         f"{f['ideal_acc']:.4f} | {f['acc']:.4f} | {f['lost']:.1f} | {f['ideal_auc']:.4f} | "
                         f"{f['auc']:.4f} | {_number(f['effective_dimension'], '.2f')} |{extra}")
    costly = [(lost, b, h) for lost, b, h in losses if lost >= WITHIN - 1e-9]
    lines += ["", "## Where noise starts to cost accuracy", ""]
    if costly:
        lines.append("Calibrated noise costs ≥ 1 point of ACC on: " + "; ".join(
            f"{b} from {_name(min(h for _, bb, h in costly if bb == b))}" for b in dict.fromkeys(b for _, b, _ in costly))
            + ".")
    elif losses:
        top = sorted(losses, reverse=True)[:3]
        lines.append("No head of the grid loses ≥ 1 point of ACC at calibrated noise on any device; the largest "
                     "losses: " + "; ".join(f"{b} {h[0]}×{h[1]} {lost:.1f} points" for lost, b, h in top) + ".")
    else:
        lines.append("No grid point was evaluated.")
    lines += ["", "Plots: `accuracy_vs_circuit.png` (test ACC/AUC at calibrated noise against estimated circuit "
              "fidelity and against two-qubit gates, a line per device, dotted: ideal), `accuracy_lost.png` (heat "
              "map). Each run's noise study over every scale: `runs/q{n}-l{L}-s{seed}/noise-study/`."]
    return "\n".join(lines) + "\n"


def plot_width_study(rows: list[dict], out: Path, skipped: list[dict]) -> None:
    """accuracy_vs_circuit.png and accuracy_lost.png."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    backends = list(dict.fromkeys(r["backend"] for r in rows))
    mitigations = list(dict.fromkeys(r["mitigation"] for r in rows))
    styles = ["-", "--", "-.", (0, (5, 1))]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for b, backend in enumerate(backends):
        color = colors[b % len(colors)]
        for m, mitigation in enumerate(mitigations):
            label = backend if mitigation == "none" else f"{backend}, {mitigation}"
            table = heads(rows, backend, mitigation)
            for row_axes, x_column in zip(axes, ("fidelity", "two_qubit_gates")):
                known = [h for h in table if np.isfinite(table[h][x_column])]
                order = sorted(known, key=lambda h: (table[h][x_column], h))
                if not order:
                    continue
                x = np.array([table[h][x_column] for h in order])
                for ax, column in zip(row_axes, ("acc", "auc")):
                    ax.plot(x, [table[h][column] for h in order], linestyle=styles[m % len(styles)], marker="o",
                            color=color, label=label, markerfacecolor="none")
                    if mitigation != "none":
                        continue
                    ax.plot(x, [table[h][f"ideal_{column}"] for h in order], ":", color=color, alpha=0.6)
                    for h, xi in zip(order, x):
                        ax.annotate(f"{h[0]}×{h[1]}", (xi, table[h][column]), fontsize=6, xytext=(3, 3),
                                    textcoords="offset points")
    for row_axes, (what, short) in zip(axes, (("estimated circuit fidelity (calibration)", "estimated fidelity"),
                                               ("two-qubit gates after transpilation", "two-qubit gates"))):
        for ax, column in zip(row_axes, ("ACC", "AUC")):
            ax.set(xlabel=what, ylabel=f"test {column}", title=f"Test {column} at noise scale 1 vs {short}")
            ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1, 0].get_legend_handles_labels()
    handles = [*handles, Line2D([], [], linestyle=":", color="grey")]
    labels = [*labels, "ideal (exact) ACC/AUC of the same heads"]
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, max(1, len(labels))))
    save_figure(fig, out / "accuracy_vs_circuit.png", rect=(0, 0.05 * ((len(labels) + 3) // 4) + 0.02, 1, 1))
    plot_accuracy_lost(rows, out / "accuracy_lost.png", skipped)


def plot_accuracy_lost(rows: list[dict], path: Path, skipped: list[dict]) -> None:
    """Heat map per device: qubits (rows) × layers (columns), points of ACC lost at scale 1;
    a skipped (too wide) or missing head is grey, marked 'skip' or '—'."""
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    qubits = sorted({int(r["qubits"]) for r in rows} | {s["qubits"] for s in skipped})
    layers = sorted({int(r["layers"]) for r in rows})
    fig, axes = plt.subplots(1, max(1, len(backends)), figsize=(1.2 * len(layers) * len(backends) + 2.5 * len(backends),
                                                                0.6 * len(qubits) + 2.2), squeeze=False)
    tables = {b: heads(rows, b) for b in backends}
    top = max([WITHIN] + [f["lost"] for t in tables.values() for f in t.values() if np.isfinite(f["lost"])])
    cmap = plt.get_cmap("Reds").with_extremes(bad="lightgrey")
    for ax, backend in zip(axes[0], backends):
        grid = np.full((len(qubits), len(layers)), np.nan)
        for (n, depth), f in tables[backend].items():
            grid[qubits.index(n), layers.index(depth)] = f["lost"]
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=min(0.0, np.nanmin(grid) if np.isfinite(grid).any()
                                                                          else 0.0), vmax=top, aspect="auto")
        narrow = {s["qubits"] for s in skipped if s["backend"] == backend}
        for i, n in enumerate(qubits):
            for j in range(len(layers)):
                text = "skip" if n in narrow else ("—" if np.isnan(grid[i, j]) else f"{grid[i, j]:.1f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if np.isfinite(grid[i, j]) and grid[i, j] > 0.6 * top else "black")
        ax.set_xticks(range(len(layers)), [str(x) for x in layers])
        ax.set_yticks(range(len(qubits)), [str(n) for n in qubits])
        ax.set(xlabel="layers", ylabel="qubits", title=f"{backend}: ACC lost at scale 1 (points)")
        fig.colorbar(image, ax=ax, fraction=0.046)
    save_figure(fig, path)
