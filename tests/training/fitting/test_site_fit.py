import math

import pytest
import torch

from training.fitting.site_fit import calibrated, fit_site_profile, reliability
from training.fitting.site_images import SiteImages, check_counts, counts
from training.fitting.site_threshold import SiteFitError


def _site(n_patients: int = 120, seed: int = 0, review: bool = True) -> SiteImages:
    """Two images per patient; a model whose P is over-confident and shifted (true log-odds
    z, P = sigmoid(4 z + 2.5)): its P says more than it means."""
    g = torch.Generator().manual_seed(seed)
    patient_label = (torch.rand(n_patients, generator=g) < 0.6).long()
    patients = torch.arange(n_patients).repeat_interleave(2)
    labels = patient_label[patients]
    z = torch.randn(labels.numel(), generator=g) + torch.where(labels == 1, 1.0, -1.0)
    prob = torch.sigmoid(4 * z + 2.5).double()
    n = labels.numel()
    ood = (torch.rand(n, generator=g) * 3).double() if review else None
    anomaly = (torch.rand(n, generator=g) * 2).double() if review else None
    nan = torch.full((n,), math.nan, dtype=torch.float64)
    return SiteImages(prob, labels, patients, nan, torch.full((n,), -1), ood, anomaly)


def _largest_gap(bins: list[dict], min_n: int = 20) -> float:
    return max(abs(b["mean_p"] - b["observed"]) for b in bins if b["n"] >= min_n)


def test_the_profile_recalibrates_p_for_the_site_measured_on_other_patients() -> None:
    profile = fit_site_profile(_site(seed=0), target=0.9)
    held_out = _site(n_patients=3000, seed=1)  # other patients: many, so bins are exact
    before = _largest_gap(reliability(held_out.prob, held_out.labels))
    after = _largest_gap(reliability(calibrated(held_out.prob, profile["platt"]), held_out.labels))
    assert before > 0.1  # the over-confident P is off
    assert after < 0.07 and after < before / 2


def test_the_profile_states_its_counts_threshold_and_intervals() -> None:
    site = _site()
    profile = fit_site_profile(site, target=0.9, model_threshold=0.5)
    c = profile["counts"]
    assert c["images"] + c["not_cxr"] == 240 and c["patients"] >= 100
    assert c["normal_images"] + c["pneumonia_images"] == c["images"]
    f = profile["figures"]
    low, high = f["sensitivity_interval"]
    assert low <= f["sensitivity"] <= high and f["sensitivity_lower"] >= 0.9
    # The site threshold is the raw one through the calibration.
    raw = torch.tensor([profile["raw_threshold"]])
    assert calibrated(raw, profile["platt"])[0] == pytest.approx(profile["threshold"])
    assert f["model_threshold"]["threshold"] == 0.5
    assert profile["prevalence"] == pytest.approx(c["pneumonia_images"] / c["images"])


def test_review_lines_are_refitted_to_the_site_budgets() -> None:
    profile = fit_site_profile(_site(), target=0.9)
    shares = profile["monitoring"]["flag_shares"]
    # 1% may be not-cxr on the site's own images (before exclusion: at most 1 of 240 left).
    assert shares["not-cxr"] <= 0.01
    assert profile["counts"]["not_cxr"] <= 3
    assert profile["review"]["ood_scale"] > 2.5  # the site's ood scores reach 3
    assert len(profile["monitoring"]["prob"]) == 5


def test_a_model_without_review_or_kind_fits_without_them_and_says_so() -> None:
    profile = fit_site_profile(_site(review=False), target=0.9)
    assert profile["review"] is None
    assert profile["kind_threshold"] is None and "no kind head" in profile["kind_note"]


def test_too_few_images_or_patients_of_a_class_is_one_line() -> None:
    site = _site(n_patients=16)
    with pytest.raises(SiteFitError, match="at least 20 images of 10 patients"):
        check_counts(counts(site), None)


def test_too_few_pneumonia_patients_for_the_target_is_refused() -> None:
    with pytest.raises(SiteFitError, match="too few patients for target sensitivity 0.99"):
        fit_site_profile(_site(), target=0.99)
