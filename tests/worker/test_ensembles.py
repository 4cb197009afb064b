import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import cli
from db.schema import Ensemble, Evaluation, Model, Prediction
from db.session import session_scope
from tests.helpers import incoming_folder, run
from worker.ensemble_job import EnsembleError, create_ensemble, create_seed_ensemble, fit_ensemble
from worker.jobs import ScoreParams, create_score_job
from worker.score_job import run_scoring_job
from worker.score_plan import plan_chunks


@pytest.fixture()
def two_models(db_url, tmp_path: Path) -> Path:
    from tests.conftest import make_dataset

    return _train_cnn_and_mlp(make_dataset(tmp_path / "data", per_class=20, images_per_patient=1))


@pytest.fixture()
def two_models_with_test(db_url, tmp_path: Path) -> Path:
    """As two_models, on data that also has an external test/ split (other patients)."""
    from tests.conftest import make_dataset, make_xray

    data = make_dataset(tmp_path / "data", per_class=20, images_per_patient=1)
    for i in range(4):
        make_xray(data / "test" / "NORMAL" / f"IM-{900 + i:04d}-0001.jpeg", False, 500 + i)
        make_xray(data / "test" / "PNEUMONIA" / f"person{900 + i}_virus_{i}.jpeg", True, 600 + i)
    return _train_cnn_and_mlp(data)


def _train_cnn_and_mlp(data: Path) -> Path:
    for arch in ("cnn", "mlp"):
        run(
            "train",
            "--arch",
            arch,
            "--data",
            data,
            "--epochs",
            1,
            "--img-size",
            32,
            "--preset",
            "seed",
        )
    return data


def test_an_ensemble_scores_with_members_rows_beside_its_own(two_models, tmp_path) -> None:
    ensemble_id = create_ensemble("pair", [("cnn", 0.6), ("mlp", 0.4)])
    folder = incoming_folder(tmp_path)
    job_id = create_score_job(ScoreParams(str(folder)), plan_chunks(folder, 5), "pair").id
    result = run_scoring_job(job_id)
    assert result["state"] == "succeeded" and result["scores"]["n"] == 10
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        evaluations = s.scalars(select(Evaluation).where(Evaluation.job_id == job_id)).all()
    assert len(rows) == 12 * 3
    assert {r.scorer for r in rows} == {"model:1", "model:2", f"ensemble:{ensemble_id}"}
    combined = [r for r in rows if r.ensemble_id == ensemble_id and r.error is None]
    # A vote's score is the weighted share of PNEUMONIA votes: 0, 0.4, 0.6 or 1.
    assert all(min(abs(r.prob - v) for v in (0.0, 0.4, 0.6, 1.0)) < 1e-9 for r in combined)
    assert len(evaluations) == 3  # each member and the ensemble on the labelled images


def test_fit_stores_cross_fitted_validation_scores_and_stacking_weights(two_models) -> None:
    create_ensemble("fitted", [("cnn", 1.0), ("mlp", 1.0)])
    scores = fit_ensemble("fitted", folds=3)
    with session_scope() as s:
        e = s.scalars(select(Ensemble).where(Ensemble.name == "fitted")).one()
        validations = s.scalars(
            select(Evaluation).where(
                Evaluation.ensemble_id == e.id, Evaluation.split == "validation"
            )
        ).all()
    assert e.method == "stacking" and e.fitted_at is not None and "bias" in e.params
    assert len(validations) == 2 and "cross-fitted over 3 patient folds" in validations[-1].dataset
    assert scores["n"] == validations[-1].n and 0.0 < e.threshold < 1.0
    rows = json.loads(run("report", "ensembles", "--format", "json"))
    assert rows[0]["method"] == "stacking" and rows[0]["val_f1"] == validations[-1].f1


def _test_evaluations(ensemble_id: int) -> list[Evaluation]:
    with session_scope() as s:
        return s.scalars(
            select(Evaluation)
            .where(Evaluation.ensemble_id == ensemble_id, Evaluation.split == "test")
            .order_by(Evaluation.id)
        ).all()


