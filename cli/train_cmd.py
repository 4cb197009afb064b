"""`cxrq train`: create a training job and run it (embedded) or submit it (queued)."""

from __future__ import annotations

import click

from cli.errors import friendly_errors
from cli.follow import enqueue, follow
from cli.output import scores_line
from cli.progress import ProgressBar

# training.fitting.config.PRECISIONS, spelt out: cli/ imports no training code at import time.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@click.command()
@click.option("--arch", required=True, help="mlp, cnn, googlenet, resnet50 or efficientnet_lite0")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    help="dataset folder (train/ with NORMAL/ and PNEUMONIA/); default $CXRQ_DATA",
)
@click.option(
    "--preset",
    default=None,
    help="seed, tuned, external or hires (224 px; for a GPU); default: the best measured on "
    "test/ (external)",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="training epochs")
@click.option(
    "--img-size", type=click.IntRange(min=16), default=None, help="input side (preset: 64)"
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="batch size (preset: 32 seed, 64 tuned)",
)
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="learning rate (preset)"
)
@click.option("--seed", type=int, default=0, show_default=True, help="split and init seed")
@click.option(
    "--init-seed",
    type=int,
    default=None,
    help="seed of weights, batch order and augmentation only (default: --seed); "
    "another run on the same split, e.g. for ensemble members",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="share of patients held out for validation (0.2)",
)
@click.option(
    "--max-per-class",
    # At least 1: the config stores "no cap" as 0, so a 0 here would silently train on all.
    type=click.IntRange(min=1),
    default=None,
    help="use at most N (>= 1) training images per class (quick runs); default: all",
)
@click.option(
    "--equalize",
    type=click.Choice(["none", "hist", "clahe"]),
    default=None,
    help="contrast mapping at decode, kept with the model so scoring does the same (preset)",
)
@click.option(
    "--crop",
    type=click.FloatRange(0.5, 1),
    default=None,
    help="keep the central fraction of each side at decode, e.g. 0.85 (preset: 1)",
)
@click.option(
    "--photometric",
    type=click.FloatRange(min=0),
    default=None,
    help="gamma, blur/sharpen and noise augmentation strength, e.g. 0.3 (preset)",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="pull BCE targets toward 0.5 by this much (preset)",
)
@click.option(
    "--balance",
    type=click.Choice(["flip", "weight", "sample", "none"]),
    default=None,
    help="one class-balancing method: flipped copies, loss weights or 50/50 sampling (preset)",
)
@click.option(
    "--pretrained/--scratch",
    default=None,
    help="start from ImageNet weights (efficientnet_lite0: shipped in a package; preset)",
)
@click.option(
    "--threshold",
    "threshold",
    default=None,
    callback=lambda ctx, param, v: _threshold(v),
    help="a number, or a rule on the tuning split: balanced or sensitivity (preset)",
)
@click.option(
    "--target-sensitivity",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="with --threshold sensitivity: share of PNEUMONIA to catch (preset: 0.95)",
)
@click.option(
    "--kind-head",
    type=click.Choice(["none", "two", "three"]),
    default=None,
    help="bacterial vs viral in the same network: none (binary), two (a second output, "
    "P(VIRAL | PNEUMONIA)) or three (a normal/bacterial/viral softmax) (preset: seed none, "
    "others two)",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="auto (bf16 autocast where the hardware runs it natively, else fp32), fp32, bf16 "
    "(refused where not native) or fp16 (CUDA only, loss-scaled) (preset: seed fp32, others auto)",
)
@click.option("--name", default=None, help="model name (default: the arch)")
@click.option("--wait/--no-wait", default=False, help="queued mode: follow the job to its end")
def train(
    arch: str,
    data_dir: str | None,
    preset: str | None,
    name: str | None,
    seed: int,
    wait: bool,
    **overrides: object,
) -> None:
    """Train a model and store it with its validation scores.

    Example: cxrq train --arch googlenet --data ../shared/data/chest_xray --epochs 3
    """
    with friendly_errors():
        _train(arch, data_dir, preset, name, wait, {"seed": seed, **overrides})


def _threshold(value: str | None) -> float | str | None:
    if value is None or value in ("balanced", "sensitivity"):
        return value
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter("a number in (0, 1), balanced or sensitivity") from None
    if not 0 < number < 1:
        raise click.BadParameter("a number in (0, 1), balanced or sensitivity")
    return number


def _train(
    arch: str,
    data_dir: str | None,
    preset: str | None,
    name: str | None,
    wait: bool,
    options: dict[str, object],
) -> None:
    """options: the training options given (seed and every TrainConfig override)."""
    from pathlib import Path

    from db.settings import get_settings
    from worker import dispatch
    from worker.jobs import TrainParams, create_train_job
    from worker.train_job import build_config

    data_dir = data_dir or get_settings().data_dir
    if not data_dir:
        raise click.UsageError("no dataset: pass --data DIR or set CXRQ_DATA")
    renamed = {"max_images_per_class": options.pop("max_per_class")}
    config = build_config(arch, preset, data_dir, **options, **renamed)
    queued = dispatch.is_queued()
    if queued:
        dispatch.check_broker()  # before any row exists: nothing half-written
    else:  # trained here: refuse a precision this machine cannot run before any row exists
        from training.fitting.precision import check_precision
        from worker.device import process_device

        check_precision(config, process_device())
    job_id = create_train_job(TrainParams(config, str(Path(data_dir).resolve()), name)).id
    click.echo(f"job {job_id}: train {config.arch} ({config.preset} preset)")
    if queued:
        enqueue(job_id, lambda: dispatch.submit(job_id, "train"))
        click.echo(f"queued; follow with: cxrq status {job_id}")
        if wait:
            job = follow(job_id, f"train {config.arch}")
            _report_trained(job_id, job["model_id"])
        return
    bar = ProgressBar(f"train {config.arch}")
    model_id = dispatch.run_training(job_id, bar)
    bar.close()
    _report_trained(job_id, model_id)


def _report_trained(job_id: int, model_id: int | None) -> None:
    from db.reports import job_report
    from db.session import session_scope

    with session_scope() as s:
        job = job_report(s, str(job_id))
    if model_id is None:
        raise click.ClickException(f"job {job_id} {job['state']}: {job['message']}")
    click.echo(f"model {model_id} stored ({job['message']})")
    for evaluation in job["evaluations"]:
        click.echo(scores_line(evaluation["split"], evaluation))
