"""`cxrq calibrate MODEL --data FOLDER --site NAME`: a model's operating point at one site,
fitted on that site's labelled images (worker.site_calibration; training.fitting.site_fit)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from cli.errors import friendly_errors
from cli.score_cmd import _score

SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@click.command()
@click.argument("model_ref", metavar="MODEL")
@click.option(
    "--data",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the site's labelled images: below NORMAL/ and PNEUMONIA/ folders",
)
@click.option("--site", required=True, help="the site's name (letters, digits, . _ -)")
@click.option(
    "--threshold",
    "rule",
    type=click.Choice(["sensitivity", "balanced"]),
    default="sensitivity",
    show_default=True,
    help="sensitivity: the highest threshold whose sensitivity holds the target at the 5th "
    "percentile of a patient bootstrap; balanced: sensitivity + specificity at their best",
)
@click.option(
    "--target-sensitivity",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
)
@click.option("--replace", is_flag=True, help="refit a site this model already has")
@click.option(
    "--adapt",
    is_flag=True,
    help="also fine-tune the model on the site's images: a new model, used only through this "
    "site's profile, whose epochs and threshold are chosen on patients it was not tuned on",
)
@click.option("--chunk-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--wait/--no-wait", default=False, help="queued mode: follow the job to its end")
def calibrate(
    model_ref: str,
    folder: Path,
    site: str,
    rule: str,
    target_sensitivity: float,
    replace: bool,
    adapt: bool,
    chunk_size: int,
    wait: bool,
) -> None:
    """Score the site's labelled folder as a job and fit the model's site profile: the
    threshold (with the 95% interval of the sensitivity and specificity it gives), P
    recalibrated for the site, the review lines refitted to its images, its prevalence and
    kind threshold. `cxrq score FOLDER --site NAME` then decides with it.

    The profile holds for this model's weights only. Unreadable and not-cxr images are left
    out of the fit and counted; a file name that gives no patient is one patient.

    With --adapt the site's images also fine-tune the model (a new model row, linked to its
    parent and the site); the profile then decides with the adapted model, its threshold and
    calibration fitted on scores of patients each fold model was not tuned on.

    Example: cxrq calibrate googlenet --data /site/labelled --site st-marys
    """
    with friendly_errors():
        if not SITE_NAME.match(site):
            raise click.UsageError(f"site name {site!r}: use letters, digits, '.', '_' or '-'")
        _check_model(model_ref, site, replace)
        if adapt and not wait and _queued():
            raise click.UsageError(
                "--adapt fine-tunes in this process once the workers have scored: add --wait"
            )
        wanted = {"site": site, "rule": rule, "replace": replace}
        if rule == "sensitivity":
            wanted["target"] = target_sensitivity
        target = target_sensitivity if rule == "sensitivity" else None
        job_id = _score(
            folder,
            model_ref,
            chunk_size,
            wait,
            explain="none",
            extra={"calibrate": wanted},
            precheck=lambda paths: _check_folder(paths, folder, target),
        )
        if adapt:
            from worker.site_adapt import adapt_site

            click.echo("adapting the model to the site's images (two patient folds, then all)")
            click.echo(adapt_site(job_id))


def _queued() -> bool:
    from worker import dispatch

    return dispatch.is_queued()


def _check_model(model_ref: str, site: str, replace: bool) -> None:
    """One line, before anything is scored, for a MODEL that cannot be calibrated here."""
    from db.lookups import resolve_scorer
    from db.schema import Ensemble
    from db.session import session_scope
    from db.sites import check_site_free

    with session_scope() as s:
        found = resolve_scorer(s, model_ref)
        if isinstance(found, Ensemble):
            raise click.UsageError(
                f"{model_ref} is an ensemble: calibrate takes one model (calibrate its "
                "members, or score with one model)"
            )
        if found.site is not None:
            raise click.UsageError(
                f"model {found.id} is adapted to site {found.site}; calibrate its parent "
                f"model {found.parent_id}"
            )
        check_site_free(s, site, found, replace)


def _check_folder(paths: list[str], folder: Path, target: float | None) -> None:
    """Refuse, before scoring, a folder whose labels and patients cannot support a profile."""
    from training.data.data_files import folder_label
    from training.fitting.site_images import check_counts, path_counts

    labelled = [(p, folder_label(Path(p), folder.expanduser().resolve())) for p in paths]
    labelled = [(p, label) for p, label in labelled if label is not None]
    if not labelled:
        raise click.ClickException(
            f"no NORMAL/ or PNEUMONIA/ folder below {folder}: calibration needs labelled images"
        )
    check_counts(path_counts(labelled), target)
