"""A site's labelled images as its calibration job answered them, ready to fit: the rows'
plain values turned into tensors, with each image's patient (from its file name or DICOM
header) and kind, and the counts a profile needs.

from training.fitting.site_images import site_images
images, left_out = site_images(paths, probs, true_labels, viral, ood, anomaly, errors)
check_counts(counts(images), target=0.95)  # SiteFitError when too few
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.data.data_files import CLASSES, kind_code, patient_id
from training.fitting.site_threshold import SiteFitError, min_positive_patients

MIN_IMAGES = 20  # per class
MIN_PATIENTS = 10  # per class


@dataclass
class SiteImages:
    """The site's readable, labelled images as its calibration job scored them, (N,) each:
    raw P, labels, patient index (0..P-1), P(viral) (NaN: no kind head), kind codes (-1
    unknown), and the review's ood and anomaly scores on the model's own scale (None: a
    model fitted before the review)."""

    prob: torch.Tensor
    labels: torch.Tensor
    patients: torch.Tensor
    viral: torch.Tensor
    kinds: torch.Tensor
    ood: torch.Tensor | None = None
    anomaly: torch.Tensor | None = None
    brightness: torch.Tensor | None = None  # mean grey level of the input (None: not stored)

    def subset(self, keep: torch.Tensor) -> SiteImages:
        _, patients = torch.unique(self.patients[keep], return_inverse=True)
        return SiteImages(
            self.prob[keep],
            self.labels[keep],
            patients,
            self.viral[keep],
            self.kinds[keep],
            None if self.ood is None else self.ood[keep],
            None if self.anomaly is None else self.anomaly[keep],
            None if self.brightness is None else self.brightness[keep],
        )


def counts(images: SiteImages) -> dict[str, int]:
    """Images and patients, in all and per class (a patient counts in each class it has)."""
    out = {"images": int(images.labels.numel()), "patients": int(images.patients.unique().numel())}
    for label, name in ((0, "normal"), (1, "pneumonia")):
        mine = images.labels == label
        out[f"{name}_images"] = int(mine.sum())
        out[f"{name}_patients"] = int(images.patients[mine].unique().numel())
    return out


def check_counts(found: dict[str, int], target: float | None) -> None:
    """One line when the images cannot support a profile (SiteFitError)."""
    for name in ("normal", "pneumonia"):
        images, patients = found[f"{name}_images"], found[f"{name}_patients"]
        if images < MIN_IMAGES or patients < MIN_PATIENTS:
            raise SiteFitError(
                f"{images} {name.upper()} images of {patients} patients: a site profile needs "
                f"at least {MIN_IMAGES} images of {MIN_PATIENTS} patients of each class"
            )
    if target is not None and found["pneumonia_patients"] < (need := min_positive_patients(target)):
        raise SiteFitError(
            f"too few patients for target sensitivity {target:g}: {found['pneumonia_patients']} "
            f"PNEUMONIA patients, at least {need} needed (one missed patient in {need}); lower "
            "--target-sensitivity or add patients"
        )


def _value(x: float | None) -> float:
    return math.nan if x is None else float(x)


def site_images(
    paths: Sequence[str],
    probs: Sequence[float | None],
    true_labels: Sequence[str],
    viral: Sequence[float | None],
    ood: Sequence[float | None],
    anomaly: Sequence[float | None],
    errors: Sequence[str | None],
    brightness: Sequence[float | None] = (),
) -> tuple[SiteImages, dict[str, int]]:
    """The readable images as a SiteImages, and what was left out or assumed: unreadable
    images, and patients known only as their file (a name that gives no patient is one
    patient, and the output says how many)."""
    keep = [i for i, e in enumerate(errors) if e is None and probs[i] is not None]
    keys = [patient_id(paths[i]) for i in keep]
    index: dict[str, int] = {}
    patients = torch.tensor([index.setdefault(k, len(index)) for k in keys], dtype=torch.long)
    labels = torch.tensor([CLASSES.index(true_labels[i]) for i in keep], dtype=torch.long)
    kinds = torch.tensor([kind_code(paths[i], int(labels[j])) for j, i in enumerate(keep)])
    has_review = bool(keep) and all(ood[i] is not None for i in keep)
    has_brightness = bool(keep) and bool(brightness)
    has_brightness = has_brightness and all(brightness[i] is not None for i in keep)

    def column(values: Sequence[float | None]) -> torch.Tensor:
        return torch.tensor([_value(values[i]) for i in keep], dtype=torch.float64)

    images = SiteImages(
        prob=column(probs),
        labels=labels,
        patients=patients,
        viral=column(viral),
        kinds=kinds.long(),
        ood=column(ood) if has_review else None,
        anomaly=column(anomaly) if has_review else None,
        brightness=column(brightness) if has_brightness else None,
    )
    unnamed = sum(1 for k in index if k.startswith("file:"))
    return images, {"unreadable": len(errors) - len(keep), "unnamed_patients": unnamed}


def path_counts(labelled: Sequence[tuple[str, str]]) -> dict[str, int]:
    """counts() of (path, true label) pairs before anything is scored."""
    keys = [patient_id(p) for p, _ in labelled]
    index: dict[str, int] = {}
    patients = torch.tensor([index.setdefault(k, len(index)) for k in keys], dtype=torch.long)
    labels = torch.tensor([CLASSES.index(label) for _, label in labelled], dtype=torch.long)
    empty = torch.zeros(len(labelled))
    return counts(SiteImages(empty, labels, patients, empty, empty.long()))
