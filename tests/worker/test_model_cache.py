from pathlib import Path

import pytest
import torch
from sqlalchemy import update

from db.schema import Model
from db.session import session_scope
from tests.helpers import add_tiny_model
from worker import model_cache


def test_weights_come_from_disk_after_the_first_fetch(
    db_url, tiny_checkpoint, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("CXRQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(model_cache, "_loaded", {})
    model_id = add_tiny_model(tiny_checkpoint)
    first = model_cache.load_bundle(model_id)
    (cached,) = (tmp_path / "cache" / "models").glob("*.safetensors")
    stored = cached.read_bytes()

    # With the row's bytes gone, a new process (empty memory cache) still loads the model.
    with session_scope() as s:
        s.execute(update(Model).where(Model.id == model_id).values(weights=b""))
    monkeypatch.setattr(model_cache, "_loaded", {})
    second = model_cache.load_bundle(model_id)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(first.model(x), second.model(x))

    # A damaged cache file is not used: the weights are fetched (and checked) again.
    with session_scope() as s:
        s.execute(update(Model).where(Model.id == model_id).values(weights=stored))
    cached.write_bytes(b"damaged")
    monkeypatch.setattr(model_cache, "_loaded", {})
    third = model_cache.load_bundle(model_id)
    with torch.no_grad():
        assert torch.equal(first.model(x), third.model(x))
    assert cached.read_bytes() == stored

    # Weights in the database that do not match their hash are refused.
    cached.unlink()
    with session_scope() as s:
        s.execute(update(Model).where(Model.id == model_id).values(weights=stored[:-1] + b"x"))
    monkeypatch.setattr(model_cache, "_loaded", {})
    with pytest.raises(ValueError, match="do not match their hash"):
        model_cache.load_bundle(model_id)
