"""A scored X-ray's answer as DICOM objects that go back into its study.

    answer = Answer(job_id=7, prob=0.91, label="PNEUMONIA", ...)   # from the prediction row
    source = pydicom.dcmread(spooled_path, stop_before_pixels=True)
    objects = [build_sr(source, answer, instance_number=1)]
    if heatmap is not None:                                      # a db.schema.Heatmap row
        pixels = heatmap_overlay(spooled_path, heatmap)
        objects.append(build_sc(source, pixels, answer, instance_number=1))
    write_results(objects, folder)                               # <SOPInstanceUID>.dcm each

One SR per scored image (gateway.report_sr), one secondary capture per image with a heatmap
(gateway.overlay_sc), both in the source's study, in one SR and one SC series per study and job,
with UIDs derived from the source and the job (gateway.result_uids): a resend is the same object.
Patient and study attributes are copied from the source; this is the only place results carry
PHI. An error row (prob None) gets neither: callers skip it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom import dcmwrite
from pydicom.dataset import Dataset

from gateway.overlay_sc import build_sc, heatmap_overlay, overlay_pixels
from gateway.report_sr import build_sr
from gateway.result_uids import device_uid, result_uid
from gateway.sr_facts import sr_facts, sr_mismatches

__all__ = [
    "Answer",
    "build_sc",
    "build_sr",
    "device_uid",
    "heatmap_overlay",
    "overlay_pixels",
    "result_uid",
    "sr_facts",
    "sr_mismatches",
    "write_results",
]


@dataclass(frozen=True)
class Answer:
    """What one prediction row says about one source instance."""

    job_id: int
    prob: float | None  # P(PNEUMONIA), calibrated for the site when site_profile_id is set
    label: str | None  # "PNEUMONIA" | "NORMAL" | None (error row)
    threshold: float | None
    threshold_source: str  # e.g. "site ward7 (profile 3)"
    kind: str | None  # "BACTERIAL" | "VIRAL" | None
    prob_viral: float | None
    review_reasons: tuple[str, ...]  # e.g. ("not-cxr", "low-confidence", "lateral")
    error: str | None
    model_id: int
    model_name: str
    model_arch: str
    weights_sha256: str
    site: str | None
    site_profile_id: int | None
    # When the row was scored: the results' content and creation times. Given, a result built
    # twice is the same bytes; None: the clock at build time (the UIDs are the same anyway).
    scored_at: datetime | None = None


def write_results(datasets: Iterable[Dataset], folder: str | os.PathLike) -> list[Path]:
    """Save each dataset as `folder/<SOPInstanceUID>.dcm` (a DICOM file with its meta header),
    written to a temporary name and renamed, so a reader never sees half a file and a rebuilt
    result replaces its earlier copy. Returns the paths, in order."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        uid = str(ds.SOPInstanceUID)
        if not uid or not all(c.isdigit() or c == "." for c in uid):
            raise ValueError(f"not a DICOM UID: {uid[:70]!r}")
        path = out / f"{uid}.dcm"
        tmp = path.with_name(f".{uid}.dcm.tmp")
        dcmwrite(tmp, ds, enforce_file_format=True)
        os.replace(tmp, path)
        paths.append(path)
    return paths
