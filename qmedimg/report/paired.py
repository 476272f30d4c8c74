"""Is the hybrid better or worse than a baseline on the same test images? The paired comparison ``compare``
writes: differences of ACC and AUC (hybrid − baseline) with paired bootstrap intervals, per seed and pooled
over seeds, and DeLong's test of the AUC difference, from each run's per-image outputs
(:mod:`qmedimg.workflows.per_image`: labels, probabilities, decisions at the run's threshold).

What is computed (B = 2000 resamples, 95 %, numpy generator seed 0 unless asked otherwise):

* **Per seed**: the hybrid and the baseline of one seed scored the same test images. Each resample draws the
  N images with replacement, the same draw for both models (paired), and takes ACC(hybrid) − ACC(baseline) and
  AUC(hybrid) − AUC(baseline) on it, as MedMNIST computes them: ACC from the run's decisions, AUC the ROC AUC
  of P(class 1) (binary), the mean one-vs-rest AUC over classes (multi-class) or the mean AUC over labels
  (multi-label). The interval is the 2.5th–97.5th percentile of the B differences; the estimate is the
  difference on the test split itself.
* **Pooled over seeds**: within each resample, the mean over seeds of the per-seed differences. When every seed
  scored the same images (the same ``images_sha256``: a MedMNIST test split) a resample draws the images once,
  for every seed and model; otherwise (``--limit`` samples each seed's split apart) each seed's images are
  drawn apart. The estimate is the mean of the per-seed differences. The seeds are the ones trained, never
  resampled: the interval is about the test images, for these trained models; the spread over training seeds
  is the comparison table's ±.
* A resample on which an AUC is undefined (a class, or a label's positives or negatives, not drawn) is left out
  of the AUC interval and counted (``undefined``).
* **DeLong's test** (DeLong, DeLong & Clarke-Pearson 1988; Sun & Xu's 2014 fast algorithm, with midranks) of
  AUC(hybrid) − AUC(baseline) per seed, two-sided; binary tasks only. None pooled: the seeds share test images,
  so their tests are not independent. No maintained Python library was found to provide it (scipy and
  scikit-learn do not); it is checked against the O(mn) definition and a worked example in the tests.

An interval that excludes 0 says the difference is distinguishable from zero on this test set at that level;
each comparison stands on its own (no correction for the number of baselines).

Example::

    from qmedimg.report.paired import paired_bootstrap, delong
    d = paired_bootstrap([(hybrid_seed0, baseline_seed0), (hybrid_seed1, baseline_seed1)], "binary-class")
    d["acc"].estimate, d["acc"].low, d["acc"].high, d["auc"].excludes_zero
    delong(labels, hybrid_probs[:, 1], baseline_probs[:, 1]).p
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm, rankdata

from qmedimg.data import MULTI_LABEL
from qmedimg.report.intervals import LEVEL, RESAMPLES, SEED, correct

CHUNK = 1 << 20  # resampled image indices handled at a time: bounds memory on large test splits
METRICS = ("acc", "auc")


@dataclass(frozen=True)
class Difference:
    """A paired difference a − b of one metric (``acc`` or ``auc``), its percentile interval and how it was drawn."""

    metric: str
    estimate: float
    low: float
    high: float
    level: float
    resamples: int
    seed: int  # the numpy generator's seed
    seeds: int  # training seeds the estimate averages
    images: int  # test images per seed (the fewest, when they differ)
    undefined: int = 0  # resamples left out: the metric undefined on them (an AUC without both classes drawn)

    @property
    def excludes_zero(self) -> bool:
        """Distinguishable from zero at ``level``: the interval lies on one side of 0."""
        return bool(self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of AUC(a) − AUC(b) on the same images: the difference, its standard error, z and the
    two-sided p (NaN where undefined: fewer than two images of a class)."""

    estimate: float
    se: float
    z: float
    p: float


