"""A chunk's scores as answers: one plain dict per (scorer, file) holding what its prediction
row stores (the call decided at the scorer's threshold, the kind at its kind threshold, the
review verdict with the flags of a DICOM header, the DICOM identity), and one per heatmap.
Field names are the row's columns.

No torch at import: job creation writes the error answers of unreadable folders with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from training.data.data_files import CLASSES, KIND_LABELS

if TYPE_CHECKING:
    from training.data.dicom import DicomHeader
    from training.scoring.chunk import ChunkScores, Scorer

NOT_A_NUMBER = "model output is not a number"
NOT_SCORED = "not scored: "  # error prefix of answers whose chunk failed for good
FOLDER_UNREADABLE = "folder not readable: "  # error prefix of an answer standing for a folder
# With --prevalence the corrected probability is decided at 0.5: the fewest-errors rule
# (training.scoring.prevalence). Here, so a job records it without importing torch.
PREVALENCE_THRESHOLD = 0.5


def answer(
    key: str,
    path: str,
    prob: float | None,
    threshold: float,
    truth: str | None,
    error: str | None,
    viral: tuple[float, float] = (float("nan"), 0.5),
) -> dict[str, Any]:
    """One scorer's answer on one file; `viral` is (P(VIRAL | PNEUMONIA) or NaN, the kind's
    threshold). Review and identity fields are added where there are any (db.scoring stores
    the absent ones empty)."""
    label = None if prob is None else CLASSES[int(prob >= threshold)]
    prob_viral = viral[0] if prob is not None and math.isfinite(viral[0]) else None
    kind = None
    if label == "PNEUMONIA" and prob_viral is not None:
        kind = KIND_LABELS[int(prob_viral >= viral[1])]
    return {
        "scorer": key,
        "path": path,
        "prob": prob,
        "label": label,
        "true_label": truth,
        "error": error,
        "prob_viral": prob_viral,
        "kind": kind,
        "threshold": None if prob is None else threshold,
    }


def _checked(value: float, error: str | None) -> tuple[float | None, str | None]:
    """(probability, None), or (None, reason): a NaN would otherwise be stored as an empty
    probability with the label NORMAL (NaN >= threshold is false)."""
    if error:
        return None, error
    if not math.isfinite(value):
        return None, NOT_A_NUMBER
    return value, None


def _review_fields(scores: ChunkScores, key: str, index: int | None) -> dict[str, Any]:
    """An answer's review fields from its scorer's verdict (none where there is none)."""
    verdict = scores.verdicts.get(key)
    if verdict is None or index is None:
        return {}
    reasons = verdict.reasons[index]
    dissent = verdict.disagreement
    return {
        "ood_score": float(verdict.ood[index]),
        "anomaly_score": float(verdict.anomaly[index]),
        "confidence": float(verdict.confidence[index]),
        "disagreement": None if dissent is None else float(dissent[index]),
        "review_score": float(verdict.score[index]),
        "review": bool(reasons),
        "review_reasons": ",".join(reasons) or None,
    }


def merge_header_flags(row: dict[str, Any], flags: Sequence[str]) -> dict[str, Any]:
    """A scored answer with the review reasons its DICOM header raises (DicomHeader.flags):
    flagged for review, the reasons after the model's own without repeats, and a review_score
    of at least 1 (where the model gave one), the line every flag fires at. A model without
    review statistics leaves the other review fields absent. Error answers are left as they
    are: nothing was scored to doubt."""
    if not flags or row["prob"] is None:
        return row
    own = (row.get("review_reasons") or "").split(",")
    reasons = ",".join(dict.fromkeys(r for r in (*own, *flags) if r))
    merged = row | {"review": True, "review_reasons": reasons}
    if row.get("review_score") is not None:
        merged["review_score"] = max(float(row["review_score"]), 1.0)
    return merged


def prediction_answers(
    scorer: Scorer, paths: list[str], truth: list[str | None], scores: ChunkScores
) -> list[dict[str, Any]]:
    """One answer per file and member, plus the ensemble's combined answer beside its members';
    a DICOM file's answers carry the flags of the header its decode read (scores.headers)."""
    from training.scoring.ensemble import ensemble_kind_threshold

    rows = []
    index = {pos: i for i, pos in enumerate(scores.review_positions)}
    cut = ensemble_kind_threshold(scores.kind_thresholds, scorer.weights)
    for pos, path in enumerate(paths):
        header = scores.headers.get(pos)
        flags = header.flags if header is not None else ()
        for m, key in enumerate(scorer.keys):
            prob, error = _checked(float(scores.probs[m, pos]), scores.errors.get(pos))
            viral = (float(scores.viral[m, pos]), scores.kind_thresholds[m] or 0.5)
            row = answer(key, path, prob, scores.thresholds[m], truth[pos], error, viral)
            if scorer.site is not None:
                row["site_profile_id"] = scorer.site.profile_id
            row |= _review_fields(scores, key, index.get(pos))
            row["brightness"] = _brightness(scores, m, pos)
            rows.append(merge_header_flags(row, flags))
        if scores.combined is not None:
            prob, error = _checked(float(scores.combined[pos]), scores.errors.get(pos))
            viral = (float(scores.combined_viral[pos]), cut)
            row = answer(scorer.key, path, prob, scorer.threshold, truth[pos], error, viral)
            row |= _review_fields(scores, scorer.key, index.get(pos))
            row["brightness"] = _brightness(scores, 0, pos)  # the first member's input
            rows.append(merge_header_flags(row, flags))
    return rows


def _brightness(scores: ChunkScores, member: int, pos: int) -> float | None:
    """The mean grey level (0-1) of a member's input for one file; None where it was not read."""
    if scores.brightness is None:
        return None
    value = float(scores.brightness[member, pos])
    return None if math.isnan(value) else value


def heatmap_answers(paths: list[str], scores: ChunkScores) -> list[dict[str, Any]]:
    """One heatmap per scorer and image it mapped (db.schema.Heatmap's fields)."""
    from training.explain.grid import encode_grid

    rows = []
    for key, maps in scores.maps.items():
        crop, method = scores.map_info[key]
        for pos, grid in maps.items():
            rows.append(
                {
                    "scorer": key,
                    "path": paths[pos],
                    "height": int(grid.shape[0]),
                    "width": int(grid.shape[1]),
                    "grid": encode_grid(grid),
                    "crop": crop,
                    "method": method,
                }
            )
    return rows


def add_identities(
    rows: list[dict[str, Any]],
    paths: list[str],
    headers: dict[int, DicomHeader],
    salt: str | None = None,
) -> None:
    """A DICOM file's SOP Instance UID and salted patient hash on each of its answers: from the
    header its decode read (`headers`, by position in `paths`); a file that did not decode has
    its header read here."""
    from training.data.dicom_identity import identity, identity_of

    known: dict[str, Any] = {paths[pos]: identity_of(h, salt) for pos, h in headers.items()}
    for row in rows:
        path = row["path"]
        if path not in known:
            known[path] = identity(path, salt)
        if known[path] is not None:
            row["sop_instance_uid"] = known[path].sop_instance_uid
            row["patient_hash"] = known[path].patient_hash


def failed_answers(
    keys: list[str], paths: list[str], truth: list[str | None], reason: str
) -> list[dict[str, Any]]:
    """Error answers of every scorer key on files that could not be scored at all."""
    return [
        answer(key, path, None, 0.5, truth[pos], reason)
        for pos, path in enumerate(paths)
        for key in keys
    ]
