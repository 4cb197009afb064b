"""`cxrq calibrate` and `cxrq score --site` end to end on the session's tiny model (embedded)."""

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.schema import Job, Prediction, SiteProfile
from db.session import session_scope
from tests.conftest import make_xray
from tests.helpers import add_tiny_model, job_id_of, run, site_folder


@pytest.fixture()
def model(db_url: str, tiny_checkpoint: dict) -> int:
    return add_tiny_model(tiny_checkpoint)


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    return site_folder(tmp_path / "site")


def _calibrate(model: int, folder: Path, *extra: object, ok: bool = True) -> str:
    return run(
        "calibrate", model, "--data", folder, "--site", "st-marys",
        "--target-sensitivity", "0.9", *extra, ok=ok,
    )  # fmt: skip


def _counts() -> tuple[int, int]:
    with session_scope() as s:
        return s.scalar(select(func.count(SiteProfile.id))), s.scalar(select(func.count(Job.id)))


def test_calibrate_stores_a_profile_and_score_site_decides_with_it(
    model: int, site: Path, tmp_path: Path
) -> None:
    out = _calibrate(model, site)
    assert "site profile 1 (st-marys, model" in out and "no kind threshold" in out
    assert "sensitivity" in out and "24 NORMAL of 12" in out
    with session_scope() as s:
        profile = s.scalars(select(SiteProfile)).one()
        threshold, profile_id = profile.threshold, profile.id
        assert profile.profile["monitoring"]["job_id"] == profile.job_id
    ward = site_folder(tmp_path / "ward", patients=3)
    out = run("score", ward, "--site", "st-marys", "--explain", "none")
    assert f"site st-marys (profile {profile_id})" in out
    job_id = job_id_of(out)
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        assert {r.site_profile_id for r in rows} == {profile_id}
        assert {r.threshold for r in rows} == {threshold}
        assert all((r.prob >= threshold) == (r.label == "PNEUMONIA") for r in rows)
        assert s.get(Job, job_id).params["site_profile_id"] == profile_id
    listed = json.loads(run("report", "sites", "--format", "json"))
    assert listed[0]["site"] == "st-marys" and listed[0]["threshold"] == threshold
    csv_rows = run("report", "predictions", job_id, "--format", "csv").splitlines()
    assert "threshold,site_profile_id" in csv_rows[0] and f",{profile_id}," in csv_rows[1]
    assert f"site_profile_id {profile_id}" in " ".join(run("report", "job", job_id).split())
    run("report", "html", job_id, "-o", tmp_path / "job.html")
    page = (tmp_path / "job.html").read_text()
    assert f"from the site st-marys (profile {profile_id})" in page


def test_a_score_without_a_site_says_where_its_threshold_comes_from(model: int, site: Path) -> None:
    out = run("score", site, "--explain", "none")
    assert "threshold" in out and "from the training" in out
    with session_scope() as s:
        job = s.get(Job, job_id_of(out))
        assert "from the training" in job.message
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job.id)).all()
        assert {r.site_profile_id for r in rows} == {None}
        assert {r.threshold for r in rows} == {job.params["threshold"]}


def test_a_profile_is_refused_for_other_weights(
    model: int, site: Path, tiny_checkpoint: dict
) -> None:
    _calibrate(model, site)
    other = add_tiny_model(tiny_checkpoint, name="other")
    out = run("score", site, "--site", "st-marys", "--model", other, ok=False)
    assert f"site st-marys was calibrated for model {model} (sha " in out
    assert f"calibrate model {other} for this site" in out


def test_a_taken_site_needs_replace_and_keeps_the_old_profile(model: int, site: Path) -> None:
    _calibrate(model, site)
    out = _calibrate(model, site, ok=False)
    assert "already has profile 1" in out and "--replace" in out
    _calibrate(model, site, "--replace")
    with session_scope() as s:
        states = s.scalars(select(SiteProfile.state).order_by(SiteProfile.id)).all()
    assert states == ["replaced", "active"]


@pytest.mark.parametrize(
    ("patients", "args", "message"),
    [
        (6, (), "at least 20 images of 10 patients"),
        (12, ("--target-sensitivity", "0.99"), "too few patients for target sensitivity 0.99"),
    ],
)
def test_a_folder_that_cannot_support_a_profile_stores_nothing(
    model: int, tmp_path: Path, patients: int, args: tuple, message: str
) -> None:
    folder = site_folder(tmp_path / "small", patients=patients)
    out = run("calibrate", model, "--data", folder, "--site", "s", *args, ok=False)
    assert message in out and len(out.strip().splitlines()) == 1
    assert _counts() == (0, 0)


