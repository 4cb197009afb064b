"""`cxrq score FOLDER`: one prediction row per image, with one model."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import friendly_errors
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
        _score(folder, model_ref, chunk_size)


def _score(folder: Path, model_ref: str | None, chunk_size: int) -> None:
    from db.queries import resolve_model
    from db.session import session_scope
    from db.store import create_job
    from worker import dispatch
    from worker.score_job import count_images

    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise click.ClickException(f"folder {folder} does not exist")
    n_images = count_images(folder)
    if n_images == 0:
        raise click.ClickException(f"no .jpeg, .jpg or .png images below {folder}")
    with session_scope() as s:
        model = resolve_model(s, model_ref)
        params = {"folder": str(folder), "chunk_size": chunk_size}
        job = create_job(s, "score", params)
        job.model_id = model.id
        job_id, model_desc = job.id, f"model {model.id} ({model.name}, {model.arch})"
    click.echo(f"job {job_id}: score {n_images} images in {folder} with {model_desc}")
    if dispatch.is_queued():
        dispatch.submit("score", job_id)
        return
    bar = ProgressBar("score")
    result = dispatch.run_embedded("score", job_id, bar)
    bar.close()
    click.echo(f"job {job_id} {result['state']}: {result['rows']} prediction rows, "
               f"{result['errors']} unreadable")  # fmt: skip
    if result["scores"]:
        click.echo(scores_line("scores on labelled images", result["scores"]))
    click.echo(f"rows: cxrq report predictions {job_id}")
