"""Models from the database, cached by content hash: in memory per process, on local disk per
machine (CXRQ_CACHE_DIR), so a worker fetches each model's weights from the database once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import select

from db.schema import Model
from db.session import session_scope
from db.settings import get_settings
from training.checkpoint import ModelBundle, from_bytes, sha256

_loaded: dict[str, ModelBundle] = {}


def _disk_path(sha: str) -> Path:
    return get_settings().cache_dir / "models" / f"{sha}.safetensors"


def _read_cached(sha: str) -> bytes | None:
    path = _disk_path(sha)
    if not path.is_file():
        return None
    data = path.read_bytes()
    return data if sha256(data) == sha else None  # a torn or tampered file is refetched


def _write_cached(sha: str, data: bytes) -> None:
    path = _disk_path(sha)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)
    except OSError:
        pass  # a read-only or full cache only costs a database fetch next time


def load_bundle(model_id: int) -> ModelBundle:
    """The servable model for a row id."""
    with session_scope() as s:
        sha = s.scalar(select(Model.weights_sha256).where(Model.id == model_id))
        if sha is None:
            raise LookupError(f"no model with id {model_id}")
        if sha in _loaded:
            return _loaded[sha]
        data = _read_cached(sha)
        if data is None:
            data = s.scalar(select(Model.weights).where(Model.id == model_id))
            _write_cached(sha, data)
    _loaded[sha] = from_bytes(data)
    return _loaded[sha]