def test_unlabelled_and_one_class_folders_are_refused(model: int, tmp_path: Path) -> None:
    for i in range(3):
        make_xray(tmp_path / "flat" / f"x{i}.png", False, i, 32)
    out = run("calibrate", model, "--data", tmp_path / "flat", "--site", "s", ok=False)
    assert "calibration needs labelled images" in out
    folder = site_folder(tmp_path / "one")
    for f in (folder / "PNEUMONIA").iterdir():
        f.unlink()
    out = run("calibrate", model, "--data", folder, "--site", "s", ok=False)
    assert "0 PNEUMONIA images of 0 patients" in out
    assert _counts() == (0, 0)


def test_unknown_sites_prevalence_with_site_and_ensembles_are_one_line(
    model: int, site: Path
) -> None:
    out = run("score", site, "--site", "nowhere", ok=False)
    assert "no site named 'nowhere'" in out
    out = run("score", site, "--site", "x", "--prevalence", "0.3", ok=False)
    assert "--prevalence and --site" in out
    run("ensemble", "create", "pair", "--member", f"{model}=1")
    out = run("calibrate", "pair", "--data", site, "--site", "s", ok=False)
    assert "is an ensemble: calibrate takes one model" in out
    assert _counts()[0] == 0


def test_unreadable_images_are_left_out_and_counted(model: int, site: Path) -> None:
    (site / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(b"not an image")
    out = _calibrate(model, site)
    assert "left out: 1 unreadable" in out
    with session_scope() as s:
        assert s.scalars(select(SiteProfile)).one().profile["counts"]["unreadable"] == 1


def test_adapt_stores_a_linked_model_used_only_through_its_site(
    model: int, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.fitting.adapt as adapt

    # Tuned for one epoch whatever the tiny model's out-of-fold AUC says (tested on its own).
    monkeypatch.setattr(adapt, "choose_epochs", lambda *args, **kwargs: 1)
    out = _calibrate(model, site, "--adapt")
    assert "adapted model" in out
    with session_scope() as s:
        from db.schema import Model

        adapted = s.scalars(select(Model).where(Model.parent_id == model)).one()
        assert adapted.site == "st-marys" and adapted.weights_sha256
        profiles = s.scalars(select(SiteProfile).order_by(SiteProfile.id)).all()
        assert [p.state for p in profiles] == ["replaced", "active"]
        active = profiles[-1]
        assert active.adapted_model_id == adapted.id and active.model_id == model
        assert active.profile["unadapted"]["profile_id"] == profiles[0].id
        assert "out-of-fold" in active.profile["adapt"]["scores"]
        adapted_id, profile_id = adapted.id, active.id
    out = run("score", site, "--site", "st-marys", "--explain", "none")
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id_of(out))).all()
        assert {r.model_id for r in rows} == {adapted_id}
        assert {r.site_profile_id for r in rows} == {profile_id}
    # Never by id, name or as the default: only through the site.
    assert "adapted to site st-marys" in run("score", site, "--model", adapted_id, ok=False)
    out = run("score", site, "--explain", "none")
    with session_scope() as s:
        assert s.get(Job, job_id_of(out)).model_id == model


def test_the_models_page_shows_each_site_operating_point_on_its_roc(
    model: int, site: Path, tmp_path: Path
) -> None:
    _calibrate(model, site)
    run("report", "html", "--models", "-o", tmp_path / "models.html")
    page = (tmp_path / "models.html").read_text()
    assert "ROC at each site" in page and "st-marys @" in page
    assert 'class="operating-point"' in page


def test_an_adapt_that_does_not_beat_the_model_keeps_the_unadapted_profile(
    model: int, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.fitting.adapt as adapt

    monkeypatch.setattr(adapt, "choose_epochs", lambda *args, **kwargs: 0)
    out = _calibrate(model, site, "--adapt")
    assert "adapting did not beat the model" in out and "stays, unadapted" in out
    with session_scope() as s:
        from db.schema import Model

        assert s.scalar(select(func.count(Model.id))) == 1
        assert s.scalars(select(SiteProfile.state)).all() == ["active"]
