"""Models from the database, cached by content hash: in memory per process, on local disk per
machine (CXRQ_CACHE_DIR), so a worker fetches each model's weights from the database once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from db.lookups import weights_hash, weights_of
from db.session import session_scope
from db.settings import get_settings
from training.models.checkpoint import ModelBundle, from_bytes, sha256
from training.scoring.inference import fold_batchnorm
from worker.device import process_device

_loaded: dict[str, ModelBundle] = {}


def _disk_path(sha: str) -> Path:
    return get_settings().cache_dir / "models" / f"{sha}.safetensors"


def _read_cached(sha: str) -> bytes | None:
    """The cached file, unverified: it is written whole and renamed into place under its own
    hash, so it cannot be torn, and hashing 25 MB again on every start cost 60 ms a command.
    A file that does not parse is fetched again (see load_bundle)."""
    path = _disk_path(sha)
    return path.read_bytes() if path.is_file() else None


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


def _servable(bundle: ModelBundle) -> ModelBundle:
    """Served models only ever run inference: batch norms folded into their convolutions, on
    this process's device (one device per process, so the cache needs no device key)."""
    bundle.model = fold_batchnorm(bundle.model).to(process_device())
    return bundle


def load_bundle(model_id: int) -> ModelBundle:
    """The servable model for a row id."""
    with session_scope() as s:
        sha = weights_hash(s, model_id)
        if sha is None:
            raise LookupError(f"no model with id {model_id}")
        if sha in _loaded:
            return _loaded[sha]
        data = _read_cached(sha)
        if data is not None:
            try:
                _loaded[sha] = _servable(from_bytes(data))
                return _loaded[sha]
            except Exception:  # a damaged cache file: the database has the real one
                pass
        data = weights_of(s, model_id)
        if sha256(data) != sha:
            raise ValueError(f"model {model_id}: stored weights do not match their hash")
        _write_cached(sha, data)
    _loaded[sha] = _servable(from_bytes(data))
    return _loaded[sha]