def delong(labels, scores_a, scores_b) -> DeLong:
    """DeLong's test for two correlated ROC AUCs on the same binary ``labels`` (1: positive), with Sun & Xu's fast
    algorithm: each score's structural components from midranks (among all images, among its class), their
    covariance over positives and over negatives, Var(AUC_a − AUC_b) = S_aa + S_bb − 2 S_ab. Equal AUCs with no
    variance (the same scores) give z = 0, p = 1."""
    truth = np.asarray(labels).reshape(-1) == 1
    scores = np.stack([np.asarray(scores_a, dtype=float).reshape(-1), np.asarray(scores_b, dtype=float).reshape(-1)])
    if scores.shape[1] != len(truth):
        raise ValueError(f"labels and scores must be of one length (the same images): {len(truth)}, {scores.shape}")
    positives, negatives = scores[:, truth], scores[:, ~truth]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        return DeLong(np.nan, np.nan, np.nan, np.nan)
    everyone = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    among_positives, among_negatives = rankdata(positives, axis=1), rankdata(negatives, axis=1)
    aucs = (everyone[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (everyone[:, :m] - among_positives) / n  # per positive: the share of negatives it outscores
    v01 = 1 - (everyone[:, m:] - among_negatives) / m  # per negative: the share of positives that outscore it
    s = np.cov(v10) / m + np.cov(v01) / n
    variance = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    estimate = float(aucs[0] - aucs[1])
    if variance <= 1e-15:
        return DeLong(estimate, 0.0, 0.0 if estimate == 0 else np.nan, 1.0 if estimate == 0 else np.nan)
    z = estimate / np.sqrt(variance)
    return DeLong(estimate, float(np.sqrt(variance)), float(z), float(2 * norm.sf(abs(z))))


def _columns(outputs: dict, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(truth (N, C) bool, scores (N, C)): the binary problems whose AUCs MedMNIST's AUC averages."""
    probs = np.asarray(outputs["probs"], dtype=float)
    labels = np.asarray(outputs["labels"])
    if task == MULTI_LABEL:
        return labels.reshape(len(probs), -1) == 1, probs
    labels = labels.reshape(-1)
    if task == "binary-class":
        return (labels == 1)[:, None], probs[:, -1:]
    return labels[:, None] == np.arange(probs.shape[1]), probs


def _tie_groups(scores: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Per column of (N, C) scores: each image's rank among the distinct scores (ties share one) and their count."""
    groups = []
    for column in scores.T:
        distinct, group = np.unique(column, return_inverse=True)
        groups.append((group.reshape(-1), len(distinct)))
    return groups


def _auc(truth: np.ndarray, groups: list[tuple[np.ndarray, int]], idx: np.ndarray) -> np.ndarray:
    """The AUC of each row of resampled image indices ``idx`` (R, N): per column, the Mann–Whitney statistic
    (a tie counts ½, as roc_auc_score) from how often each distinct score is drawn among positives and negatives,
    divided by positives × negatives; averaged over columns; NaN where a column lacks positives or negatives."""
    rows = np.arange(len(idx))[:, None]
    per_column = []
    for c, (group, size) in enumerate(groups):
        key = ((rows * 2 + truth[idx, c]) * size + group[idx]).reshape(-1)
        counts = np.bincount(key, minlength=len(idx) * 2 * size).reshape(len(idx), 2, size)
        negatives, positives = counts[:, 0], counts[:, 1]
        below = np.cumsum(negatives, axis=1) - negatives  # negatives scored lower than each distinct score
        u = (positives * (below + 0.5 * negatives)).sum(axis=1)
        pairs = positives.sum(axis=1) * negatives.sum(axis=1)
        per_column.append(np.where(pairs > 0, u / np.maximum(pairs, 1), np.nan))
    return np.mean(per_column, axis=0)


def _draws(sizes: list[int], joint: bool, resamples: int, seed: int):
    """Chunk by chunk, each seed's resampled image indices (rows of indices, with replacement): one draw for
    every seed when ``joint`` (they scored the same images), else a generator per seed (``SeedSequence.spawn``).
    The same arguments give the same draws, whichever model they resample."""
    if joint:
        generators = [np.random.default_rng(seed)]
    else:
        generators = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(sizes))]
    per = max(1, CHUNK // max(sizes))
    for start in range(0, resamples, per):
        rows = min(per, resamples - start)
        if joint:
            yield [generators[0].integers(0, sizes[0], size=(rows, sizes[0]))] * len(sizes)
        else:
            yield [g.integers(0, n, size=(rows, n)) for g, n in zip(generators, sizes)]


def _scores(outputs: list[dict], task: str, joint: bool, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """One model's ACC and AUC on the test split of each seed (``observed``, (seeds,)) and on each resample
    (``acc``, ``auc``: (seeds, B))."""
    hits = [correct(o["labels"], o["decision"]) for o in outputs]
    columns = [(truth, _tie_groups(scores)) for truth, scores in (_columns(o, task) for o in outputs)]
    replicates = {"acc": [], "auc": []}
    for chunk in _draws([len(h) for h in hits], joint, resamples, seed):
        replicates["acc"].append([h[idx].mean(axis=1) for h, idx in zip(hits, chunk)])
        replicates["auc"].append([_auc(t, g, idx) for (t, g), idx in zip(columns, chunk)])
    return {"observed_acc": np.array([h.mean() for h in hits]),
            "observed_auc": np.array([_auc(t, g, np.arange(len(t))[None])[0] for t, g in columns]),
            **{k: np.concatenate(v, axis=1) for k, v in replicates.items()}}


def _difference(metric: str, a: dict, b: dict, rows: slice, level: float, resamples: int, seed: int,
                images: int) -> Difference:
    """a − b of ``metric`` over the seeds ``rows`` select: the mean of per-seed differences, per resample."""
    pooled = (a[metric][rows] - b[metric][rows]).mean(axis=0)
    defined = pooled[np.isfinite(pooled)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(defined, [tail, 100 - tail]) if len(defined) else (np.nan, np.nan)
    estimate = float(np.mean(a[f"observed_{metric}"][rows] - b[f"observed_{metric}"][rows]))
    seeds = len(a[metric][rows])
    return Difference(metric, estimate, float(low), float(high), level, resamples, seed, seeds, images,
                      int(len(pooled) - len(defined)))


def same_images(outputs: list[dict]) -> bool:
    """Whether per-image outputs scored the same images: the same ``images_sha256`` (or, without one, one
    file's outputs alone)."""
    digests = {str(o["images_sha256"]) if "images_sha256" in o else None for o in outputs}
    return len(outputs) == 1 or (len(digests) == 1 and None not in digests)


def _check(pairs) -> None:
    """Refuse pairs not scored on the same images (labels, or image digests, that differ)."""
    for a, b in pairs:
        if np.shape(a["labels"]) != np.shape(b["labels"]) or not np.array_equal(a["labels"], b["labels"]):
            raise ValueError("a paired comparison needs both models scored on the same images: their labels differ")
        if ("images_sha256" in a) and ("images_sha256" in b) and str(a["images_sha256"]) != str(b["images_sha256"]):
            raise ValueError("a paired comparison needs both models scored on the same images: their images differ")


def paired_bootstrap(pairs, task: str, *, resamples: int = RESAMPLES, level: float = LEVEL,
                     seed: int = SEED) -> dict[str, Difference]:
    """ACC and AUC of a − b (``pairs``: one (a, b) of per-image outputs per training seed, each pair on the same
    images) with paired bootstrap intervals, pooled over the pairs as the module says (one pair: that seed's)."""
    pairs = list(pairs)
    if not pairs or not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need at least one pair, level in (0, 1) and resamples >= 1 (got {len(pairs)}, {level}, "
                         f"{resamples})")
    _check(pairs)
    joint = same_images([a for a, _ in pairs])
    a = _scores([a for a, _ in pairs], task, joint, resamples, seed)
    b = _scores([b for _, b in pairs], task, joint, resamples, seed)
    images = min(len(p[0]["labels"]) for p in pairs)
    return {m: _difference(m, a, b, slice(None), level, resamples, seed, images) for m in METRICS}


@dataclass(frozen=True)
class Paired:
    """One hybrid − one baseline on one dataset: per seed (``per_seed``, in ``seeds`` order) and pooled, ACC and
    AUC :class:`Difference` s, and DeLong's test per seed (None: not a binary task)."""

    model: str
    baseline: str
    seeds: tuple[int, ...]
    per_seed: tuple[dict[str, Difference], ...]
    pooled: dict[str, Difference]
    delong: tuple[DeLong | None, ...]


@dataclass(frozen=True)
class PairedReport:
    """A dataset's paired comparisons, how they were drawn (``joint``: one draw of the images for every seed),
    or why there are none (``missing``)."""

    comparisons: tuple[Paired, ...] = ()
    joint: bool = True
    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = SEED
    missing: str | None = None


def paired_comparison(records: list[dict], *, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = SEED) -> PairedReport:
    """Every hybrid (a model named ``hybrid*``) against every other model of ``records`` (compare's: model,
    seed, run and ``per_image``, the run's per-image outputs on its test split or None), seed by seed; each
    model's resamples are computed once. ``missing`` says why nothing was compared: no hybrid or no baseline,
    or runs without per-image outputs (named)."""
    settings = {"resamples": resamples, "level": level, "seed": seed}
    labels = list(dict.fromkeys(r["model"] for r in records))
    hybrids = [m for m in labels if m.startswith("hybrid")]
    if not hybrids or len(hybrids) == len(labels):
        return PairedReport(missing="no hybrid and baseline to pair", **settings)
    lacking = [Path(r["run"]).name for r in records if r.get("per_image") is None]
    if lacking:
        many = len(lacking) > 1
        return PairedReport(missing=f"{len(lacking)} run{'s' * many} ({', '.join(lacking)}) {'have' if many else 'has'} "
                                    "no per-image test outputs (trained before compare kept them)", **settings)
    seeds = sorted({r["seed"] for r in records})
    by = {(r["model"], r["seed"]): r["per_image"] for r in records}
    outputs = {m: [by[m, s] for s in seeds] for m in labels}
    try:
        for m in hybrids:
            for other in labels:
                if other not in hybrids:
                    _check(zip(outputs[m], outputs[other]))
    except ValueError as exc:
        return PairedReport(missing=str(exc), **settings)
    task = str(outputs[labels[0]][0]["task"])
    joint = same_images([o for m in labels for o in outputs[m]])
    scores = {m: _scores(outputs[m], task, joint, resamples, seed) for m in labels}
    images = min(len(o["labels"]) for o in outputs[labels[0]])
    comparisons = []
    for m in hybrids:
        for other in (x for x in labels if x not in hybrids):
            a, b = scores[m], scores[other]
            per_seed = tuple({k: _difference(k, a, b, slice(i, i + 1), level, resamples, seed,
                                             len(outputs[m][i]["labels"])) for k in METRICS}
                             for i in range(len(seeds)))
            pooled = {k: _difference(k, a, b, slice(None), level, resamples, seed, images) for k in METRICS}
            tests = tuple(delong(x["labels"], x["probs"][:, -1], y["probs"][:, -1]) if task == "binary-class" else None
                          for x, y in zip(outputs[m], outputs[other]))
            comparisons.append(Paired(m, other, tuple(seeds), per_seed, pooled, tests))
    return PairedReport(tuple(comparisons), joint, **settings)


PAIRED_COLUMNS = ("model", "baseline", "seed", "metric", "estimate", "low", "high", "excludes_zero", "images",
                  "resamples", "undefined_resamples", "level", "bootstrap_seed", "images_drawn", "delong_z",
                  "delong_p")
"""paired.csv's columns: a row per comparison, seed (``pooled``: the mean over seeds) and metric."""


def paired_rows(report: PairedReport) -> list[list]:
    """paired.csv's rows (:data:`PAIRED_COLUMNS`)."""
    drawn = "once for every seed" if report.joint else "per seed"
    rows = []
    for c in report.comparisons:
        labelled = [*zip(c.seeds, c.per_seed, c.delong), *([("pooled", c.pooled, None)] if len(c.seeds) > 1 else [])]
        for seed, differences, test in labelled:
            for d in differences.values():
                auc_test = test is not None and d.metric == "auc"
                rows.append([c.model, c.baseline, seed, d.metric, d.estimate, d.low, d.high, d.excludes_zero, d.images,
                             d.resamples, d.undefined, d.level, d.seed, drawn, test.z if auc_test else "",
                             test.p if auc_test else ""])
    return rows


def _interval(d: Difference) -> str:
    """'+0.0128 [-0.0321, +0.0577]' ('—' when undefined)."""
    if not np.isfinite(d.estimate):
        return "—"
    ends = f"[{d.low:+.4f}, {d.high:+.4f}]" if np.isfinite(d.low) else "[—]"
    return f"{d.estimate:+.4f} {ends}"


def verdict(differences: dict[str, Difference], model: str = "hybrid") -> str:
    """Which differences are distinguishable from zero: 'no' or e.g. 'AUC (hybrid lower)'."""
    said = [f"{k.upper()} ({model} {'higher' if d.estimate > 0 else 'lower'})"
            for k, d in differences.items() if d.excludes_zero]
    return ", ".join(said) or "no"


def _how(report: PairedReport) -> str:
    seeds = max((len(c.seeds) for c in report.comparisons), default=1)
    pooled = ("" if seeds == 1 else " Pooled: the mean over seeds of the per-seed differences within each resample, "
              + ("the images drawn once for every seed (the seeds scored the same test images)" if report.joint else
                 "each seed's images drawn apart (their test images differ, e.g. --limit samples per seed)")
              + "; the seeds are the ones trained, not resampled: the interval is about the test images, the spread "
                "over training seeds is the table's ±.")
    return (f"How: paired bootstrap over the test images (B = {report.resamples} resamples, numpy generator seed "
            f"{report.seed}; each resample draws the images with replacement, the same draw for both models), "
            f"{100 * report.level:g} % percentile intervals of hybrid − baseline; ACC and AUC as MedMNIST computes "
            f"them.{pooled} DeLong: two-sided test of the AUC difference per seed (binary tasks). Each comparison "
            "stands on its own: no correction for the number of baselines.")


def paired_section(report: PairedReport) -> list[str]:
    """comparison.md's paired section: a row per comparison and seed (and pooled), then per comparison whether
    each difference is distinguishable from zero; one line when there is nothing to compare."""
    if report.missing:
        return ["", f"Paired comparison on the same test images: not available: {report.missing}."]
    level = f"{100 * report.level:g} %"
    lines = ["", "## Paired comparison on the same test images", "",
             f"| hybrid − baseline | seed | ΔACC [{level} interval] | ΔAUC [{level} interval] | DeLong p (AUC) |",
             "|---|---|---|---|---|"]
    for c in report.comparisons:
        for seed, d, test in zip(c.seeds, c.per_seed, c.delong):
            p = "—" if test is None or not np.isfinite(test.p) else f"{test.p:.3g}"
            lines.append(f"| {c.model} − {c.baseline} | {seed} | {_interval(d['acc'])} | {_interval(d['auc'])} | {p} |")
        if len(c.seeds) > 1:
            lines.append(f"| {c.model} − {c.baseline} | pooled ({len(c.seeds)} seeds) | {_interval(c.pooled['acc'])} | "
                         f"{_interval(c.pooled['auc'])} | — |")
    which = "pooled " if any(len(c.seeds) > 1 for c in report.comparisons) else ""
    lines += ["", f"Distinguishable from zero (the {which}{level} interval excludes 0): " +
              "; ".join(f"{c.model} − {c.baseline}: {verdict(c.pooled, c.model)}" for c in report.comparisons) + ".",
              _how(report)]
    undefined = max((d.undefined for c in report.comparisons for d in c.pooled.values()), default=0)
    if undefined:
        lines.append(f"AUC undefined on up to {undefined} of {report.resamples} resamples (a class not drawn): left "
                     "out of its interval.")
    return lines


def summary_section(reports: dict[str, PairedReport]) -> list[str]:
    """summary.md's paired section: per dataset and comparison, the pooled differences and whether each is
    distinguishable from zero."""
    found = {name: r for name, r in reports.items() if not r.missing}
    if not found:
        return []
    first = next(iter(found.values()))
    lines = ["", f"## Paired comparison (hybrid − baseline on the same test images; pooled over seeds, "
                 f"{100 * first.level:g} % paired bootstrap intervals)", "",
             "| dataset | hybrid − baseline | ΔACC | ΔAUC | distinguishable from zero |", "|---|---|---|---|---|"]
    for name, report in found.items():
        lines += [f"| {name} | {c.model} − {c.baseline} | {_interval(c.pooled['acc'])} | {_interval(c.pooled['auc'])} | "
                  f"{verdict(c.pooled, c.model)} |" for c in report.comparisons]
    lines += ["", "How each is drawn, and DeLong's test per seed: each dataset's comparison.md and paired.csv."]
    lines += [f"{name}: no paired comparison: {r.missing}." for name, r in reports.items() if r.missing]
    return lines
