"""The width × depth × noise study's report: test accuracy against estimated circuit fidelity and
two-qubit gate count per device, a heat map (qubits × layers) of the accuracy lost at calibrated
noise per device, and ``summary.md`` with one verdict sentence per device — all read from the
study's rows (``results.csv``: the noise study's columns plus ``qubits``, ``layers``, ``seed``); these
read the ideally trained heads only (``training`` ideal). With noise-aware runs,
:func:`noise_aware_section` and :func:`plot_strategies` (``accuracy_lost_by_strategy.png``) compare, per
device and head, the ACC lost by three strategies with paired bootstrap intervals
(:mod:`qmedimg.report.intervals`), from the rows' per-image arrays (a row's ``per_image``).

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

from qmedimg.report.intervals import Interval, correct, seeded_difference
from qmedimg.report.noise_study import statistical_note
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
        if row.get("cross_check"):  # a point run again on another simulator, to check it: not a grid point
            continue
        if row.get("training", "ideal") not in ("", "ideal"):  # a noise-aware run: compared on its own
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
             "participation ratio of the head's outputs at scale 1 (how many numbers it carries). The 1-point "
             "threshold of the sentences below is applied to those means, not a test: one test image can be worth "
             "more than a point, and only a paired interval (the noise-aware section, with --noise-aware) says "
             "whether a loss can be told from zero.", "",
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
    note = statistical_note(rows)
    if note:
        lines += ["", note]
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
    # a panel as wide as its title's longer line (the device name on a line of its own: never clipped)
    panel = max(1.2 * len(layers) + 2.5, 0.09 * max([28, *map(len, backends)]) + 1.4)
    fig, axes = plt.subplots(1, max(1, len(backends)), figsize=(panel * max(1, len(backends)), 0.6 * len(qubits) + 2.5),
                             squeeze=False)
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
        ax.set(xlabel="layers", ylabel="qubits")
        ax.set_title(f"{backend}\nACC lost at scale 1 (points)", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046)
    save_figure(fig, path)


STRATEGIES = {"ideal": "trained ideally, on the device", "aware": "trained under the device's noise",
              "mitigated": "trained ideally, with readout+zne"}
"""The lines of ``accuracy_lost_by_strategy.png``: ACC lost at calibrated noise against the ideally trained
head's exact ACC on the same images."""


def strategy_losses(rows: list[dict], backend: str, *, resamples: int = 2000, level: float = 0.95,
                    seed: int = 0) -> dict[tuple, dict]:
    """{(qubits, layers): {strategy: Interval in points, "recovered": Interval, "factors": N, "errors":
    {strategy: largest statistical error of ACC, in points, or None}}} on ``backend`` at scale 1, from rows holding
    ``per_image`` (labels, decision, ideal_decision): per seed, paired on that seed's images, against the
    ideally trained head's exact decisions; a strategy no row of the head has is left out."""
    shots, by = primary_shots(rows), {}
    for row in rows:
        if (row["backend"] == backend and row["shots"] == shots and not row.get("cross_check")
                and "per_image" in row and scale_of(row) == 1.0 and str(row["repeat"]) == "0"):
            key = (int(row["qubits"]), int(row["layers"]), int(row["seed"]), row.get("training") or "ideal")
            by[key + (row["mitigation"],)] = row
    table = {}
    for head in sorted({k[:2] for k in by if k[3:] == ("ideal", "none")}):
        pairs: dict[str, list] = {}
        used: dict[str, list[dict]] = {}
        for s in sorted({k[2] for k in by if k[:2] == head and k[3:] == ("ideal", "none")}):
            plain = by[(*head, s, "ideal", "none")]
            data = plain["per_image"]
            base, noisy = correct(data["labels"], data["ideal_decision"]), correct(data["labels"], data["decision"])
            others = {"ideal": plain, "aware": by.get((*head, s, "noise-aware", "none")),
                      "mitigated": by.get((*head, s, "ideal", "readout+zne"))}
            for name, row in others.items():
                if row is None or not np.array_equal(row["per_image"]["labels"], data["labels"]):
                    continue  # not run, or not the same images
                scored = correct(row["per_image"]["labels"], row["per_image"]["decision"])
                pairs.setdefault(name, []).append((base, scored))
                used.setdefault(name, []).append(row)
                if name == "mitigated":
                    pairs.setdefault("recovered", []).append((scored, noisy))
        figures = {name: seeded_difference(p, resamples=resamples, level=level, seed=seed).scaled(100)
                   for name, p in pairs.items()}
        figures["errors"] = {name: max((100 * float(r["acc_statistical_error"]) for r in group
                                        if r.get("acc_statistical_error", "") != ""), default=None)
                             for name, group in used.items()}
        zne = used.get("mitigated")
        figures["factors"] = len(zne[0]["zne_factors"].split(";")) if zne and zne[0].get("zne_factors") else 1
        table[head] = figures
    return table


