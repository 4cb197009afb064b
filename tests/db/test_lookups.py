"""Look-ups by reference: which model an id, an alias, a name, an arch or nothing means. Nothing
is ever picked by a score: several models behind a name are refused."""

import pytest

from db.aliases import AliasError, promote
from db.lookups import resolve, resolve_model
from db.schema import Model
from db.session import session_scope
from db.store import NotFoundError, save_evaluation
from tests.helpers import add_placeholder_model, evaluation_scores


def test_resolve_by_id_name_arch_and_refuses_several(any_db_url: str) -> None:
    with session_scope() as s:
        weak = add_placeholder_model(s, "googlenet", "googlenet", 0.80)
        strong = add_placeholder_model(s, "googlenet", "googlenet", 0.95)
        other = add_placeholder_model(s, "mine", "cnn", 0.90)
        unscored = add_placeholder_model(s, "raw", "mlp", None)
    with session_scope() as s:
        assert resolve_model(s, str(weak)).id == weak
        assert resolve_model(s, "cnn").id == other
        assert resolve_model(s, "mine").id == other
        assert resolve_model(s, "raw").id == unscored
        with pytest.raises(NotFoundError, match=rf"2 googlenet models \(ids {weak}, {strong}\)"):
            resolve_model(s, "googlenet")  # the better F1 does not decide
        with pytest.raises(NotFoundError, match="4 models and no `default` alias"):
            resolve_model(s, None)
        with pytest.raises(NotFoundError, match="no model, alias or ensemble named 'vgg'"):
            resolve_model(s, "vgg")
        with pytest.raises(NotFoundError, match="no model with id 99"):
            resolve_model(s, "99")


def test_the_only_model_serves_without_an_alias_and_says_so(any_db_url: str) -> None:
    with session_scope() as s:
        with pytest.raises(NotFoundError, match="no trained model yet"):
            resolve(s, None)
        only = add_placeholder_model(s, "g", "googlenet", 0.9)
    with session_scope() as s:
        found = resolve(s, None)
        assert found.scorer.id == only
        assert found.how == f"model {only}, the only model (no `default` alias is set)"


def test_default_alias_then_site_alias_and_training_never_moves_them(any_db_url: str) -> None:
    with session_scope() as s:
        first = add_placeholder_model(s, "g1", "googlenet", 0.80)
        promote(s, s.get(Model, first), "default", None, "first in use")
    with session_scope() as s:
        # A better model trained later changes nothing until a person promotes it.
        better = add_placeholder_model(s, "g2", "googlenet", 0.99)
        scores = {**evaluation_scores(0.99), "n": 900}
        save_evaluation(s, "validation", "/d", scores, model_id=better)
    with session_scope() as s:
        found = resolve(s, None)
        assert found.scorer.id == first
        assert found.how == f"alias default (model {first})"
        assert resolve_model(s, "default", site="anywhere").id == first  # global at any site
        entry = promote(s, s.get(Model, better), "default", None, "better on our set")
        assert entry.detail == {"from_model_id": first, "to_model_id": better}
    with session_scope() as s:
        assert resolve_model(s, None).id == better


@pytest.mark.parametrize("name", ["g1", "googlenet", "12", "has space", "seed"])
def test_alias_names_never_equal_a_model_arch_number_or_ensemble(
    any_db_url: str, name: str
) -> None:
    from db.schema import Ensemble

    with session_scope() as s:
        model_id = add_placeholder_model(s, "g1", "googlenet", 0.8)
        s.add(Ensemble(name="seed", method="vote", members=[{"model_id": model_id, "weight": 1}]))
        s.flush()
        with pytest.raises(AliasError):
            promote(s, s.get(Model, model_id), name, None, "because")


def test_promote_needs_a_reason_and_a_profile_for_a_site_alias(any_db_url: str) -> None:
    from db.sites import SiteError

    with session_scope() as s:
        model = s.get(Model, add_placeholder_model(s, "g1", "googlenet", 0.8))
        with pytest.raises(AliasError, match="say why"):
            promote(s, model, "default", None, "  ")
        with pytest.raises(SiteError, match="no site named 'st-marys'"):
            promote(s, model, "default", "st-marys", "calibrated there")
