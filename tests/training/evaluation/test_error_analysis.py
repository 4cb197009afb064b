import pytest
import torch

from training.data.data_files import pneumonia_kind
from training.evaluation.error_analysis import (
    calibration_table,
    errors_by_group,
    operating_points,
    quartile_groups,
    specificity_at_sensitivity,
)


def test_specificity_at_sensitivity_reads_the_ranking_only() -> None:
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    prob = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.6, 0.3, 0.1, 0.05])
    # All four positives need a cut at 0.2: 2 of 4 negatives are below it.
    assert specificity_at_sensitivity(y, prob, 1.0) == 0.5
    # Three of four positives: cut at 0.7, every negative is below.
    assert specificity_at_sensitivity(y, prob, 0.75) == 1.0
    # A monotone transform (a threshold shift) leaves it unchanged.
    assert specificity_at_sensitivity(y, prob**3, 0.75) == 1.0


def test_operating_points_and_calibration() -> None:
    y = torch.tensor([1, 1, 0, 0])
    prob = torch.tensor([0.95, 0.6, 0.4, 0.05])
    points = operating_points(y, prob, 0.5)
    assert points["roc_auc"] == 1.0 and points["accuracy"] == 1.0
    assert points["pneumonia_share"] == 0.5
    assert points["mean_prob_normal"] == pytest.approx(0.225)
    table = {r["bin"]: r for r in calibration_table(y, prob)}
    assert table["0.9-1.0"]["n"] == 1 and table["0.9-1.0"]["observed"] == 1.0
    assert table["0.3-0.5"]["observed"] == 0.0 and table["0.1-0.3"]["n"] == 0


def test_errors_by_group_and_quartiles() -> None:
    y = torch.tensor([0, 0, 1, 1])
    prob = torch.tensor([0.7, 0.2, 0.9, 0.1])
    rows = {r["group"]: r for r in errors_by_group(y, prob, 0.5, ["a", "a", "b", "b"])}
    assert rows["a"]["error_rate"] == 0.5 and rows["b"]["n"] == 2
    assert quartile_groups([1, 2, 3, 4, 5, 6, 7, 8], "x") == [
        "x Q1",
        "x Q1",
        "x Q2",
        "x Q2",
        "x Q3",
        "x Q3",
        "x Q4",
        "x Q4",
    ]


def test_pneumonia_kind_from_the_file_name() -> None:
    assert pneumonia_kind("/d/person1_bacteria_2.jpeg") == "bacteria"
    assert pneumonia_kind("person33_VIRUS_9.jpeg") == "virus"
    assert pneumonia_kind("IM-0001-0001.jpeg") is None
