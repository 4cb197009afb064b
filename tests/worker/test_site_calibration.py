"""A calibration job in queued mode: the worker that settles the scoring fits and stores the
site profile (real Redis, PostgreSQL and a `cxrq worker`)."""

from pathlib import Path

from sqlalchemy import select

from db.schema import Job, Prediction, SiteProfile
from db.session import session_scope
from tests.helpers import add_tiny_model, job_id_of, run, site_folder


def test_a_worker_fits_the_profile_when_the_calibration_settles(
    workers, tiny_checkpoint: dict, tmp_path: Path
) -> None:
    model = add_tiny_model(tiny_checkpoint)
    workers.start()
    site = site_folder(tmp_path / "site")
    out = run(
        "calibrate", model, "--data", site, "--site", "north", "--target-sensitivity", "0.9",
        "--chunk-size", 16, "--wait",
    )  # fmt: skip
    assert "succeeded" in out and "site profile 1 (north" in out, out + workers.logs()
    with session_scope() as s:
        profile = s.scalars(select(SiteProfile)).one()
        job = s.get(Job, profile.job_id)
        assert job.state == "succeeded" and "site profile 1" in job.message
        threshold = profile.threshold
    out = run("score", site, "--site", "north", "--wait")
    assert "succeeded" in out, out + workers.logs()
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id_of(out))).all()
        assert {(r.site_profile_id, r.threshold) for r in rows} == {(1, threshold)}
