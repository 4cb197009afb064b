"""What many tests share: the CLI run in-process; a tiny trained model stored in the test's
database (conftest's session-scoped `tiny_checkpoint`), so that tests not about training do not
each train one; model rows with placeholder weights for tests of what is stored about models;
a folder to score and a score job made the one way jobs are made."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.conftest import make_xray


def run(*args: object, ok: bool = True) -> str:
    """`cxrq ARGS` in this process; asserts it exits 0 (or, with ok=False, that it fails with a
    message rather than a traceback), with the output as the message."""
    from cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert (result.exit_code == 0) == ok, result.output
    if not ok:
        assert "Traceback" not in result.output
    return result.output


def add_tiny_model(checkpoint: dict[str, Any], name: str | None = None) -> int:
    """A copy of the session's tiny model (and its evaluations) in the database in use now;
    returns its id."""
    from db.schema import Evaluation, Model
    from db.session import session_scope

    fields = {k: v for k, v in checkpoint["model"].items() if k not in ("id", "job_id")}
    with session_scope() as s:
        model = Model(**fields | ({"name": name} if name else {}))
        s.add(model)
        s.flush()
        for evaluation in checkpoint["evaluations"]:
            values = {k: v for k, v in evaluation.items() if k not in ("id", "job_id")}
            s.add(Evaluation(**values | {"model_id": model.id}))
        return model.id


def job_row(job_id: int) -> Any:
    """The job row as it stands now (db.schema.Job)."""
    from db.schema import Job
    from db.session import session_scope

    with session_scope() as s:
        return s.get(Job, job_id)


def job_id_of(output: str) -> int:
    """The job id from the first line `cxrq score` or `cxrq train` prints ("job 3: ...")."""
    return int(output.split()[1].rstrip(":"))


def linked_fullres(shared_data: Path, root: Path, copies: int = 7) -> Path:
    """150 x copies files: the full-resolution X-rays, hard-linked (each link a file of its own;
    symlinks to one file count once)."""
    for copy in range(copies):
        for src in sorted((shared_data / "fullres").rglob("*.jpeg")):
            dst = root / f"copy{copy}" / src.parent.name / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:  # another file system
                shutil.copyfile(src, dst)
    return root


def evaluation_scores(f1: float) -> dict[str, float]:
    """An evaluation's scores with this F1 and fixed others (8 tp, 1 fp, 7 tn, 2 fn; a NaN AUC,
    which is stored as NULL)."""
    return {
        "f1": f1,
        "precision": 0.9,
        "sensitivity": 0.8,
        "specificity": 0.7,
        "accuracy": 0.75,
        "roc_auc": float("nan"),
        "tp": 8,
        "fp": 1,
        "tn": 7,
        "fn": 2,
        "threshold": 0.5,
        "n": 18,
    }


def add_placeholder_model(session: Any, name: str, arch: str, val_f1: float | None) -> int:
    """A model row whose weights are a placeholder (nothing may load them), trained for a
    minute, with a validation evaluation of F1 val_f1 unless it is None; returns its id."""
    from db.store import save_evaluation, save_model

    model = save_model(
        session,
        name=name,
        arch=arch,
        preset="seed",
        img_size=64,
        threshold=0.5,
        config={"epochs": 1, "seed": 0},
        data={},
        weights=b"w",
        weights_sha256="0" * 64,
        n_params=1,
        train_seconds=60.0,
    )
    if val_f1 is not None:
        scores = evaluation_scores(val_f1)
        save_evaluation(session, "validation", "somewhere", scores, model_id=model.id)
    return model.id


def incoming_folder(root: Path) -> Path:
    """ROOT/incoming with 12 files: 5 NORMAL and 5 PNEUMONIA X-rays (labelled by their folder),
    one unlabelled and one unreadable."""
    folder = root / "incoming"
    for i in range(5):
        make_xray(folder / "NORMAL" / f"n{i}.jpeg", False, i)
        make_xray(folder / "PNEUMONIA" / f"p{i}.png", True, 50 + i)
    make_xray(folder / "unlabelled" / "u.jpg", True, 99)
    (folder / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return folder


def make_score_job(folder: Path, model_id: int, chunk_size: int = 4) -> tuple[int, list[int]]:
    """A score job of one model as the CLI makes it: the row and its units; returns (job id,
    unit ids)."""
    from worker.jobs import ScoreParams, create_score_job
    from worker.score_plan import plan_chunks

    chunks = plan_chunks(folder, chunk_size)
    job = create_score_job(ScoreParams(str(folder), chunk_size), chunks, scorer=str(model_id))
    return job.id, job.unit_ids


def report_row_with_scored_set(val_f1: float, scored_f1: float) -> dict[str, Any]:
    """`models_report`'s row of one placeholder model with a validation evaluation and one
    evaluation of a scored folder."""
    from db.reports import models_report
    from db.session import session_scope
    from db.store import save_evaluation

    with session_scope() as s:
        model_id = add_placeholder_model(s, "m", "cnn", val_f1)
        save_evaluation(s, "scored", "/folder", evaluation_scores(scored_f1), model_id=model_id)
    with session_scope() as s:
        (row,) = models_report(s)
    return row


def random_batch(n: int, size: int, seed: int = 0) -> Any:
    """A seeded uint8 (n, 3, size, size) batch of noise."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def served_model(arch: str, size: int, kind_head: str = "none") -> Any:
    """A seeded, freshly initialised model in eval mode and NHWC, as a worker serves it."""
    import torch

    from training.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(arch, img_size=size, kind_head=kind_head).eval()
    return model.to(memory_format=torch.channels_last)


def site_folder(root: Path, patients: int = 12, per_patient: int = 2) -> Path:
    """A labelled site folder: `patients` patients of each class, `per_patient` images each."""
    for p in range(patients):
        for k in range(per_patient):
            make_xray(root / "NORMAL" / f"IM-{p:04d}-{k:04d}.jpeg", False, 3000 + p * 7 + k, 32)
            name = f"person{p}_bacteria_{k}.jpeg"
            make_xray(root / "PNEUMONIA" / name, True, 4000 + p * 7 + k, 32)
    return root
