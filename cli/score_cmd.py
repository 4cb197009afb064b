"""`cxrq score FOLDER`: one prediction row per image, with one model."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import friendly_errors
from cli.follow import enqueue, exit_for, follow
from cli.output import scores_line
from cli.progress import ProgressBar


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--model",
    "model_ref",
    default=None,
    help="model id, name or arch; default: the best by validation F1",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="images per unit of work (queued mode scores chunks in parallel)",
)
@click.option("--wait/--no-wait", default=False, help="queued mode: follow the job to its end")
def score(folder: Path, model_ref: str | None, chunk_size: int, wait: bool) -> None:
    """Score every .jpeg/.jpg/.png below FOLDER (recursively) and store a row per image.

    A NORMAL/ or PNEUMONIA/ folder on an image's path is its true label; with true labels the
    job also stores F1 and the other scores.

    Example: cxrq score ../shared/data/fullres --model googlenet
    """
    with friendly_errors():
        _score(folder, model_ref, chunk_size, wait)


def _create_job(folder: Path, model_ref: str | None, chunks: list[list[str]]) -> int:
    from db.queries import resolve_model
    from db.session import session_scope
    from db.store import create_job

    n_images = sum(len(c) for c in chunks)
    with session_scope() as s:
        model = resolve_model(s, model_ref)
        job = create_job(s, "score", {"folder": str(folder), "chunk_size": len(chunks[0])})
        job.model_id, job.progress_total = model.id, n_images
        click.echo(
            f"job {job.id}: score {n_images} images in {folder} "
            f"with model {model.id} ({model.name}, {model.arch})"
        )
        return job.id


def _score(folder: Path, model_ref: str | None, chunk_size: int, wait: bool) -> None:
    from worker import dispatch
    from worker.score_plan import plan_chunks

    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise click.ClickException(f"folder {folder} does not exist")
    chunks = plan_chunks(folder, chunk_size)
    if not chunks:
        raise click.ClickException(f"no .jpeg, .jpg or .png images below {folder}")
    queued = dispatch.is_queued()
    if queued:
        dispatch.check_broker()  # before any row exists: nothing half-written
    job_id = _create_job(folder, model_ref, chunks)
    if queued:
        enqueue(job_id, lambda: dispatch.submit_scoring(job_id, chunks))
        click.echo(f"queued {len(chunks)} chunks; follow with: cxrq status {job_id}")
        if wait:
            exit_for(follow(job_id, "score"))
        return
    bar = ProgressBar("score")
    result = dispatch.run_scoring(job_id, chunks, bar)
    bar.close()
    click.echo(f"job {job_id} {result['state']}: {result['message']}")
    if result["scores"]:
        click.echo(scores_line("scores on labelled images", result["scores"]))
    click.echo(f"rows: cxrq report predictions {job_id}")
