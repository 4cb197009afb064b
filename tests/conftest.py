"""Shared fixtures: a throwaway database per test, and tiny generated X-ray-like datasets."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture()
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """CXRQ_DATABASE_URL pointing at a fresh SQLite file; engines are forgotten afterwards."""
    from db.session import dispose_engines

    url = f"sqlite:///{tmp_path / 'cxrq.db'}"
    monkeypatch.setenv("CXRQ_DATABASE_URL", url)
    monkeypatch.setenv("CXRQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CXRQ_BROKER_URL", raising=False)
    monkeypatch.delenv("CXRQ_DATA", raising=False)
    dispose_engines()
    yield url
    dispose_engines()


def make_xray(path: Path, pneumonia: bool, seed: int, size: int = 48, mode: str = "L") -> Path:
    """A grayscale image whose class is learnable: PNEUMONIA has a bright blob in the lungs."""
    rng = random.Random(seed)
    img = Image.new("L", (size, size), color=rng.randint(20, 50))
    draw = ImageDraw.Draw(img)
    draw.ellipse((size * 0.15, size * 0.2, size * 0.45, size * 0.85), fill=rng.randint(60, 90))
    draw.ellipse((size * 0.55, size * 0.2, size * 0.85, size * 0.85), fill=rng.randint(60, 90))
    if pneumonia:
        x, y = rng.uniform(0.2, 0.6) * size, rng.uniform(0.3, 0.6) * size
        draw.ellipse((x, y, x + size * 0.25, y + size * 0.25), fill=rng.randint(200, 240))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path)
    return path


def make_dataset(root: Path, per_class: int = 12, images_per_patient: int = 2) -> Path:
    """ROOT/train/{NORMAL,PNEUMONIA} with patient-style names, several images per patient."""
    for i in range(per_class):
        patient = i // images_per_patient
        make_xray(root / "train" / "NORMAL" / f"IM-{patient:04d}-{i:04d}.jpeg", False, i)
        make_xray(
            root / "train" / "PNEUMONIA" / f"person{patient}_bacteria_{i}.jpeg", True, 1000 + i
        )
    return root


def kinds_dataset(root: Path, per_kind: int = 8) -> Path:
    """train/ with NORMAL, bacterial and viral images; viral ones carry a second blob."""
    for i in range(per_kind * 2):
        make_xray(root / "train" / "NORMAL" / f"IM-{i // 2:04d}-{i:04d}.jpeg", False, i)
    for i in range(per_kind):
        for kind, offset in (("bacteria", 1000), ("virus", 2000)):
            path = root / "train" / "PNEUMONIA" / f"person{offset + i // 2}_{kind}_{i}.jpeg"
            make_xray(path, True, offset + i)
    return root


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture()
def shared_data() -> Path:
    if not (SHARED_DATA / "chest_xray" / "train").is_dir():
        pytest.skip(f"real X-rays expected at {SHARED_DATA}")
    return SHARED_DATA


REDIS_URL = os.environ.get("CXRQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _unavailable(what: str) -> None:
    # CI starts the services, so there a missing one is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not reachable in CI")
    pytest.skip(f"{what} is not reachable")


@pytest.fixture()
def postgres_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from db.session import dispose_engines

    admin = create_engine(
        os.environ.get("CXRQ_TEST_POSTGRES_URL", POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT"
    )
    name = f"cxrq_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        _unavailable("PostgreSQL at 127.0.0.1:5432")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("CXRQ_DATABASE_URL", url)
    monkeypatch.setenv("CXRQ_CACHE_DIR", str(tmp_path / "cache"))
    dispose_engines()
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture()
def worker_role(postgres_url: str) -> str:
    """A worker URL with a role of its own, granted by `cxrq db upgrade`; dropped after."""
    from sqlalchemy import create_engine, text

    from db.session import get_engine

    role = f"cxrq_w_{uuid.uuid4().hex[:8]}"
    worker_url = create_engine(postgres_url).url.set(username=role, password="pw")
    yield worker_url.render_as_string(hide_password=False)
    admin = create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres")
    # The test database (and the grants in it) is dropped by postgres_url afterwards; the role
    # is cluster-wide, so drop what it holds here first.
    with create_engine(postgres_url).begin() as conn:
        conn.execute(text(f'DROP OWNED BY "{role}"'))
    get_engine().dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest) -> str:
    """The same test against both supported backends (PostgreSQL migrated like production)."""
    if request.param == "sqlite":
        return request.getfixturevalue("db_url")
    url = request.getfixturevalue("postgres_url")
    from db.migrate import upgrade
    from db.session import get_engine

    upgrade(get_engine(url, check_schema=False))
    return url


@pytest.fixture()
def broker_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """An emptied Redis database as the broker, with short leases (a dead worker's work is sent
    again after 6 s instead of 30)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        _unavailable(f"Redis at {REDIS_URL}")
    monkeypatch.setenv("CXRQ_BROKER_URL", REDIS_URL)
    monkeypatch.setenv("CXRQ_LEASE_SECONDS", "6")
    yield REDIS_URL
    client.flushdb()


def add_model_row(weights: bytes, name: str, arch: str, img_size: int = 32) -> int:
    """A models row holding the given weights (a checkpoint, or deliberately not one)."""
    from db.session import session_scope
    from db.store import save_weights

    with session_scope() as s:
        return save_weights(s, weights, name, arch, img_size).id


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny CNN trained once per session (32 px, 2 epochs on make_dataset): its model row
    and evaluations as column values, for tests that need a model but are not about training.
    `tests.helpers.add_tiny_model` stores a copy in whichever database a test uses."""
    from sqlalchemy import select

    from db.schema import Evaluation, Model
    from db.session import dispose_engines, session_scope
    from db.store import create_job
    from training.fitting.config import make_config
    from worker.train_job import run_training_job

    root = tmp_path_factory.mktemp("tiny-model")
    data = make_dataset(root / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXRQ_DATABASE_URL", f"sqlite:///{root / 'train.db'}")
        patch.setenv("CXRQ_CACHE_DIR", str(root / "cache"))
        patch.delenv("CXRQ_BROKER_URL", raising=False)
        dispose_engines()
        config = make_config("cnn", img_size=32, epochs=2, batch_size=8)
        with session_scope() as s:
            job_id = create_job(s, "train", {"config": config.to_dict(), "data": str(data)}).id
        model_id = run_training_job(job_id)
        with session_scope() as s:
            model = s.get(Model, model_id)
            row = {c.name: getattr(model, c.name) for c in Model.__table__.columns}
            query = select(Evaluation).where(Evaluation.model_id == model_id)
            evaluations = [
                {c.name: getattr(e, c.name) for c in Evaluation.__table__.columns}
                for e in s.scalars(query)
            ]
        dispose_engines()
    return {"model": row, "evaluations": evaluations, "data": data}
