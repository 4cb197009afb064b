"""Who scores a job: one model, or an ensemble and its members. Produces prediction rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from db.schema import CLASSES_BY_INDEX, Ensemble, Job, scorer_key
from db.session import session_scope
from training.ensemble import combine
from training.inference import score_files_multi
from training.prevalence import prior_shift
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


def member_and_combined_probs(scorer: Scorer, paths: list[str]):  # noqa: ANN201
    """(member probs (M, N), combined probs (N,) or None, {position: error}, member thresholds)."""
    bundles = [load_bundle(m) for m in scorer.model_ids]
    probs, errors = score_files_multi(bundles, paths)
    thresholds = [b.threshold for b in bundles]
    if scorer.prevalence is not None:
        probs[0] = prior_shift(probs[0], bundles[0].train_prior, scorer.prevalence)
        thresholds = [PREVALENCE_THRESHOLD]
    combined = None
    if scorer.ensemble_id is not None:
        combined = combine(scorer.method, probs, scorer.weights, thresholds, scorer.bias)
    return probs, combined, errors, thresholds


def _row(
    job_id: int,
    key: str,
    path: str,
    prob: float | None,
    threshold: float,
    truth: str | None,
    error: str | None,
    **ids: Any,
) -> dict[str, Any]:
    label = None if prob is None else CLASSES_BY_INDEX[int(prob >= threshold)]
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


def prediction_rows(
    job_id: int, scorer: Scorer, paths: list[str], truth: list[str | None]
) -> list[dict[str, Any]]:
    """One row per image and model, plus the ensemble's combined row beside its members'."""
    probs, combined, errors, thresholds = member_and_combined_probs(scorer, paths)
    rows = []
    for pos, path in enumerate(paths):
        for m, model_id in enumerate(scorer.model_ids):
            prob, error = _checked(float(probs[m, pos]), errors.get(pos))
            rows.append(
                _row(
                    job_id,
                    scorer_key(model_id),
                    path,
                    prob,
                    thresholds[m],
                    truth[pos],
                    error,
                    model_id=model_id,
                )
            )
        if combined is not None:
            prob, error = _checked(float(combined[pos]), errors.get(pos))
            rows.append(
                _row(
                    job_id,
                    scorer.key,
                    path,
                    prob,
                    scorer.threshold,
                    truth[pos],
                    error,
                    ensemble_id=scorer.ensemble_id,
                )
            )
    return rows


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