def test_create_and_fit_score_the_ensemble_on_the_test_split(two_models_with_test) -> None:
    ensemble_id = create_ensemble("pair", [("cnn", 0.6), ("mlp", 0.4)])
    with session_scope() as s:
        root = s.get(Model, 1).data["root"]
        members_tested = s.scalars(select(Evaluation).where(Evaluation.split == "test")).all()
    (created,) = _test_evaluations(ensemble_id)
    assert created.dataset == f"{root}/test" and created.n == 8 and created.threshold == 0.5
    assert len(members_tested) == 3  # each member at training, and the ensemble
    out = run("ensemble", "fit", "pair", "--folds", 3)
    assert "validation: F1" in out and "test: F1" in out
    with session_scope() as s:
        e = s.get(Ensemble, ensemble_id)
    refit = _test_evaluations(ensemble_id)[-1]
    # Scored as it stands after the fit, with the fitted threshold; still only 8 images.
    assert len(_test_evaluations(ensemble_id)) == 2
    assert refit.n == 8 and refit.threshold == e.threshold and e.method == "stacking"
    row = json.loads(run("report", "ensembles", "--format", "json"))[0]
    assert row["test_n"] == 8 and row["test_f1"] == refit.f1


def test_fit_with_selection_keeps_a_subset_and_records_each_fold(two_models) -> None:
    run("ensemble", "create", "picked", "--member", "cnn=1", "--member", "mlp=1")
    out = run("ensemble", "fit", "picked", "--folds", 3, "--select")
    with session_scope() as s:
        e = s.scalars(select(Ensemble).where(Ensemble.name == "picked")).one()
        dataset = s.scalars(
            select(Evaluation.dataset).where(Evaluation.ensemble_id == e.id).order_by(Evaluation.id)
        ).all()[-1]
    kept = [m["model_id"] for m in e.members]
    assert kept and set(kept) <= {1, 2} and e.params["candidates"] == [1, 2]
    assert len(e.params["kept_per_fold"]) == 3 and all(e.params["kept_per_fold"])
    assert "member selection cross-fitted over 3 patient folds" in dataset
    assert f"members {kept[0]}=" in out
    row = json.loads(run("report", "ensembles", "--format", "json"))[-1]
    assert row["dropped"] == ", ".join(str(i) for i in (1, 2) if i not in kept)
    with session_scope() as s:  # as if selection had dropped model 2
        e = s.scalars(select(Ensemble).where(Ensemble.name == "picked")).one()
        e.members = [{"model_id": 1, "weight": 1.0}]
    run("ensemble", "fit", "picked", "--folds", 3)  # a refit weighs every candidate again
    with session_scope() as s:
        e = s.scalars(select(Ensemble).where(Ensemble.name == "picked")).one()
    assert [m["model_id"] for m in e.members] == [1, 2]


def test_seed_preset_needs_every_seed_arch(two_models) -> None:
    with pytest.raises(EnsembleError, match="no resnet50 model with the seed preset"):
        create_seed_ensemble()


def test_members_validated_on_different_splits_are_refused(two_models) -> None:
    run(
        "train",
        "--arch",
        "mlp",
        "--data",
        two_models,
        "--epochs",
        1,
        "--img-size",
        32,
        "--seed",
        7,
        "--name",
        "other-split",
    )
    with pytest.raises(EnsembleError, match="different data or splits"):
        create_ensemble("mixed", [("cnn", 1), ("other-split", 1)])


def test_cli_create_evaluate_and_report(two_models, tmp_path) -> None:
    out = run("ensemble", "create", "duo", "--member", "cnn=0.5", "--member", "mlp=0.51")
    assert "ensemble 1 duo: vote" in out and "validation: F1" in out
    assert "test: F1" not in out  # the data has no test/ split
    out = run("evaluate", "duo", "--data", incoming_folder(tmp_path))
    assert "scores on labelled images" in out
    rows = json.loads(run("report", "ensembles", "--format", "json"))
    assert [e["split"] for e in rows[0]["evaluations"]] == ["evaluation"]
    models = json.loads(run("report", "models", "--format", "json"))
    assert all(m["evaluations"][0]["split"] == "evaluation" for m in models)
    bad = CliRunner().invoke(cli, ["ensemble", "create", "x", "--member", "cnn"])
    assert bad.exit_code == 2 and "MODEL=WEIGHT" in bad.output


def test_ensemble_errors_are_one_line_at_the_cli(two_models) -> None:
    result = CliRunner().invoke(cli, ["ensemble", "create", "s", "--preset", "seed"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no resnet50 model with the seed preset" in result.output
