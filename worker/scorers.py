"""Who scores a job: one model, or an ensemble and its members. Produces prediction rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from sqlalchemy.orm import Session

from db.columns import IDENTITY_COLUMNS, REVIEW_COLUMNS
from db.schema import CLASSES_BY_INDEX, Ensemble, Job, Model, scorer_key
from db.session import session_scope
from training.evaluation.metrics import KIND_LABELS
from training.review.verdicts import Verdict, ensemble_verdict, member_verdict
from training.scoring.ensemble import combine
from training.scoring.inference import score_files_multi
from training.scoring.prevalence import prior_shift
from worker.model_cache import load_bundle

# With --prevalence the corrected probability is decided at 0.5: the fewest-errors rule.
PREVALENCE_THRESHOLD = 0.5


@dataclass
class Scorer:
    model_ids: list[int]
    ensemble_id: int | None = None
    method: str = ""
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    threshold: float = 0.5
    prevalence: float | None = None  # single models: restate P for it, decide at 0.5

    @property
    def key(self) -> str:
        """The scorer whose rows count as the job's answer (and its progress)."""
        if self.ensemble_id is not None:
            return scorer_key(ensemble_id=self.ensemble_id)
        return scorer_key(self.model_ids[0])


def ensemble_scorer(ensemble: Ensemble) -> Scorer:
    return Scorer(
        model_ids=[m["model_id"] for m in ensemble.members],
        ensemble_id=ensemble.id,
        method=ensemble.method,
        weights=[float(m["weight"]) for m in ensemble.members],
        bias=float(ensemble.params.get("bias", 0.0)),
        threshold=ensemble.threshold,
    )


def scorer_of(job: Job) -> Scorer:
    ensemble_id = job.params.get("ensemble_id")
    if ensemble_id is None:
        return Scorer(model_ids=[job.model_id], prevalence=job.params.get("prevalence"))
    with session_scope() as s:
        return ensemble_scorer(s.get(Ensemble, ensemble_id))


@dataclass
class Answers:
    """Every scorer's answers on one chunk: the members' (M, N) P(PNEUMONIA) and P(VIRAL |
    PNEUMONIA) (NaN where unanswered), the ensemble's combined (N,) ones, errors by position,
    thresholds, and heatmaps by scorer key and position when they were asked for."""

    probs: torch.Tensor
    viral: torch.Tensor
    combined: torch.Tensor | None
    combined_viral: torch.Tensor | None
    errors: dict[int, str]
    thresholds: list[float]
    kind_thresholds: list[float | None]  # None: a model without a kind head
    maps: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    map_info: dict[str, tuple[float, str]] = field(default_factory=dict)  # key -> (crop, method)
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # scorer key -> its review
    review_positions: list[int] = field(default_factory=list)  # the images verdicts cover


def member_and_combined_probs(scorer: Scorer, paths: list[str], explain: bool = False) -> Answers:
    """Score a chunk with the scorer's models, and combine them when it is an ensemble."""
    bundles = [load_bundle(m) for m in scorer.model_ids]
    scored = score_files_multi(bundles, paths, explain=explain)
    probs, thresholds = scored.probs.clone(), [b.threshold for b in bundles]
    if scorer.prevalence is not None:
        probs[0] = prior_shift(probs[0], bundles[0].train_prior, scorer.prevalence)
        thresholds = [PREVALENCE_THRESHOLD]
    answers = Answers(
        probs,
        scored.viral,
        None,
        None,
        scored.errors,
        thresholds,
        [None if b.kind_head == "none" else b.kind_threshold for b in bundles],
    )
    if explain:
        _member_maps(answers, scorer, bundles, scored.maps)
    if scorer.ensemble_id is not None:
        answers.combined = combine(scorer.method, probs, scorer.weights, thresholds, scorer.bias)
        answers.combined_viral = combine_viral(scored.viral, scorer.weights)
        if explain:
            _ensemble_maps(answers, scorer, bundles)
    _review(answers, scorer, bundles, scored.probs, scored.review)
    return answers


