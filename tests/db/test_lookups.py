"""Look-ups by reference: which model a name, an arch or nothing at all means."""

from db.lookups import resolve_model
from db.session import session_scope
from db.store import save_evaluation
from tests.helpers import add_placeholder_model, evaluation_scores


def test_the_default_model_is_compared_on_one_validation_set_not_across_sets(
    any_db_url: str,
) -> None:
    with session_scope() as s:
        real = add_placeholder_model(s, "real", "googlenet", None)
        save_evaluation(
            s, "validation", "/data (split a)", {**evaluation_scores(0.93), "n": 500}, model_id=real
        )
        weaker = add_placeholder_model(s, "weaker", "cnn", None)
        save_evaluation(
            s,
            "validation",
            "/data (split a)",
            {**evaluation_scores(0.90), "n": 500},
            model_id=weaker,
        )
        quick = add_placeholder_model(s, "quick", "cnn", None)  # 4 images per class: F1 1.0 on n=2
        save_evaluation(
            s, "validation", "/data (split b)", {**evaluation_scores(1.0), "n": 2}, model_id=quick
        )
    with session_scope() as s:
        assert resolve_model(s, None).id == real
        assert resolve_model(s, "cnn").id == weaker  # by arch: the same rule among cnn models