def _said(subject: str, iv: Interval, up: str, down: str, noun: str, where: str = "", error=None) -> str:
    """A clause with a conclusion word only where the interval excludes zero (``up`` for a positive figure,
    ``down`` for a negative one), else the figure and the note that its interval includes zero."""
    err = f" (statistical error of ACC ≤ {error:.2f} points)" if error is not None else ""
    if iv.all_zero:
        return f"{subject} shows no difference{where} (0.0 points: every image decided the same){err}"
    if iv.excludes_zero:
        sign, word = (1, up) if iv.low > 0 else (-1, down)
        low, high = sorted((sign * iv.low, sign * iv.high))
        return f"{subject} {word} {sign * iv.estimate:.1f} points{where} [{low:.1f}, {high:.1f}]{err}"
    return (f"{subject.removesuffix(' it')}: {noun}{where} {iv.estimate:+.1f} points [{iv.low:+.1f}, "
            f"{iv.high:+.1f}], the interval includes zero{err}")


def noise_aware_section(rows: list[dict], devices: dict[str, str], *, resamples: int = 2000, level: float = 0.95,
                        seed: int = 0) -> str:
    """summary.md's section on noise-aware training: per device, one sentence per head (a nested bullet), each
    figure with its paired interval (:func:`strategy_losses`)."""
    seeds = sorted({int(r["seed"]) for r in rows})
    lines = ["", f"## Noise-aware training (paired {100 * level:g} % intervals)", "",
             f"ACC lost at calibrated noise (scale 1), in points, against the ideally trained head's exact (ideal) "
             f"test ACC on the same images; mean over seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))}. "
             f"[low, high]: paired bootstrap percentile interval (B = {resamples} resamples, seed {seed}; over the "
             f"test images{', after resampling the seeds' if len(seeds) > 1 else ''}). A conclusion (loses, gains, "
             "recovers) is drawn only where the interval excludes zero. Plot: `accuracy_lost_by_strategy.png`.", ""]
    for backend, device in devices.items():
        table = strategy_losses(rows, backend, resamples=resamples, level=level, seed=seed)
        named = backend if device == backend else f"{backend} ({device})"
        if not table:
            lines.append(f"- **{named}**: no head of the grid was evaluated on it at calibrated noise.")
            continue
        lines.append(f"- **{named}**:")
        for (n, depth), f in table.items():
            errors = f["errors"]
            article = "An" if str(n).startswith("8") or n in (11, 18) else "A"
            parts = [_said(f"{article} {n}×{depth} head trained ideally", f["ideal"], "loses", "gains", "ACC lost",
                           " at calibrated noise", errors.get("ideal"))]
            parts.append(_said("trained under noise it", f["aware"], "loses", "gains", "ACC lost", "",
                               errors.get("aware")) if "aware" in f else "no noise-aware run of it was evaluated")
            if "recovered" in f:
                parts.append(_said("readout+zne", f["recovered"], "recovers", "costs a further", "ACC recovered", "",
                                   errors.get("mitigated")) + f", at {f['factors']}× the shots")
            lines.append("  - " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def plot_strategies(rows: list[dict], path: Path, devices: dict[str, str], *, resamples: int = 2000,
                    level: float = 0.95, seed: int = 0) -> None:
    """accuracy_lost_by_strategy.png: per device, ACC lost at calibrated noise against head size (qubits ×
    layers), a line per strategy (:data:`STRATEGIES`), error bars = the paired intervals."""
    fig, axes = plt.subplots(1, max(1, len(devices)), figsize=(5.5 * max(1, len(devices)), 4.2), squeeze=False)
    for ax, backend in zip(axes[0], devices):
        table = strategy_losses(rows, backend, resamples=resamples, level=level, seed=seed)
        heads_ = sorted(table, key=lambda h: (h[0] * h[1], h))
        sizes = sorted({h[0] * h[1] for h in heads_})
        step = 0.015 * max(1, sizes[-1] - sizes[0]) if sizes else 0.0  # the strategies side by side
        for i, (name, label) in enumerate(STRATEGIES.items()):
            shown = [h for h in heads_ if name in table[h]]
            if not shown:
                continue
            x = np.array([h[0] * h[1] for h in shown], dtype=float) + step * (i - 1)
            iv = [table[h][name] for h in shown]
            y = np.array([v.estimate for v in iv])
            spread = np.clip([y - [v.low for v in iv], [v.high for v in iv] - y], 0, None)  # percentile ends
            ax.errorbar(x, y, yerr=spread, marker="o", capsize=3, label=label)
        ax.set_xticks(sizes, ["/".join(f"{q}×{d}" for q, d in heads_ if q * d == size) for size in sizes])
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="head size (qubits × layers)", ylabel="ACC lost (points)",
               title=f"{backend}: ACC lost at calibrated noise")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.text(0.5, 0.005, f"error bars: paired bootstrap {100 * level:g} % intervals (B = {resamples}, seed {seed})",
             ha="center", fontsize=7)
    save_figure(fig, path, rect=(0, 0.03, 1, 1))