def _review(
    answers: Answers, scorer: Scorer, bundles: list, raw: torch.Tensor, review: torch.Tensor
) -> None:
    """Each member's and the ensemble's review of its calls, over the images that were read;
    members without review statistics (fitted before them) take no part."""
    read = torch.isfinite(raw).all(0)
    called = answers.probs[:, read] >= torch.tensor(answers.thresholds).view(-1, 1)
    members, lines, weights, member_called = [], [], [], []
    for m, bundle in enumerate(bundles):
        if bundle.review is None:
            continue
        verdict = member_verdict(
            bundle.review, review[m, read], raw[m, read], called[m], scorer.prevalence
        )
        answers.verdicts[scorer_key(scorer.model_ids[m])] = verdict
        members.append(verdict)
        lines.append(bundle.review.confidence_line)
        weights.append(scorer.weights[m] if scorer.weights else 1.0)
        member_called.append(called[m])
    if answers.combined is not None and members:
        answers.verdicts[scorer.key] = ensemble_verdict(
            members,
            torch.stack(member_called),
            lines,
            weights,
            answers.combined[read] >= scorer.threshold,
        )
    answers.review_positions = read.nonzero().flatten().tolist()


def _member_maps(
    answers: Answers, scorer: Scorer, bundles: list, maps: list[dict[int, torch.Tensor]]
) -> None:
    from training.explain.gradcam import TARGET_LAYERS

    for model_id, bundle, found in zip(scorer.model_ids, bundles, maps, strict=True):
        key = scorer_key(model_id)
        answers.maps[key] = found
        answers.map_info[key] = (bundle.crop, map_method(TARGET_LAYERS[bundle.arch]))


def map_method(layer: str) -> str:
    from training.explain.gradcam import INPUT

    return "input gradient" if layer == INPUT else f"grad-cam {layer}"


def _ensemble_maps(answers: Answers, scorer: Scorer, bundles: list) -> None:
    """The members' maps, weighted as the ensemble weighs its members (negative stacking
    weights count as 0). Members that see different crops of the image cannot be overlaid on
    one grid: then the ensemble stores no map of its own (each member's is stored)."""
    from training.explain.gradcam import combine_maps

    if len({b.crop for b in bundles}) > 1:
        return
    member = [answers.maps[scorer_key(m)] for m in scorer.model_ids]
    positions = sorted(set.intersection(*(set(m) for m in member)))
    if not positions:
        return
    stacked = [torch.stack([m[p] for p in positions]) for m in member]
    combined = combine_maps(stacked, scorer.weights)
    answers.maps[scorer.key] = dict(zip(positions, combined, strict=True))
    answers.map_info[scorer.key] = (bundles[0].crop, "weighted members")


