"""What a job's answer says about review: header flags count even for a model without review
statistics, whose other scored rows are then the unflagged ones."""

from __future__ import annotations

from db.job_answers import review_summary
from db.schema import Job, Prediction
from db.session import session_scope
from db.store import create_job
from tests.helpers import add_placeholder_model


def _job_with(rows: list[dict]) -> int:
    with session_scope() as s:
        model_id = add_placeholder_model(s, "m", "cnn", None)
        job = create_job(s, "score", {"folder": "/x"})
        job.model_id = model_id
        for i, fields in enumerate(rows):
            s.add(Prediction(job_id=job.id, scorer=f"model:{model_id}", path=f"/x/{i}", **fields))
        return job.id


def test_a_header_flag_without_review_statistics_counts_the_other_rows_unflagged(
    db_url: str,
) -> None:
    job_id = _job_with(
        [
            {"prob": 0.9, "label": "PNEUMONIA", "review": True, "review_reasons": "lateral"},
            {"prob": 0.2, "label": "NORMAL"},
            {"prob": None, "error": "not a radiograph: Modality CT"},
        ]
    )
    with session_scope() as s:
        summary = review_summary(s, s.get(Job, job_id))
    assert (summary["scored"], summary["flagged"], summary["lateral"]) == (2, 1, 1)
    assert summary["coverage"] == 0.5


def test_no_review_at_all_is_no_summary(db_url: str) -> None:
    job_id = _job_with([{"prob": 0.2, "label": "NORMAL"}])
    with session_scope() as s:
        assert review_summary(s, s.get(Job, job_id)) is None
