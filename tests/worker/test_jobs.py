from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from db.schema import Evaluation, Job, Model, Prediction
from db.scoring import store_unit
from db.session import session_scope
from db.store import create_job
from db.work import claim, unit_ids
from tests.helpers import add_tiny_model, incoming_folder, make_score_job
from training.fitting.config import make_config
from training.scoring.answers import NOT_SCORED
from worker import score_job, train_job
from worker.jobs import TrainParams, create_train_job
from worker.score_job import run_scoring_job
from worker.score_unit import fail_unit, score_unit
from worker.settle import settle
from worker.train_job import run_training_job


def _train_job(data: Path, arch: str = "cnn", **config: object) -> int:
    """A training job as the CLI makes it: the row and its one unit; returns the job id."""
    return create_train_job(TrainParams(make_config(arch, img_size=32, **config), str(data))).id


def test_training_job_stores_weights_config_and_validation_scores(any_db_url, tiny_dataset) -> None:
    model_id = run_training_job(_train_job(tiny_dataset, epochs=2, batch_size=8))
    assert model_id is not None
    with session_scope() as s:
        model = s.get(Model, model_id)
        evaluation = s.scalars(select(Evaluation).where(Evaluation.model_id == model_id)).one()
        job = s.get(Job, model.job_id)
    assert model.weights[:8] and model.config["arch"] == "cnn" and model.config["epochs"] == 2
    assert len(model.data["fingerprint"]) == 64 and len(model.data["history"]) == 2
    assert evaluation.split == "validation" and evaluation.n == model.data["n_val"]
    assert (job.state, job.model_id) == ("succeeded", model_id)
    assert job.progress_done == job.progress_total > 0


def test_a_cancelled_training_job_ends_cancelled(any_db_url, tiny_dataset) -> None:
    job_id = create_train_job(TrainParams(make_config("mlp"), str(tiny_dataset))).id
    with session_scope() as s:
        s.get(Job, job_id).cancel_requested = True
    assert run_training_job(job_id) is None
    with session_scope() as s:
        assert s.get(Job, job_id).state == "cancelled"
        assert s.scalars(select(Model)).first() is None


def test_scoring_writes_one_row_per_image_and_an_error_row(
    any_db_url, tiny_checkpoint, tmp_path
) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    folder = incoming_folder(tmp_path)
    job_id, _ = make_score_job(folder, model_id)
    result = run_scoring_job(job_id)
    assert result["state"] == "succeeded"
    assert result["message"].startswith("12 images: 11 scored, 1 unreadable")
    with session_scope() as s:
        rows = {Path(p.path).name: p for p in s.scalars(select(Prediction))}
        evaluation = s.scalars(select(Evaluation).where(Evaluation.job_id == job_id)).one()
    assert rows["broken.jpeg"].prob is None and rows["broken.jpeg"].error
    assert rows["n0.jpeg"].true_label == "NORMAL" and rows["p0.png"].true_label == "PNEUMONIA"
    assert rows["u.jpg"].true_label is None and rows["u.jpg"].label in ("NORMAL", "PNEUMONIA")
    assert evaluation.n == 10  # the labelled, readable images


def test_a_redelivered_chunk_adds_no_row(any_db_url, tiny_checkpoint, tmp_path) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=5)
    assert [score_unit(u) for u in [units[0], units[1], units[1]]] == [5, 5, 0]
    assert settle(job_id) is None  # 10 of 12 rows: not done yet
    score_unit(units[2])
    assert settle(job_id)["state"] == "succeeded"
    assert settle(job_id) is None  # closed exactly once
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.progress_done == 12 and job.state == "succeeded"
        assert s.scalar(select(func.count()).select_from(Prediction)) == 12
        assert (
            s.scalar(
                select(func.count()).select_from(Evaluation).where(Evaluation.job_id == job_id)
            )
            == 1
        )


def test_a_chunk_that_failed_for_good_leaves_error_rows_and_a_partial_job(
    any_db_url, tiny_checkpoint, tmp_path
) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=5)
    score_unit(units[0])
    fail_unit(units[0], "OSError: disk went away")  # done already: nothing to do
    fail_unit(units[1], "OSError: disk went away")
    score_unit(units[2])
    result = settle(job_id)
    assert result["state"] == "partial" and "5 not scored" in result["message"]
    with session_scope() as s:
        errors = s.scalars(select(Prediction.error).where(Prediction.error.is_not(None))).all()
    lost = [e for e in errors if e.startswith(NOT_SCORED)]
    assert len(lost) == 5 and "disk went away" in lost[0]