def combine_viral(viral: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """An ensemble's P(VIRAL | PNEUMONIA): its members' weighted mean, over the members that
    answer it (a kind head), each weighted as the ensemble weighs it (negative weights count
    as 0; where every member that answers weighs 0, their plain mean). NaN where no member
    answers."""
    answered = torch.isfinite(viral).double()
    w = torch.tensor(weights, dtype=torch.float64).clamp(min=0).view(-1, 1) * answered
    w = torch.where(w.sum(0) > 0, w, answered)
    total = w.sum(0)
    mean = (w * torch.nan_to_num(viral)).sum(0) / total.clamp(min=1e-12)
    return torch.where(total > 0, mean, torch.full_like(mean, float("nan")))


def ensemble_kind_threshold(cuts: list[float | None], weights: list[float]) -> float:
    """The ensemble decides VIRAL at its members' kind thresholds (None: a member with no kind
    head), weighted as combine_viral weighs their P(VIRAL | PNEUMONIA)."""
    values = torch.tensor([[float("nan") if c is None else c] for c in cuts], dtype=torch.float64)
    cut = float(combine_viral(values, weights)[0])
    return 0.5 if math.isnan(cut) else cut


def kind_threshold_of(model: Model) -> float | None:
    """A stored model's kind threshold; None when it has no kind head."""
    if model.config.get("kind_head", "none") == "none":
        return None
    return float(model.data.get("kind_threshold", 0.5))


def stored_kind_threshold(session: Session, scorer: Scorer) -> float:
    """The kind threshold the scorer's rows were decided at, from the stored models."""
    cuts = [kind_threshold_of(session.get(Model, m)) for m in scorer.model_ids]
    if scorer.ensemble_id is None:
        return cuts[0] if cuts[0] is not None else 0.5
    return ensemble_kind_threshold(cuts, scorer.weights)


def _row(
    job_id: int,
    key: str,
    path: str,
    prob: float | None,
    threshold: float,
    truth: str | None,
    error: str | None,
    viral: tuple[float, float] = (float("nan"), 0.5),
    **ids: Any,
) -> dict[str, Any]:
    """A prediction row; `viral` is (P(VIRAL | PNEUMONIA) or NaN, the kind's threshold)."""
    label = None if prob is None else CLASSES_BY_INDEX[int(prob >= threshold)]
    prob_viral = viral[0] if prob is not None and math.isfinite(viral[0]) else None
    kind = None
    if label == "PNEUMONIA" and prob_viral is not None:
        kind = KIND_LABELS[int(prob_viral >= viral[1])]
    return {
        "job_id": job_id,
        "scorer": key,
        "path": path,
        "prob": prob,
        "label": label,
        "true_label": truth,
        "error": error,
        "model_id": ids.get("model_id"),
        "ensemble_id": ids.get("ensemble_id"),
        "prob_viral": prob_viral,
        "kind": kind,
        **dict.fromkeys(REVIEW_COLUMNS),  # prediction_rows fills them where there is a review
        **dict.fromkeys(IDENTITY_COLUMNS),  # score_unit fills them for DICOM files
    }


NOT_A_NUMBER = "model output is not a number"


def _checked(value: float, error: str | None) -> tuple[float | None, str | None]:
    """(probability, None), or (None, reason): a NaN would otherwise be stored as an empty
    probability with the label NORMAL (NaN >= threshold is false)."""
    if error:
        return None, error
    if not math.isfinite(value):
        return None, NOT_A_NUMBER
    return value, None


def _review_fields(answers: Answers, key: str, index: int | None) -> dict[str, Any]:
    """A row's review columns from its scorer's verdict (all None where there is none)."""
    verdict = answers.verdicts.get(key)
    if verdict is None or index is None:
        return dict.fromkeys(REVIEW_COLUMNS)
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


def prediction_rows(
    job_id: int, scorer: Scorer, paths: list[str], truth: list[str | None], answers: Answers
) -> list[dict[str, Any]]:
    """One row per image and model, plus the ensemble's combined row beside its members'."""
    rows = []
    index = {pos: i for i, pos in enumerate(answers.review_positions)}
    for pos, path in enumerate(paths):
        for m, model_id in enumerate(scorer.model_ids):
            prob, error = _checked(float(answers.probs[m, pos]), answers.errors.get(pos))
            viral = (float(answers.viral[m, pos]), answers.kind_thresholds[m] or 0.5)
            rows.append(
                _row(
                    job_id,
                    scorer_key(model_id),
                    path,
                    prob,
                    answers.thresholds[m],
                    truth[pos],
                    error,
                    viral,
                    model_id=model_id,
                )
                | _review_fields(answers, scorer_key(model_id), index.get(pos))
            )
        if answers.combined is not None:
            prob, error = _checked(float(answers.combined[pos]), answers.errors.get(pos))
            cut = ensemble_kind_threshold(answers.kind_thresholds, scorer.weights)
            viral = (float(answers.combined_viral[pos]), cut)
            rows.append(
                _row(
                    job_id,
                    scorer.key,
                    path,
                    prob,
                    scorer.threshold,
                    truth[pos],
                    error,
                    viral,
                    ensemble_id=scorer.ensemble_id,
                )
                | _review_fields(answers, scorer.key, index.get(pos))
            )
    return rows


def heatmap_rows(job_id: int, paths: list[str], answers: Answers) -> list[dict[str, Any]]:
    """One heatmap row per scorer and image it mapped (db.schema.Heatmap)."""
    from training.explain.gradcam import encode_grid

    rows = []
    for key, maps in answers.maps.items():
        crop, method = answers.map_info[key]
        for pos, grid in maps.items():
            rows.append(
                {
                    "job_id": job_id,
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


def add_identities(rows: list[dict[str, Any]]) -> None:
    """A DICOM file's SOP Instance UID and salted patient hash on each of its rows."""
    from training.data.dicom import identity

    known: dict[str, Any] = {}
    for row in rows:
        path = row["path"]
        if path not in known:
            known[path] = identity(path)
        if known[path] is not None:
            row["sop_instance_uid"] = known[path].sop_instance_uid
            row["patient_hash"] = known[path].patient_hash


def failed_rows(
    job_id: int, scorer: Scorer, paths: list[str], truth: list[str | None], reason: str
) -> list[dict[str, Any]]:
    keys = [(scorer_key(m), {"model_id": m}) for m in scorer.model_ids]
    if scorer.ensemble_id is not None:
        keys.append((scorer.key, {"ensemble_id": scorer.ensemble_id}))
    return [
        _row(job_id, key, path, None, 0.5, truth[pos], reason, **ids)
        for pos, path in enumerate(paths)
        for key, ids in keys
    ]
