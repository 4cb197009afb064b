import pytest
from sqlalchemy import func, select

from db.lookups import resolve_job
from db.schema import Prediction
from db.session import session_scope
from db.store import (
    NotFoundError,
    create_job,
    finish_job,
    get_job,
    upsert_predictions,
)
from tests.helpers import add_placeholder_model, report_row_with_scored_set


def test_upsert_never_doubles_a_prediction(any_db_url: str) -> None:
    with session_scope() as s:
        model_id = add_placeholder_model(s, "m", "cnn", 0.9)
        job_id = create_job(s, "score", {"folder": "/x"}).id
    row = {
        "job_id": job_id,
        "scorer": f"model:{model_id}",
        "ensemble_id": None,
        "model_id": model_id,
        "path": "/x/a.jpeg",
        "prob": 0.2,
        "label": "NORMAL",
        "true_label": None,
        "error": None,
    }
    for prob in (0.2, 0.9):  # a redelivered chunk with a different answer
        with session_scope() as s:
            upsert_predictions(s, [row | {"prob": prob}, row | {"path": "/x/b.jpeg"}])
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == 2
        probs = s.scalars(select(Prediction.prob).order_by(Prediction.path)).all()
        assert probs == [0.9, 0.2]


def test_models_report_carries_validation_and_other_evaluations(any_db_url: str) -> None:
    row = report_row_with_scored_set(0.9, 0.7)
    assert row["val_f1"] == 0.9 and row["val_roc_auc"] is None  # NaN AUC stored as NULL
    assert [e["split"] for e in row["evaluations"]] == ["scored"]
    assert row["train_minutes"] == 1.0


def test_job_lifecycle_and_latest(any_db_url: str) -> None:
    with session_scope() as s:
        first = create_job(s, "train", {}).id
        second = create_job(s, "score", {}).id
    finish_job(second, "succeeded", "done")
    with session_scope() as s:
        assert get_job(s, second).state == "succeeded"
        assert get_job(s, second).finished_at is not None
        assert resolve_job(s, "latest").id == second
        assert resolve_job(s, "latest-train").id == first
        with pytest.raises(NotFoundError):
            resolve_job(s, "yesterday")
