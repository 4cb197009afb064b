"""Shared pieces of the benchmarks: machine facts, a 1,000+ image folder, a model row."""

from __future__ import annotations

import os
import platform
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def repeated_fullres(dest: Path, copies: int = 7) -> Path:
    """`copies` x the 150 full-resolution X-rays as hard links, or copies across file systems
    (1,050 files for 7); not symlinks, which the scanner counts once per real file."""
    sources = sorted((SHARED / "fullres").rglob("*.jpeg"))
    if not sources:
        raise SystemExit(f"no images in {SHARED / 'fullres'}")
    for copy in range(copies):
        for src in sources:
            link = dest / f"copy{copy}" / src.parent.name / src.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link_or_copy(src, link)
    return dest


def store_untrained_model(arch: str = "googlenet", img_size: int = 64, seed: int = 0) -> int:
    """A model row with freshly initialised weights: speed does not depend on the weights."""
    from db.session import session_scope
    from db.store import save_model
    from training.data.preprocess import Normalizer
    from training.models.checkpoint import ModelBundle, sha256, to_bytes
    from training.models.registry import create_model

    torch.manual_seed(seed)
    model = create_model(arch, img_size).eval()
    data = to_bytes(ModelBundle(model, arch, img_size, Normalizer(), 0.5, {"arch": arch}))
    with session_scope() as s:
        return save_model(
            s,
            name=f"bench-{arch}",
            arch=arch,
            preset="bench",
            img_size=img_size,
            threshold=0.5,
            config={"arch": arch},
            data={},
            weights=data,
            weights_sha256=sha256(data),
            n_params=sum(p.numel() for p in model.parameters()),
            train_seconds=0.0,
        ).id


PG_ADMIN = os.environ.get(
    "CXRQ_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database for one benchmark run; dropped afterwards."""
    from sqlalchemy import create_engine, text

    from db.session import dispose_engines

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"cxrq_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
