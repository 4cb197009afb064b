"""Drift tests on synthetic samples with a seed: exact p-values against known values, Holm
against hand arithmetic, real shifts rejected, same-distribution batches accepted at the
alarm line's rate, and the verdicts that are not a test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.evaluation.drift import (
    ALPHA,
    MAX_REFERENCE,
    MIN_IMAGES,
    Sample,
    alarm_line,
    compare,
    compare_rows,
    reference_sample,
)
from training.evaluation.two_sample import fisher_exact, holm, ks_pvalue, ks_statistic

FLAGS = ("not-cxr", "anomaly", "low-confidence")


def synthetic(rng: np.random.Generator, n: int, shift: float = 0.0, not_cxr: float = 0.02):
    """n images: P from a logistic of a normal (shifted on the logit), OOD scores from a gamma
    (shifted too), flags at fixed rates."""
    prob = 1 / (1 + np.exp(-(rng.normal(size=n) + shift)))
    rates = {"not-cxr": not_cxr, "anomaly": 0.04, "low-confidence": 0.1}
    flags = {name: rng.random(n) < rate for name, rate in rates.items()}
    return Sample(prob, prob >= 0.5, rng.gamma(2.0, 0.2, n) + shift / 4, flags)


def stored(sample: Sample) -> dict:
    return reference_sample(sample.prob, sample.pneumonia, sample.ood, sample.flags, "site")


def test_ks_pvalue_matches_path_counting_by_hand() -> None:
    # Disjoint samples: only the 2 paths of C(4, 2) = 6 (and 2 of C(6, 3) = 20) reach D = 1.
    assert ks_pvalue(ks_statistic(np.array([1.0, 2]), np.array([3.0, 4])), 2, 2) == (
        pytest.approx(1 / 3)
    )
    x, y = np.array([1.0, 2, 3]), np.array([4.0, 5, 6])
    assert ks_pvalue(ks_statistic(x, y), 3, 3) == pytest.approx(0.1)


def test_ks_pvalue_matches_a_known_exact_value() -> None:
    x = np.array([0.1, 0.4, 0.7, 1.2, 1.5, 2.6, 3.1])
    y = np.array([0.3, 0.9, 1.1, 1.8, 2.0, 2.4, 2.5, 2.7, 3.3])
    d_nm = ks_statistic(x, y)
    assert d_nm / (7 * 9) == pytest.approx(8 / 21)  # D at 1.5: 5/7 - 3/9
    assert ks_pvalue(d_nm, 7, 9) == pytest.approx(5706 / 11440, rel=1e-12)  # of C(16, 7) paths


def test_ks_large_samples_use_the_limit_and_agree_with_the_exact_value() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=2000), rng.normal(0.1, size=3000)
    d_nm = ks_statistic(x, y)
    exact = ks_pvalue(d_nm, 2000, 3000)
    limit = ks_pvalue(d_nm * 2, 4000, 3000)  # same D, past the exact range
    assert 1e-4 < exact < 0.05
    assert limit < exact  # the bigger sample makes the same gap less likely
    assert ks_pvalue(0, 5, 5) == 1.0


def test_fisher_exact_against_hand_arithmetic() -> None:
    # 3 of 3 vs 0 of 3: the two one-sided extremes, 1/20 each, of C(6, 3) = 20.
    assert fisher_exact(3, 3, 0, 3) == pytest.approx(0.1)
    # The lady tasting tea, 3 of 4 right: (1 + 16 + 16 + 1) / 70.
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert fisher_exact(0, 100, 0, 100) == 1.0


def test_holm_against_hand_arithmetic() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then running maxima: 0.02, 0.03, 0.06,
    # 0.06 (0.04 x 1 is lifted to the 0.06 before it).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_a_shift_of_p_and_a_rise_of_not_cxr_are_caught() -> None:
    rng = np.random.default_rng(1)
    reference = stored(synthetic(rng, 150))
    shifted = [compare(reference, synthetic(rng, 200, shift=0.6)) for _ in range(20)]
    assert sum(r["verdict"] == "drift" for r in shifted) >= 19
    mixed = compare(reference, synthetic(rng, 200, not_cxr=0.12))
    assert mixed["verdict"] == "drift"
    assert "flag not-cxr" in alarm_line(mixed)
    assert [t["statistic"] for t in mixed["tests"]] == [
        "pneumonia share",
        "flag anomaly",
        "flag low-confidence",
        "flag not-cxr",
        "P",
        "OOD score",
    ]


def test_same_distribution_alarms_at_most_at_the_alarm_line() -> None:
    rng = np.random.default_rng(2)
    trials = 120
    alarms = sum(
        compare(stored(synthetic(rng, 100)), synthetic(rng, 100))["verdict"] == "drift"
        for _ in range(trials)
    )
    # Family-wise 5%: Holm and Fisher are conservative, so well under; 12 would be 10%.
    assert alarms / trials <= ALPHA + 0.03


def test_no_reference_and_too_few_images_are_not_verdicts_of_a_test() -> None:
    rng = np.random.default_rng(3)
    batch = synthetic(rng, 200)
    assert compare(None, batch)["verdict"] == "no reference"
    small = compare(stored(synthetic(rng, MIN_IMAGES - 1)), batch)
    assert small["verdict"] == "no reference" and "holds 49 images" in small["note"]
    few = compare(stored(synthetic(rng, 150)), synthetic(rng, MIN_IMAGES - 1))
    assert few["verdict"] == "too few images" and few["tests"] == []


def test_the_reference_is_compact_json_and_reads_back() -> None:
    rng = np.random.default_rng(4)
    sample = synthetic(rng, MAX_REFERENCE + 500)
    ref = stored(sample)
    assert ref["n"] == MAX_REFERENCE and len(ref["prob"]) == MAX_REFERENCE
    assert len(json.dumps(ref)) < 40 * MAX_REFERENCE  # a few dozen bytes an image
    back = Sample.from_json(json.loads(json.dumps(ref)))
    assert back.prob[0] == pytest.approx(sample.prob[0], rel=1e-5)
    assert back.flags.keys() == sample.flags.keys() and back.pneumonia[0] == sample.pneumonia[0]


def test_rows_compare_on_the_flags_the_reference_holds() -> None:
    rng = np.random.default_rng(5)
    reference = stored(synthetic(rng, 150))
    rows = [
        (float(p), "PNEUMONIA" if p >= 0.5 else "NORMAL", 0.3, "lateral") for p in rng.random(80)
    ]
    result = compare_rows(reference, rows)
    names = [t["statistic"] for t in result["tests"]]
    assert "flag lateral" not in names and "flag not-cxr" in names
    no_review = compare_rows(reference, [(0.5, "NORMAL", None, None)] * 80)
    assert "OOD score" not in [t["statistic"] for t in no_review["tests"]]


def test_a_site_profile_stores_its_images_as_scoring_under_it_would() -> None:
    from tests.training.fitting.test_site_fit import _site
    from training.fitting.site_fit import calibrated, fit_site_profile

    images = _site()
    profile = fit_site_profile(images)
    sample = profile["monitoring"]["sample"]
    assert sample["n"] == images.prob.numel()  # not-cxr images included: scoring sees them
    assert set(sample["flags"]) == set(FLAGS)
    site_p = calibrated(images.prob, profile["platt"]).numpy()
    assert Sample.from_json(sample).prob == pytest.approx(site_p, rel=1e-5)
    ood = images.ood.numpy() / profile["review"]["ood_scale"]
    assert sample["flags"]["not-cxr"] == "".join("1" if v >= 1 else "0" for v in ood)
    plain = fit_site_profile(_site(review=False))["monitoring"]["sample"]
    assert plain["flags"] == {} and plain["ood"] is None


def test_a_trained_model_stores_its_validation_reference(tiny_checkpoint: dict) -> None:
    data = tiny_checkpoint["model"]["data"]
    sample = data["monitoring"]["sample"]
    assert sample["source"] == "validation split" and set(sample["flags"]) == set(FLAGS)
    assert sample["n"] == len(sample["prob"]) == len(sample["pneumonia"]) == len(sample["ood"])
    assert len(sample["brightness"]) == sample["n"]
    assert all(0 <= b <= 1 for b in sample["brightness"])


def _rows(sample: Sample, names: list[str]) -> list[tuple]:
    """A sample as prediction rows: (prob, label, ood, reasons, brightness, identity)."""
    return [
        (
            float(sample.prob[i]),
            "PNEUMONIA" if sample.pneumonia[i] else "NORMAL",
            float(sample.ood[i]),
            ",".join(n for n in FLAGS if sample.flags[n][i]) or None,
            float(sample.brightness[i]),
            names[i],
        )
        for i in range(len(sample))
    ]


def test_an_image_scored_twice_counts_once() -> None:
    rng = np.random.default_rng(6)
    base = synthetic(rng, 120)
    base.brightness = rng.normal(0.5, 0.05, 120)
    rows = _rows(base, [f"/x/{i}.png" for i in range(120)])
    reference = stored(synthetic(rng, 150))
    once = compare_rows(reference, rows)
    twice = compare_rows(reference, rows + rows[:60])  # 60 sent again
    assert once["n"] == twice["n"] == 120
    assert [t["p"] for t in once["tests"]] == [t["p"] for t in twice["tests"]]


def test_a_change_of_the_pixels_the_answers_do_not_show_is_caught_by_brightness() -> None:
    """Gamma on the pixels can leave P and the OOD score where they were: the input's grey
    level is tested beside them."""
    rng = np.random.default_rng(7)
    ref_sample = synthetic(rng, 150)
    ref_sample.brightness = rng.normal(0.48, 0.06, 150)
    reference = reference_sample(
        ref_sample.prob, ref_sample.pneumonia, ref_sample.ood, ref_sample.flags, "site",
        ref_sample.brightness,
    )  # fmt: skip
    same = synthetic(rng, 200)
    same.brightness = rng.normal(0.48, 0.06, 200)
    assert compare(reference, same)["verdict"] == "no drift"
    brighter = synthetic(rng, 200)
    brighter.brightness = rng.normal(0.48, 0.06, 200) ** 0.8  # gamma 0.8 on the grey level
    result = compare(reference, brighter)
    assert result["verdict"] == "drift"
    assert [t["statistic"] for t in result["tests"] if t["alarm"]] == ["brightness"]
    old = stored(ref_sample)  # a reference stored before brightness was: not tested
    assert "brightness" not in [t["statistic"] for t in compare(old, brighter)["tests"]]
