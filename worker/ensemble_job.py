"""Creating and fitting ensembles over stored models, scored on their shared validation split
(and on the data's test/ split when it has one: only scored, never fitted on).

create_seed_ensemble("seed")        # the seed's weighted vote over the latest seed models
fit_ensemble("fitted")              # stacking weights + balanced threshold, cross-fitted
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import audit
from db.lookups import ensemble_named, latest_model, resolve_ensemble, resolve_model
from db.schema import Ensemble, Model
from db.scoring import ScorerRef, ensemble_ref
from db.session import session_scope
from db.store import save_ensemble, save_ensemble_fit, save_evaluation
from training.data.data_files import LabeledImage, find_splits
from training.fitting.config import TrainConfig
from training.fitting.split_policy import choose_validation
from training.scoring.ensemble_eval import (
    Members,
    cross_fitted_scores,
    member_answers,
    scores_as_stored,
)
from worker.model_cache import load_bundle

SEED_WEIGHTS = {"mlp": 0.5, "cnn": 0.5, "resnet50": 0.5, "googlenet": 0.51}


class EnsembleError(ValueError):
    """An ensemble that cannot be built as asked; the message says why."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


def validation_items(models: list[Model]) -> tuple[list[LabeledImage], str]:
    """The validation split every member was scored on; members must share it."""
    configs = [TrainConfig.from_dict(m.config) for m in models]
    data = {(m.data.get("root"), m.data.get("fingerprint")) for m in models}
    splits = {(c.seed, c.val_fraction, c.max_images_per_class) for c in configs}
    if len(data) > 1 or len(splits) > 1:
        raise EnsembleError(
            "members were validated on different data or splits (same --data, --seed, "
            "--val-fraction and --max-per-class are needed)"
        )
    root = next(iter(data))[0]
    _, val, how = choose_validation(find_splits(root), configs[0])
    return val, f"{root} ({how})"


def _members(session: Session, refs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"model_id": resolve_model(session, ref).id, "weight": w} for ref, w in refs]


def create_ensemble(name: str, refs: list[tuple[str, float]], method: str = "vote") -> int:
    """A weighted vote over the given models (ref: id, name or arch); scored on validation."""
    if not refs:
        raise EnsembleError("an ensemble needs at least one --member MODEL=WEIGHT")
    with session_scope() as s:
        if ensemble_named(s, name) is not None:
            raise EnsembleError(f"an ensemble named {name!r} exists; choose another name")
        members = _members(s, refs)
        ensemble_id = save_ensemble(s, name, method, members).id
        audit.record(
            s,
            "ensemble-create",
            detail={"ensemble_id": ensemble_id, "name": name, "method": method, "members": members},
        )
    score_on_validation(ensemble_id)
    return ensemble_id


def create_seed_ensemble(name: str = "seed") -> int:
    """The seed project's vote: MLP, CNN, ResNet50 0.5 and GoogLeNet 0.51, latest seed models."""
    refs = []
    with session_scope() as s:
        for arch, weight in SEED_WEIGHTS.items():
            model = latest_model(s, arch, "seed")
            if model is None:
                raise EnsembleError(f"no {arch} model with the seed preset; train one first")
            refs.append((str(model.id), weight))
    return create_ensemble(name, refs, "vote")


def _models(ids: list[int]) -> list[Model]:
    with session_scope() as s:
        return [s.get(Model, i) for i in ids]


def _scorer(ensemble_id: int) -> ScorerRef:
    with session_scope() as s:
        return ensemble_ref(s.get(Ensemble, ensemble_id))


def members_on(model_ids: list[int], items: list[LabeledImage]) -> Members:
    """The stored models' answers on labelled images (for fitting and scoring ensembles)."""
    return member_answers([load_bundle(m) for m in model_ids], items)


def _scores_as_stored(e: ScorerRef, items: list[LabeledImage]) -> dict[str, Any]:
    """The ensemble's scores on items with its stored weights, bias and threshold, as served."""
    members = members_on(e.model_ids, items)
    return scores_as_stored(e.method, members, e.weights, e.bias, e.threshold)


def score_on_validation(ensemble_id: int) -> dict[str, Any]:
    """Score an ensemble as it stands on its members' validation split (and their test/ split,
    if the data has one); store the evaluations."""
    e = _scorer(ensemble_id)
    items, dataset = validation_items(_models(e.model_ids))
    scores = _scores_as_stored(e, items)
    with session_scope() as s:
        save_evaluation(s, "validation", dataset, scores, ensemble_id=ensemble_id)
        s.get(Ensemble, ensemble_id).params = {"bias": e.bias, "validation": dataset}
    score_on_test(ensemble_id)
    return scores


def score_on_test(ensemble_id: int) -> dict[str, Any] | None:
    """Score the ensemble's final weights and threshold on the members' test/ split, the external
    set a change is judged by; nothing is ever fitted on it. None when the data has no test/."""
    e = _scorer(ensemble_id)
    root = _models(e.model_ids)[0].data.get("root")  # members share it (validation_items)
    items = find_splits(root).get("test") if root else None
    if not items:
        return None
    scores = _scores_as_stored(e, items)
    with session_scope() as s:
        save_evaluation(s, "test", f"{root}/test", scores, ensemble_id=ensemble_id)
    return scores


def fit_ensemble(name: str, folds: int = 5, seed: int = 0, select: bool = False) -> dict[str, Any]:
    """Stacking weights and a balanced threshold fitted on the validation split; with `select`,
    only the members that raise the cross-fitted AUC are kept (the others are dropped).

    The stored validation scores are cross-fitted (each patient group scored by a fit, member
    selection included, that did not see it); the final fit then uses the whole split, and is
    scored as it stands on the test/ split when the data has one.
    """
    with session_scope() as s:
        e = resolve_ensemble(s, name)
        # A refit weighs every model the ensemble was created with, dropped ones included.
        ensemble_id, ids = e.id, e.params.get("candidates") or [m["model_id"] for m in e.members]
    items, dataset = validation_items(_models(ids))
    members = members_on(ids, items)
    scores, fit, fold_fits = cross_fitted_scores(members, folds, seed, select)
    how = "stacking with member selection" if select else "stacking"
    params = {
        "bias": fit.bias,
        "validation": f"{dataset}; {how} cross-fitted over {folds} patient folds",
        "folds": folds,
        "seed": seed,
        "candidates": ids,
    }
    if select:
        params["kept_per_fold"] = [[ids[n] for n in f.members] for f in fold_fits]
    with session_scope() as s:
        kept = [ids[n] for n in fit.members]
        weights = [{"model_id": i, "weight": w} for i, w in zip(kept, fit.weights, strict=True)]
        save_ensemble_fit(s, ensemble_id, fit.threshold, params, weights)
        save_evaluation(s, "validation", params["validation"], scores, ensemble_id=ensemble_id)
        audit.record(
            s,
            "ensemble-fit",
            detail={"ensemble_id": ensemble_id, "name": name, "members": weights, "select": select},
        )
    score_on_test(ensemble_id)
    return scores
