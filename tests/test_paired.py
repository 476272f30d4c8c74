"""The paired comparison of two models on the same test images (qmedimg.report.paired): the bootstrap flags a
difference planted by construction and not a null one (seeded simulations), pairs the two models image by image,
pools seeds as documented, computes MedMNIST's AUC, and DeLong's test agrees with its definition and a reference."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from qmedimg.metrics import compute_metrics, decisions
from qmedimg.report.paired import delong, paired_bootstrap, paired_comparison

BINARY = "binary-class"


def outputs(labels, p1, task=BINARY, images="same") -> dict:
    """One model's per-image outputs as compare keeps them, from P(class 1) (binary) or probabilities (N, K)."""
    probs = np.c_[1 - p1, p1] if np.ndim(p1) == 1 else np.asarray(p1)
    return {"labels": np.asarray(labels), "probs": probs, "decision": decisions(probs, task),
            "task": np.asarray(task), "images_sha256": np.asarray(images)}


def simulate(rng, n=200, noise_a=1.0, noise_b=1.0):
    """Labels and two models' P(class 1): a logistic score of the label plus each model's own noise; the smaller
    the noise, the better the model."""
    labels = rng.integers(0, 2, n)
    p = [1 / (1 + np.exp(-3 * (labels - 0.5 + rng.normal(0, s, n)))) for s in (noise_a, noise_b)]
    return labels, outputs(labels, p[0]), outputs(labels, p[1])


# ------------------------------------------------------------------- the bootstrap: planted and null


def test_a_difference_planted_by_construction_is_flagged_in_every_simulation():
    for sim in range(5):
        labels, good, poor = simulate(np.random.default_rng(sim), noise_a=0.5, noise_b=0.9)
        d = paired_bootstrap([(good, poor)], BINARY)
        assert d["acc"].excludes_zero and d["acc"].low > 0, (sim, d["acc"])
        assert d["auc"].excludes_zero and d["auc"].low > 0, (sim, d["auc"])
        assert delong(labels, good["probs"][:, 1], poor["probs"][:, 1]).p < 0.05


def test_a_null_difference_is_flagged_about_as_rarely_as_the_level_says():
    """Two models of the same quality (independent noise of one size) in 40 seeded simulations: a 95 % interval
    excludes 0 in about 5 % of them (here at most 4 of 40), and so does DeLong's p < 0.05."""
    flagged = {"acc": 0, "auc": 0, "delong": 0}
    for sim in range(40):
        labels, a, b = simulate(np.random.default_rng(1000 + sim), noise_a=0.8, noise_b=0.8)
        d = paired_bootstrap([(a, b)], BINARY, resamples=500)
        flagged["acc"] += d["acc"].excludes_zero
        flagged["auc"] += d["auc"].excludes_zero
        flagged["delong"] += delong(labels, a["probs"][:, 1], b["probs"][:, 1]).p < 0.05
    assert all(count <= 4 for count in flagged.values()), flagged


