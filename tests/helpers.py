"""What many tests share: the CLI run in-process, and a tiny trained model stored in the test's
database (conftest's session-scoped `tiny_checkpoint`), so that tests not about training do not
each train one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner


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