def test_cancel_stops_the_remaining_chunks(any_db_url, tiny_checkpoint, tmp_path) -> None:
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=5)
    score_unit(units[0])
    with session_scope() as s:
        s.get(Job, job_id).cancel_requested = True
    assert score_unit(units[1]) == 0
    assert settle(job_id)["state"] == "cancelled"
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.state == "cancelled" and job.progress_done == 5


def test_a_job_closes_though_a_concurrent_count_missed_rows(any_db_url, tiny_checkpoint, tmp_path):
    """Two chunks committing at once each count without the other's rows (READ COMMITTED):
    the job must still close when its last unit is done."""
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=6)
    for unit in units:
        score_unit(unit)
    with session_scope() as s:
        job = s.get(Job, job_id)
        job.state, job.progress_done = "running", 6  # what both racing counts left behind
    assert settle(job_id)["state"] == "succeeded"
    with session_scope() as s:
        assert s.get(Job, job_id).progress_done == 12


def test_ctrl_c_ends_an_embedded_scoring_job_cancelled(
    any_db_url, tiny_checkpoint, tmp_path, monkeypatch
):
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=5)
    real = score_job.score_unit

    def interrupted(unit_id: int) -> int:
        if unit_id == units[1]:
            raise KeyboardInterrupt
        return real(unit_id)

    monkeypatch.setattr(score_job, "score_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_scoring_job(job_id)
    with session_scope() as s:
        job = s.get(Job, job_id)
    assert job.state == "cancelled" and job.message == "interrupted after 5 of 12 images"


def test_ctrl_c_ends_an_embedded_training_cancelled(any_db_url, tiny_dataset, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_job, "fit", interrupted)
    job_id = _train_job(tiny_dataset, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        run_training_job(job_id)
    with session_scope() as s:
        assert s.get(Job, job_id).state == "cancelled"


def test_a_training_a_live_worker_holds_is_not_started_again(any_db_url, tiny_dataset) -> None:
    job_id = _train_job(tiny_dataset, epochs=1)
    with session_scope() as s:
        (unit,) = unit_ids(s, job_id)
        claim(s, unit, "alive:1/x", 30)  # another worker is training it now
    assert run_training_job(job_id, unit_id=unit) is None
    with session_scope() as s:
        assert s.get(Job, job_id).state == "pending" and s.scalars(select(Model)).first() is None


def test_a_late_stale_count_never_lowers_progress(any_db_url, tiny_checkpoint, tmp_path) -> None:
    """A chunk's count taken before another chunk committed can land after the job closed."""
    model_id = add_tiny_model(tiny_checkpoint)
    job_id, units = make_score_job(incoming_folder(tmp_path), model_id, chunk_size=6)
    for unit in units:
        score_unit(unit)
    settle(job_id)
    with session_scope() as s:
        s.get(Job, job_id).progress_done = 12
    with session_scope() as s:
        store_unit(s, job_id, units[0], "model:0", [])  # counts 0 rows of "model:0"
    with session_scope() as s:
        assert s.get(Job, job_id).progress_done == 12


def test_a_training_job_made_before_units_existed_gets_its_unit(any_db_url, tiny_dataset):
    """Rows written by older versions have no unit; running one makes it."""
    config = make_config("mlp", img_size=32, epochs=1).to_dict()
    with session_scope() as s:
        job_id = create_job(s, "train", {"config": config, "data": str(tiny_dataset)}).id
    assert run_training_job(job_id) is not None
    with session_scope() as s:
        assert len(unit_ids(s, job_id, ("done",))) == 1


def test_an_image_the_model_fails_on_leaves_a_partial_job_that_says_so(
    db_url, tiny_checkpoint, tmp_path, monkeypatch
) -> None:
    """Every other image is scored; the job is partial and its message counts the failure."""
    import training.scoring.files as files

    folder = incoming_folder(tmp_path)
    Image.new("L", (48, 48), 255).save(folder / "white.png")
    real = files._outputs

    def fails_on_white(bundle, images, explain):  # noqa: ANN001, ANN202
        if bool((images.float().mean(dim=(1, 2, 3)) > 254).any()):
            raise RuntimeError("out of memory on this image")
        return real(bundle, images, explain)

    monkeypatch.setattr(files, "_outputs", fails_on_white)
    job_id, _ = make_score_job(folder, add_tiny_model(tiny_checkpoint), chunk_size=20)
    result = run_scoring_job(job_id)
    assert result["state"] == "partial", result["message"]
    assert result["message"].startswith("13 images: 11 scored, 1 unreadable")
    assert result["message"].endswith("; 1 the model failed on")
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
    failed = [r for r in rows if r.error and r.error.startswith("cannot score image")]
    assert [Path(r.path).name for r in failed] == ["white.png"]
    assert sum(r.prob is not None for r in rows) == 11
