"""Creating jobs (worker.jobs): the rows, units and params JSON the CLI has always written."""

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from db.schema import Ensemble, Job, Prediction
from db.session import session_scope
from db.work import unit_ids
from tests.helpers import add_placeholder_model
from training.fitting.config import make_config
from worker.jobs import (
    PrevalenceForEnsemble,
    ScoreParams,
    TrainParams,
    create_score_job,
    create_train_job,
)


def _model_and_pair() -> tuple[int, int]:
    """Two model rows (no weights: creating a job never loads one) and a vote over both."""
    with session_scope() as s:
        first, second = (
            add_placeholder_model(s, "m", "cnn", None),
            add_placeholder_model(s, "n", "mlp", None),
        )
        members = [{"model_id": first, "weight": 1.0}, {"model_id": second, "weight": 0.5}]
        s.add(Ensemble(name="pair", method="vote", members=members, params={}))
    return first, second


def test_a_score_job_stores_its_params_as_it_always_has(any_db_url) -> None:
    """Stored params are part of the schema: the same keys, in the same order, present on the
    same conditions."""
    model_id, _ = _model_and_pair()
    chunks = [["/x/a.jpeg", "/x/b.jpeg"], ["/x/c.jpeg"]]
    shifted = ScoreParams("/x", 2, evaluate=True, explain="all", prevalence=0.3)
    made = [
        create_score_job(ScoreParams("/x", 2), chunks, scorer="m"),
        create_score_job(shifted, chunks, scorer=str(model_id)),
        create_score_job(ScoreParams("/x", 2, explain="pneumonia"), chunks, scorer="pair"),
    ]
    base = [("folder", "/x"), ("chunk_size", 2)]
    with session_scope() as s:
        jobs = [s.get(Job, j.id) for j in made]
        own = [("threshold", 0.5), ("threshold_source", "model's stored threshold")]
        assert [list(j.params.items()) for j in jobs] == [
            [*base, ("evaluate", False), *own],
            [
                *base,
                ("evaluate", True),
                ("explain", "all"),
                ("prevalence", 0.3),
                ("threshold", 0.5),
                ("threshold_source", "prevalence 0.3"),
            ],
            [
                *base,
                ("evaluate", False),
                ("explain", "pneumonia"),
                ("ensemble_id", 1),
                ("threshold", 0.5),
                ("threshold_source", "ensemble"),
            ],
        ]
        assert [(j.kind, j.model_id, j.progress_total) for j in jobs] == [
            ("score", model_id, 3),
            ("score", model_id, 3),
            ("score", None, 3),
        ]
        assert [len(unit_ids(s, j.id)) for j in jobs] == [2, 2, 2]
        assert ScoreParams.from_job(jobs[1]) == replace(
            shifted, threshold=0.5, threshold_source="prevalence 0.3"
        )
        assert ScoreParams.from_job(jobs[2]).ensemble_id == 1
    assert [(j.n_images, j.scorer) for j in made] == [
        (3, f"model {model_id} (m, cnn)"),
        (3, f"model {model_id} (m, cnn) at prevalence 0.3"),
        (3, "ensemble 1 (pair, vote)"),
    ]


def test_prevalence_is_refused_for_an_ensemble_and_no_job_is_written(any_db_url) -> None:
    _model_and_pair()
    with pytest.raises(PrevalenceForEnsemble):
        create_score_job(ScoreParams("/x", 2, prevalence=0.3), [["/x/a.jpeg"]], scorer="pair")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_an_unreadable_folder_is_an_error_row_of_every_scorer(any_db_url) -> None:
    first, second = _model_and_pair()
    locked = [("/x/locked", "Permission denied")]
    job = create_score_job(ScoreParams("/x", 2), [["/x/a.jpeg"]], "pair", unreadable=locked)
    with session_scope() as s:
        assert s.get(Job, job.id).progress_total == 2  # the folder is one unit of progress
        rows = s.scalars(select(Prediction).order_by(Prediction.id)).all()
    assert [(r.scorer, r.model_id, r.ensemble_id) for r in rows] == [
        (f"model:{first}", first, None),
        (f"model:{second}", second, None),
        ("ensemble:1", None, 1),
    ]
    assert {(r.path, r.error, r.prob, r.label, r.true_label, r.review) for r in rows} == {
        ("/x/locked", "folder not readable: Permission denied", None, None, None, None)
    }


def test_a_training_job_stores_its_params_as_it_always_has(any_db_url) -> None:
    config = make_config("cnn", img_size=32)
    job = create_train_job(TrainParams(config, "/data", "g1"))
    with session_scope() as s:
        row = s.get(Job, job.id)
        assert list(row.params.items()) == [
            ("config", config.to_dict()),
            ("data", "/data"),
            ("name", "g1"),
        ]
        assert (row.kind, row.state, row.message) == ("train", "pending", "queued")
        assert TrainParams.from_job(row) == TrainParams(config, "/data", "g1")
        assert unit_ids(s, job.id) == job.unit_ids and len(job.unit_ids) == 1
