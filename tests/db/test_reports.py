"""The report rows carry the external test/ scores as flat test_* keys beside val_*."""

from db.columns import SCORE_COLUMNS
from db.reports import ensembles_report, models_report
from db.schema import Ensemble
from db.session import session_scope
from db.store import save_evaluation
from tests.helpers import add_placeholder_model, evaluation_scores, report_row_with_scored_set

TEST_KEYS = {f"test_{k}" for k in SCORE_COLUMNS}


def test_a_model_row_carries_its_latest_test_scores(any_db_url: str) -> None:
    with session_scope() as s:
        model_id = add_placeholder_model(s, "m", "cnn", 0.9)
        save_evaluation(s, "test", "/data/test", evaluation_scores(0.6), model_id=model_id)
        # a rerun
        save_evaluation(s, "test", "/data/test", evaluation_scores(0.7), model_id=model_id)
        save_evaluation(s, "scored", "/folder", evaluation_scores(0.5), model_id=model_id)
    with session_scope() as s:
        (row,) = models_report(s)
    assert set(row) >= TEST_KEYS
    assert row["test_f1"] == 0.7 and row["val_f1"] == 0.9  # the newest test, not the scored set
    assert (row["test_tp"], row["test_n"], row["test_threshold"]) == (8, 18, 0.5)
    assert row["test_roc_auc"] is None  # NaN AUC stored as NULL
    assert [e["split"] for e in row["evaluations"]] == ["test", "test", "scored"]


def test_without_a_test_evaluation_every_test_key_is_none(any_db_url: str) -> None:
    row = report_row_with_scored_set(0.9, 0.5)
    assert {k: row[k] for k in TEST_KEYS} == dict.fromkeys(TEST_KEYS)
    assert row["val_f1"] == 0.9


def test_an_ensemble_row_carries_its_own_test_scores(any_db_url: str) -> None:
    with session_scope() as s:
        model_id = add_placeholder_model(s, "m", "cnn", 0.9)
        save_evaluation(s, "test", "/data/test", evaluation_scores(0.6), model_id=model_id)
        members = [{"model_id": model_id, "weight": 1.0}]
        tested = Ensemble(name="tested", method="vote", members=members, params={})
        untested = Ensemble(name="untested", method="vote", members=members, params={})
        s.add_all([tested, untested])
        s.flush()
        save_evaluation(s, "validation", "/data", evaluation_scores(0.8), ensemble_id=tested.id)
        save_evaluation(s, "test", "/data/test", evaluation_scores(0.75), ensemble_id=tested.id)
    with session_scope() as s:
        first, second = ensembles_report(s)
    assert (first["val_f1"], first["test_f1"], first["test_fn"]) == (0.8, 0.75, 2)
    assert [e["split"] for e in first["evaluations"]] == ["test"]
    # The member's test scores are its own, never the ensemble's.
    assert {k: second[k] for k in TEST_KEYS} == dict.fromkeys(TEST_KEYS)
