"""`cxrq ensemble create|fit`: combine stored models into one scorer."""

from __future__ import annotations

import click

from cli.errors import friendly_errors
from cli.output import scores_line


@click.group()
def ensemble() -> None:
    """Create and fit ensembles of stored models; they score and evaluate like models.

    Example: cxrq ensemble create seed --preset seed
    """


def _member(value: str) -> tuple[str, float]:
    ref, sep, weight = value.rpartition("=")
    try:
        if not sep or not ref:
            raise ValueError
        return ref, float(weight)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not MODEL=WEIGHT (e.g. googlenet=0.51)") from None


@ensemble.command("create")
@click.argument("name")
@click.option(
    "--member",
    "members",
    multiple=True,
    metavar="MODEL=WEIGHT",
    help="a model id, name or arch and its vote weight; repeat per member",
)
@click.option(
    "--preset",
    type=click.Choice(["seed"]),
    default=None,
    help="seed: MLP, CNN, ResNet50 0.5 and GoogLeNet 0.51 over the latest seed models",
)
def create(name: str, members: tuple[str, ...], preset: str | None) -> None:
    """Create a weighted vote and score it on its members' validation split.

    Example: cxrq ensemble create mine --member googlenet=0.51 --member cnn=0.5
    """
    if bool(members) == bool(preset):
        raise click.UsageError("give either --member MODEL=WEIGHT ... or --preset seed")
    refs = [_member(m) for m in members]
    with friendly_errors():
        from worker import ensemble_job

        if preset:
            ensemble_id = ensemble_job.create_seed_ensemble(name)
        else:
            ensemble_id = ensemble_job.create_ensemble(name, refs)
        _print(ensemble_id, name)


@ensemble.command("fit")
@click.argument("name")
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="patient folds for the honest (cross-fitted) validation scores",
)
@click.option(
    "--select/--no-select",
    default=False,
    show_default=True,
    help="keep only members that raise the cross-fitted AUC (selected inside each fold too)",
)
def fit(name: str, folds: int, select: bool) -> None:
    """Fit member weights (stacking) and a balanced threshold on the validation split.

    Example: cxrq ensemble fit mine
    """
    with friendly_errors():
        from db.lookups import resolve_ensemble
        from db.session import session_scope
        from worker import ensemble_job

        ensemble_job.fit_ensemble(name, folds, select=select)
        with session_scope() as s:
            ensemble_id = resolve_ensemble(s, name).id
        _print(ensemble_id, name)


def _print(ensemble_id: int, name: str) -> None:
    from db.reports import ensembles_report
    from db.session import session_scope

    with session_scope() as s:
        row = next(r for r in ensembles_report(s) if r["id"] == ensemble_id)
    click.echo(
        f"ensemble {ensemble_id} {name}: {row['method']}, members {row['members']}, "
        f"threshold {row['threshold']:.3f}"
    )
    for prefix, title in (("val_", "validation"), ("test_", "test")):
        scores = {k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix)}
        if scores["n"] is not None:  # no test/ split: no test line
            click.echo(scores_line(title, scores))
