import pytest
import torch

from training.fitting.site_threshold import (
    SiteFitError,
    choice_at,
    margin_threshold,
    min_positive_patients,
    patient_weights,
)

# Four positives and two negatives, and two hand-made resamples: all images once, and the
# lowest positive left out. Sensitivity per cut (highest first: 0.9, 0.8, 0.7, 0.6):
#   resample 1: 1/4, 2/4, 3/4, 1      resample 2: 1/3, 2/3, 1, 1
# and the 5th percentile (linear between the two): 0.2542, 0.5083, 0.7625, 1.
LABELS = torch.tensor([1, 1, 1, 1, 0, 0])
PROB = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.3, 0.65])
WEIGHTS = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1]], dtype=torch.float64)


def test_the_highest_cut_whose_lower_sensitivity_meets_the_target_placed_midway_down() -> None:
    choice = margin_threshold(LABELS, PROB, WEIGHTS, target=0.75)
    # 0.7 is the highest cut at >= 0.75 (0.7625); the next lower score is the negative 0.65.
    assert choice.threshold == pytest.approx(0.675)
    assert choice.sensitivity_lower == pytest.approx(0.7625)
    assert (choice.sensitivity, choice.specificity) == (pytest.approx(0.75), 1.0)
    # The 95% interval over the two resamples: sensitivity 3/4 and 1, linear quantiles.
    low, high = choice.sensitivity_interval
    assert (low, high) == (pytest.approx(0.75625), pytest.approx(0.99375))
    assert choice.specificity_interval == (1.0, 1.0)


def test_a_higher_target_takes_a_lower_cut_and_pays_in_specificity() -> None:
    choice = margin_threshold(LABELS, PROB, WEIGHTS, target=0.8)
    assert choice.threshold == pytest.approx(0.45)  # midway between 0.6 and 0.3
    assert (choice.sensitivity, choice.specificity) == (1.0, 0.5)


def test_a_target_only_calling_everyone_pneumonia_meets_is_refused() -> None:
    prob = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.65])  # both negatives above 0.6
    with pytest.raises(SiteFitError, match="lower --target-sensitivity"):
        margin_threshold(LABELS, prob, WEIGHTS, target=0.8)


def test_choice_at_states_what_any_threshold_gives() -> None:
    choice = choice_at(LABELS, PROB.double(), WEIGHTS, 0.5)
    assert (choice.sensitivity, choice.specificity) == (1.0, 0.5)


def test_patients_are_resampled_whole() -> None:
    patients = torch.tensor([0, 0, 1, 2, 2, 2])
    weights = patient_weights(patients, n_boot=500, seed=3)
    assert weights.shape == (500, 6)
    assert torch.equal(weights[:, 0], weights[:, 1])
    assert torch.equal(weights[:, 3], weights[:, 5])
    per_patient = weights[:, [0, 2, 3]]
    assert torch.equal(per_patient.sum(1), torch.full((500,), 3.0, dtype=torch.float64))
    assert torch.equal(weights, patient_weights(patients, n_boot=500, seed=3))


def test_one_missed_patient_must_still_meet_the_target() -> None:
    assert min_positive_patients(0.95) == 20
    assert min_positive_patients(0.9) == 10


def test_the_new_set_interval_adds_a_second_sample_to_the_first() -> None:
    # Resamples 1 and 2 (sensitivity 3/4 and 1) paired, minus the point 3/4: 1 and 1.
    choice = margin_threshold(LABELS, PROB, WEIGHTS, target=0.75)
    assert choice.sensitivity_prediction == (1.0, 1.0)
    labels, prob = torch.tensor([1] * 40 + [0] * 40), torch.linspace(1, 0, 80)
    weights = patient_weights(torch.arange(80), n_boot=2000, seed=1)
    wide = choice_at(labels, prob.double(), weights, 0.3)
    ci, pi = wide.specificity_interval, wide.specificity_prediction
    assert pi[0] < ci[0] and (pi[1] - pi[0]) > 1.2 * (ci[1] - ci[0])  # about sqrt(2) wider