def test_the_two_models_are_resampled_together_image_by_image():
    """a is wrong on 45 of 300 images, b on those and 6 more: paired, the interval is as narrow as the per-image
    differences say (normal approximation: ±1.96·sd/√n), a third of what two independent resamples would give."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    p = np.where(labels == 1, 0.8, 0.2) + rng.normal(0, 0.25, 300).clip(-0.15, 0.15)
    p[:45] = 1 - p[:45]  # a's mistakes
    worse = p.copy()
    flip = 45 + np.nonzero(labels[45:] == 1)[0][:6]
    worse[flip] = 0.3
    d = paired_bootstrap([(outputs(labels, p), outputs(labels, worse))], BINARY)["acc"]
    assert d.estimate == pytest.approx(6 / 300)
    diff = np.zeros(300)
    diff[flip] = 1
    half = 1.96 * diff.std() / np.sqrt(300)
    assert d.high - d.low == pytest.approx(2 * half, rel=0.3)
    assert d.low > 0  # every resample that draws a flipped image counts it for b only


def test_the_same_seed_and_inputs_give_the_same_intervals():
    _, a, b = simulate(np.random.default_rng(7))
    assert paired_bootstrap([(a, b)], BINARY) == paired_bootstrap([(a, b)], BINARY)
    assert paired_bootstrap([(a, b)], BINARY, seed=1) != paired_bootstrap([(a, b)], BINARY)


# ------------------------------------------------------------------------------------ pooling seeds


def test_pooled_seeds_on_the_same_images_average_their_differences_within_one_draw():
    _, a, b = simulate(np.random.default_rng(11), noise_a=0.5, noise_b=1.0)
    one = paired_bootstrap([(a, b)], BINARY)
    twice = paired_bootstrap([(a, b), (a, b)], BINARY)  # two seeds, same images: one draw for both
    for metric in ("acc", "auc"):
        assert (twice[metric].low, twice[metric].high) == pytest.approx((one[metric].low, one[metric].high))
        assert twice[metric].seeds == 2
    opposite = paired_bootstrap([(a, b), (b, a)], BINARY)  # +x and −x: the mean is 0 in every resample
    assert opposite["acc"].estimate == pytest.approx(0) and opposite["acc"].low == pytest.approx(0)
    assert opposite["auc"].high == pytest.approx(0, abs=1e-12)


def test_pooled_seeds_on_different_images_are_drawn_apart():
    _, a, b = simulate(np.random.default_rng(11), noise_a=0.5, noise_b=1.0)
    other = {k: (np.asarray("other") if k == "images_sha256" else v) for k, v in a.items()}
    other_b = {**b, "images_sha256": np.asarray("other")}
    one = paired_bootstrap([(a, b)], BINARY)["auc"]
    apart = paired_bootstrap([(a, b), (other, other_b)], BINARY)["auc"]
    # the mean of two independent draws of the same difference: about 1/√2 the width
    assert apart.high - apart.low == pytest.approx((one.high - one.low) / np.sqrt(2), rel=0.15)


# --------------------------------------------------------------------------------- MedMNIST's AUC


@pytest.mark.parametrize("task", ["binary-class", "multi-class", "multi-label, binary-class"])
def test_the_estimates_are_the_differences_of_medmnists_metrics(task):
    rng = np.random.default_rng(5)
    n, k = 120, 4
    if task == "multi-label, binary-class":
        labels = rng.integers(0, 2, (n, k))
        probs = [np.clip(labels * s + rng.uniform(0, 0.8, (n, k)), 0, 1) for s in (0.5, 0.2)]  # AUCs below 1
    else:
        classes = 2 if task == "binary-class" else k
        labels = rng.integers(0, classes, n)
        probs = [rng.dirichlet(np.ones(classes), n) + np.eye(classes)[labels] * s for s in (1.0, 0.3)]
        probs = [p / p.sum(axis=1, keepdims=True) for p in probs]
    probs = [np.round(p, 2) for p in probs]  # ties, counted ½ as roc_auc_score counts them
    a, b = (outputs(labels, p, task) for p in probs)
    d = paired_bootstrap([(a, b)], task, resamples=200)
    ma, mb = (compute_metrics(labels, p, task) for p in probs)
    assert d["acc"].estimate == pytest.approx(ma["acc"] - mb["acc"])
    assert d["auc"].estimate == pytest.approx(ma["auc"] - mb["auc"])


def test_resamples_where_the_auc_is_undefined_are_left_out_and_counted():
    labels = np.r_[1, np.zeros(19, dtype=int)]  # one positive: a resample misses it about a third of the time
    p = np.linspace(0.1, 0.9, 20)
    d = paired_bootstrap([(outputs(labels, p), outputs(labels, p[::-1]))], BINARY, resamples=300)["auc"]
    assert 50 < d.undefined < 150 and np.isfinite(d.low) and np.isfinite(d.high)


def test_models_scored_on_different_images_are_refused():
    _, a, b = simulate(np.random.default_rng(2))
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap([(a, {**b, "images_sha256": np.asarray("elsewhere")})], BINARY)


# ------------------------------------------------------------------------------------- DeLong's test


def delong_by_definition(labels, a, b):
    """DeLong et al. (1988) as written: the Mann–Whitney kernel ψ over every (positive, negative) pair."""
    pos, neg = labels == 1, labels == 0
    components = []
    for s in (a, b):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        components.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.stack([c[1] for c in components])) / pos.sum()
    s01 = np.cov(np.stack([c[2] for c in components])) / neg.sum()
    s = s10 + s01
    return components[0][0] - components[1][0], np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])


@pytest.mark.parametrize("seed", range(5))
def test_delongs_fast_algorithm_equals_the_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    a, b = (np.round(labels + rng.normal(0, s, 80), 1) for s in (0.7, 1.1))  # rounded: many ties
    test = delong(labels, a, b)
    estimate, se = delong_by_definition(labels, a, b)
    assert test.estimate == pytest.approx(estimate) == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    assert test.se == pytest.approx(se) and test.z == pytest.approx(estimate / se)


def test_delong_on_a_worked_example():
    """15 images with ties; reference: MLstatkit 0.1.91's Delong_test (z signed B − A, as pROC's roc.test) gave
    z = −1.3154373518, p = 0.1883629592 and AUCs 47/56, 40.5/56 for these scores (run once, not a dependency)."""
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0])
    a = np.array([.9, .8, .7, .55, .4, .6, .3, .2, .5, .1, .35, .65, .45, .3, .3])
    b = np.array([.7, .6, .8, .5, .3, .65, .4, .2, .55, .2, .5, .45, .3, .3, .25])
    test = delong(labels, a, b)
    assert test.estimate == pytest.approx(47 / 56 - 40.5 / 56)
    assert test.z == pytest.approx(1.3154373518) and test.p == pytest.approx(0.1883629592)
    assert delong(labels, b, a).z == pytest.approx(-test.z) and delong(labels, b, a).p == pytest.approx(test.p)


def test_delong_of_the_same_scores_is_no_difference():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.2, 0.7, 0.4, 0.9, 0.3, 0.1])
    test = delong(labels, scores, scores)
    assert (test.estimate, test.z, test.p) == (0, 0, 1)


# ------------------------------------------------------------------------------- compare's records


def test_compare_records_without_per_image_outputs_say_so_in_one_line():
    labels, a, b = simulate(np.random.default_rng(4))
    records = [{"model": "hybrid", "seed": 0, "run": "out/hybrid-seed0", "per_image": a},
               {"model": "classical", "seed": 0, "run": "out/classical-seed0", "per_image": None}]
    report = paired_comparison(records)
    assert report.comparisons == () and "1 run (classical-seed0) has no per-image test outputs" in report.missing
    records[1]["per_image"] = b
    report = paired_comparison(records, resamples=200)
    (pair,) = report.comparisons
    assert (pair.model, pair.baseline, pair.seeds) == ("hybrid", "classical", (0,))
    assert pair.per_seed[0] == pair.pooled and pair.delong[0].p == delong(labels, a["probs"][:, 1], b["probs"][:, 1]).p


def test_summary_says_per_dataset_whether_each_difference_is_distinguishable_from_zero(tmp_path):
    from qmedimg.report.comparison import write_summary

    _, good, poor = simulate(np.random.default_rng(0), noise_a=0.5, noise_b=0.9)
    def records(hybrid, baseline):
        return [{"model": m, "seed": 0, "run": f"x/{m}-seed0", "per_image": o}
                for m, o in (("hybrid", hybrid), ("classical", baseline))]
    reports = {"planted": paired_comparison(records(good, poor), resamples=500),
               "null": paired_comparison(records(good, good), resamples=500),
               "old": paired_comparison(records(good, None))}
    rows = [{"model": m, "seeds": 1, "acc": 0.8, "acc_std": "", "auc": 0.9, "auc_std": ""} for m in ("hybrid", "classical")]
    write_summary(tmp_path, {name: rows for name in reports}, [0], reports)
    lines = (tmp_path / "summary.md").read_text().splitlines()
    row = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| planted |") or line.startswith("| null |")}
    assert row["planted"].endswith("| ACC (hybrid higher), AUC (hybrid higher) |")
    assert row["null"].endswith("| +0.0000 [+0.0000, +0.0000] | +0.0000 [+0.0000, +0.0000] | no |")
    assert "old: no paired comparison: 1 run (classical-seed0) has no per-image test outputs" in "\n".join(lines)
    assert "±" not in "\n".join(lines)  # one seed: single values
