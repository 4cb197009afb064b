"""Models loaded from the database, kept in memory by content hash for the life of a process."""

from __future__ import annotations

from sqlalchemy import select

from db.schema import Model
from db.session import session_scope
from training.checkpoint import ModelBundle, from_bytes

_loaded: dict[str, ModelBundle] = {}


def load_bundle(model_id: int) -> ModelBundle:
    """The servable model for a row id; weights are fetched and rebuilt once per process."""
    with session_scope() as s:
        sha = s.scalar(select(Model.weights_sha256).where(Model.id == model_id))
        if sha is None:
            raise LookupError(f"no model with id {model_id}")
        if sha not in _loaded:
            weights = s.scalar(select(Model.weights).where(Model.id == model_id))
            _loaded[sha] = from_bytes(weights)
    return _loaded[sha]
