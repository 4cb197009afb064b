"""`cxrq score FOLDER`: one prediction row per image, with one model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from cli.errors import friendly_errors
from cli.follow import enqueue, exit_for, follow
from cli.output import scores_line
from cli.progress import ProgressBar

# Maps for PNEUMONIA calls cost little beside scoring (BENCHMARKS.md, "Heatmaps"): on by default.
DEFAULT_EXPLAIN = "pneumonia"


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--model",
    "model_ref",
    default=None,
    help="model id, alias, name or arch (an arch or name must name one model); default: the "
    "site's `default` alias, else the global one (`cxrq model promote`), else the only model",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="images per unit of work (queued mode scores chunks in parallel)",
)
@click.option(
    "--prevalence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="expected share of PNEUMONIA here (e.g. 0.3): P is restated for it and decided at 0.5 "
    "(single models)",
)
@click.option(
    "--explain",
    type=click.Choice(["none", "pneumonia", "all"]),
    is_flag=False,
    flag_value="all",
    default=DEFAULT_EXPLAIN,
    show_default=True,
    help="store a heatmap of where the model saw pneumonia: for every image (--explain alone "
    "means all), for the images called PNEUMONIA, or none; `cxrq report heatmap JOB PATH -o "
    "out.png` draws one",
)
@click.option(
    "--site",
    default=None,
    help="decide with this site's profile (`cxrq calibrate`): its threshold, calibrated P and "
    "review lines, and its adapted model when it has one",
)
@click.option(
    "--shadow",
    "shadow_ref",
    default=None,
    help="a second model (id, alias such as challenger, or name) that scores the same images; "
    "its rows are stored beside the job's but never decide: `cxrq report compare JOB`",
)
@click.option("--wait/--no-wait", default=False, help="queued mode: follow the job to its end")
def score(
    folder: Path,
    model_ref: str | None,
    chunk_size: int,
    prevalence: float | None,
    explain: str,
    site: str | None,
    shadow_ref: str | None,
    wait: bool,
) -> None:
    """Score every .jpeg/.jpg/.png/.dcm below FOLDER (recursively) and store a row per image.

    DICOM files are also found without an extension, by their DICM marker. Their rows keep the
    SOP Instance UID and, when CXRQ_PATIENT_SALT is set, a salted hash of the PatientID; never
    the ID, name or birth date.

    A NORMAL/ or PNEUMONIA/ folder on an image's path is its true label; with true labels the
    job also stores F1 and the other scores.

    Each row carries P(PNEUMONIA) and the label; a model with a kind head adds P(VIRAL |
    PNEUMONIA) and, for PNEUMONIA calls, the kind (BACTERIAL or VIRAL).

    Without --site the threshold comes from the model's training split (the job message says
    so); with --site the site's profile decides.

    Example: cxrq score ../shared/data/fullres --model googlenet --prevalence 0.4 --explain
    """
    with friendly_errors():
        if site is not None and prevalence is not None:
            raise click.UsageError(
                "--prevalence and --site both set the operating point; the site's profile "
                "already holds its prevalence and threshold: drop one"
            )
        extra = {} if site is None else {"site_profile_id": _site_profile(site, model_ref)}
        _score(
            folder,
            model_ref,
            chunk_size,
            wait,
            prevalence=prevalence,
            explain=explain,
            extra=extra,
            shadow=shadow_ref,
        )


def _site_profile(site: str, model_ref: str | None) -> int:
    """The id of the site's active profile for the model named (none named: the site's
    `default` alias, else the global one, else the only model)."""
    from db.lookups import site_profile_of
    from db.session import session_scope

    with session_scope() as s:
        return site_profile_of(s, site, model_ref).id


def _create_job(
    folder: Path,
    model_ref: str | None,
    chunks: list[list[str]],
    chunk_size: int,
    evaluate: bool,
    prevalence: float | None = None,
    unreadable: list[tuple[str, str]] = (),
    explain: str = "none",
    extra: dict | None = None,
    shadow: str | None = None,
) -> int:
    from worker.jobs import PrevalenceForEnsemble, ScoreParams, create_score_job

    params = ScoreParams(
        str(folder),
        chunk_size,
        evaluate=evaluate,
        explain=explain,
        prevalence=prevalence,
        **(extra or {}),
    )
    try:
        job = create_score_job(params, chunks, model_ref, unreadable, shadow=shadow)
    except PrevalenceForEnsemble:
        raise click.UsageError("--prevalence applies to single models, not ensembles") from None
    click.echo(f"job {job.id}: score {job.n_images} images in {folder} with {job.scorer}")
    if job.chosen_by:
        click.echo(f"scored by {job.chosen_by}")
    if job.shadow:
        click.echo(f"shadow: {job.shadow} (stored beside, never deciding)")
    click.echo(f"threshold {job.threshold:.4g} from the {job.threshold_source}")
    return job.id


def _score(
    folder: Path,
    model_ref: str | None,
    chunk_size: int,
    wait: bool,
    evaluate: bool = False,
    prevalence: float | None = None,
    explain: str = "none",
    extra: dict | None = None,
    precheck: Callable[[list[str]], None] | None = None,
    shadow: str | None = None,
) -> int:
    """Plan, create, and run or enqueue a score job; `extra` adds ScoreParams fields and
    `precheck` refuses the planned paths before any row exists."""
    from training.data.data_files import label_from_path
    from worker import dispatch
    from worker.score_plan import plan_folder

    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise click.ClickException(f"folder {folder} does not exist")
    chunks, unreadable = plan_folder(folder, chunk_size)
    for path, reason in unreadable:
        click.echo(f"warning: cannot read folder {path} ({reason}); it is an error row", err=True)
    if not chunks:
        raise click.ClickException(f"no .jpeg, .jpg or .png images below {folder}")
    if evaluate and not any(
        label_from_path(Path(p).relative_to(folder.parent)) is not None for c in chunks for p in c
    ):
        raise click.ClickException(
            f"no NORMAL/ or PNEUMONIA/ folder below {folder} to score against"
        )
    if precheck is not None:
        precheck([p for c in chunks for p in c])
    queued = dispatch.is_queued()
    if queued:
        dispatch.check_broker()  # before any row exists: nothing half-written
    job_id = _create_job(
        folder,
        model_ref,
        chunks,
        chunk_size,
        evaluate,
        prevalence,
        unreadable,
        explain,
        extra,
        shadow,
    )
    if queued:
        enqueue(job_id, lambda: dispatch.submit(job_id, "score"))
        click.echo(f"queued {len(chunks)} chunks; follow with: cxrq status {job_id}")
        if wait:
            exit_for(follow(job_id, "score"))
        return job_id
    bar = ProgressBar("score")
    result = dispatch.run_scoring(job_id, bar)
    bar.close()
    click.echo(f"job {job_id} {result['state']}: {result['message']}")
    if result["scores"]:
        click.echo(scores_line("scores on labelled images", result["scores"]))
    click.echo(f"rows: cxrq report predictions {job_id}")
    if result["state"] == "failed":
        raise SystemExit(1)
    return job_id


@click.command()
@click.argument("model_ref", metavar="MODEL_OR_ENSEMBLE")
@click.option(
    "--data",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="a labelled folder: images below NORMAL/ and PNEUMONIA/ folders",
)
@click.option("--chunk-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--wait/--no-wait", default=False, help="queued mode: follow the job to its end")
def evaluate(model_ref: str, folder: Path, chunk_size: int, wait: bool) -> None:
    """Score a labelled folder and store the scores as an evaluation of the model or ensemble.

    How a hospital checks a model on its own labelled images; `cxrq report models` shows it.

    Example: cxrq evaluate googlenet --data /data/our_xrays
    """
    with friendly_errors():
        _score(folder, model_ref, chunk_size, wait, evaluate=True)
